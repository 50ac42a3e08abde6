// Validates answers the integration suites received against docs/openapi.yaml.
// usage: node check-answers.mjs OPENAPI.yaml ANSWERS.jsonl
// Each line of ANSWERS is {method, path, status, contentType, body} as
// tests/integration/harness.py records it (PS_OPENAPI_LOG). For each, the
// operation (path + method) must exist, document the status, and a JSON
// body must match the response's schema (JSON Schema 2020-12, as OpenAPI
// 3.1 uses, checked by Ajv; $refs resolved inside the document). An answer
// to a path or method the document does not have (404, 405) must match
// components.schemas.Error; a CORS preflight (OPTIONS) must be a 204 without
// a body. Exit status 1 on any mismatch.
import fs from 'node:fs';
import YAML from 'yaml';
import Ajv2020 from 'ajv/dist/2020.js';

const [specPath, logPath] = process.argv.slice(2);
const doc = YAML.parse(fs.readFileSync(specPath, 'utf8'));
const ID = 'https://polysync.invalid/openapi.json';
// strict off: the document also holds OpenAPI keywords (example, ...)
const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
ajv.addSchema({ ...doc, $id: ID });

const esc = (s) => s.replace(/~/g, '~0').replace(/\//g, '~1');
function at(pointer) {
  let v = doc;
  for (const part of pointer.replace(/^#\//, '').split('/'))
    v = v?.[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  return v;
}
// Follows $ref chains; returns [object, its JSON pointer].
function deref(obj, pointer) {
  while (obj && obj.$ref) {
    pointer = obj.$ref;
    obj = at(pointer);
  }
  return [obj, pointer];
}
const validators = new Map();
function validator(pointer) {
  if (!validators.has(pointer)) validators.set(pointer, ajv.compile({ $ref: ID + pointer }));
  return validators.get(pointer);
}

const problems = [];
const seen = new Set();
let checked = 0;
const lines = fs.readFileSync(logPath, 'utf8').split('\n').filter(Boolean);
for (const line of lines) {
  const a = JSON.parse(line);
  const where = `${a.method} ${a.path} -> ${a.status}`;
  const method = a.method.toLowerCase();
  // CORS preflights are answered on every path (docs/protocol.md, "CORS")
  // and are not operations of the document: 204, no body.
  if (a.method === 'OPTIONS') {
    if (a.status !== 204 || (a.body !== null && a.body !== undefined))
      problems.push(`${where}: a preflight must be 204 without a body`);
    checked++;
    continue;
  }
  const item = doc.paths?.[a.path];
  let schemaPointer = null;
  if (!item || !item[method]) {
    if (a.status !== 404 && a.status !== 405) {
      problems.push(`${where}: not in the document`);
      continue;
    }
    schemaPointer = '#/components/schemas/Error';
  } else {
    const responses = item[method].responses || {};
    const key = [String(a.status), `${String(a.status)[0]}XX`, 'default'].find((k) => k in responses);
    if (!key) {
      problems.push(`${where}: status not documented (has ${Object.keys(responses).join(', ')})`);
      continue;
    }
    const [resp, rp] = deref(responses[key], `#/paths/${esc(a.path)}/${method}/responses/${key}`);
    const content = resp?.content;
    if (!content) {
      if (a.body !== null && a.body !== undefined && a.body !== '')
        problems.push(`${where}: documented without a body, got one`);
      checked++;
      continue;
    }
    const type = (a.contentType || '').split(';')[0].trim();
    if (!(type in content)) {
      problems.push(`${where}: content type '${type}' not documented (${Object.keys(content).join(', ')})`);
      continue;
    }
    if (!content[type].schema) { checked++; continue; }
    schemaPointer = `${rp}/content/${esc(type)}/schema`;
  }
  const validate = validator(schemaPointer);
  if (!validate(a.body)) {
    const msg = `${where}: ${ajv.errorsText(validate.errors, { dataVar: 'answer' })}`;
    if (!seen.has(msg)) problems.push(msg);
    seen.add(msg);
  }
  checked++;
}
for (const p of problems) console.log('openapi: ' + p);
console.log(`openapi: ${checked} answers checked against ${specPath}, ${problems.length} problems`);
process.exit(problems.length || checked === 0 ? 1 : 0);
