"""The structure check (src/core/json_structure.c) and the content hash
(src/server/content_hash.cpp) judged by Python's json module, an
implementation of RFC 8259 that shares no code with them.

1. Hand-written texts the spec rejects for their structure (after
   JSONTestSuite's n_structure_* cases: brackets, commas, colons, keys,
   values missing or doubled, text after the root) and some it accepts:
   the structure check must agree with Python on each, and Python must
   agree with the case's label (so the list itself is checked).
2. Seeded random texts made of valid tokens (strings with every kind of
   escape and raw UTF-8, numbers, words, brackets, commas, colons) put
   together as JSON values and then broken at the token level (a token
   deleted, doubled, swapped, replaced or inserted), long enough to cross
   the 64-byte blocks: since every scalar is valid, whether the text is
   JSON is a question of structure alone, so the structure check must
   answer exactly what Python answers (depth limit: 64 containers), on
   both its AVX2 and its baseline path.
3. Seeded byte-level breakage of chat objects (any byte: control
   characters, bad escapes, bad UTF-8, stray letters and digits, form
   feeds): whenever the content hash accepts a text (true: "a chat skipped
   by its content is JSON"), Python must read it as an object with a
   string "id" and no key twice; and the structure check never refuses a
   text Python reads.
4. The texts of 2 as the value of a chat, {"id":"c","v":<text>}: the
   content hash (which walks simdjson's tokens through its own grammar,
   not through the structure check) must answer exactly what Python
   answers: hashed if and only if Python reads the chat, with no key twice
   and no key holding a NUL.
In 3 and 4 the content hash also gives the verdict of the On-Demand reader
it replaced (tests/unit/content_hash_ondemand.cpp).

Usage: structure_oracle.py HELPER  (tests/unit/structure_oracle_helper.c)
PS_PROPERTY_SEED / PS_PROPERTY_CASES change the seed / the number of
random texts of each kind.
"""
import json
import os
import random
import struct
import subprocess
import sys

MAX_DEPTH = 64  # PS_JSON_MAX_DEPTH

# (text, is JSON) — structure cases after JSONTestSuite's n_structure_*
HAND = [
    ("", False), (" ", False), ("[", False), ("]", False), ("{", False), ("}", False),
    ("[1", False), ("[1,", False), ("[1,]", False), ("[,1]", False), ("[1,,2]", False),
    ("[1 2]", False), ("[1:2]", False), ("[\"a\":1]", False), ("[,]", False),
    ("{\"a\":1,}", False), ("{,\"a\":1}", False), ("{\"a\" 1}", False), ("{\"a\"::1}", False),
    ("{\"a\":}", False), ("{:1}", False), ("{1:2}", False), ("{true:1}", False),
    ("{[]:1}", False), ("{{}:1}", False), ("{\"a\":1 \"b\":2}", False), ("{\"a\",\"b\"}", False),
    ("{\"a\":1}}", False), ("[1]]", False), ("[[1]", False), ("{\"a\":[1}", False),
    ("[1}", False), ("{\"a\":1]", False), ("[]{}", False), ("{}{}", False), ("[] []", False),
    ("1 2", False), ("[1]x", False), ("{\"a\":1}null", False), ("\"a\" \"b\"", False),
    ("[\"a", False), ("\"abc", False), ("{\"a\":\"b\\\"}", False), ("[\"\\\\\"\"]", False),
    ("{\"a\"}", False), ("{\"a\":1,\"b\"}", False), ("[\"a\",]", False), ("{\"\":}", False),
    ("[" * 65 + "]" * 65, False), ("{\"a\":" * 65 + "1" + "}" * 65, False),
    # accepted
    ("{}", True), ("[]", True), ("1", True), ("\"a\"", True), ("null", True), (" [ ] ", True),
    ("{\"a\":[1,{\"b\":null}],\"c\":\"\\\"]}\"}", True), ("[\"\\\\\",\"\\\\\\\"\"]", True),
    ("[" * 64 + "]" * 64, True), ("{\"a\":" * 63 + "[]" + "}" * 63, True),
    ("\t{\r\n\"a\" : [ ] }\n", True), ("{\"a\":1,\"a\":2}", True),
]


NOT_JSON = object()


def python_reads(data):
    """The value Python's json module reads from `data` (bytes), or NOT_JSON
    when RFC 8259 does not allow it (UTF-8 strictly, no NaN/Infinity, depth
    in containers at most MAX_DEPTH)."""
    try:
        text = data.decode("utf-8")
        value = json.loads(text, object_pairs_hook=Pairs,
                           parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    except (ValueError, RecursionError):
        return NOT_JSON
    return value if depth(value) <= MAX_DEPTH else NOT_JSON


class Pairs(list):
    """An object as its (key, value) pairs, every one kept: a dict would
    keep only the last of a key twice, and with it the depth of the last."""


def keys_once(v):
    """No object anywhere in v has a key twice."""
    if isinstance(v, Pairs):
        keys = [k for k, _ in v]
        return len(set(keys)) == len(keys) and all(keys_once(x) for _, x in v)
    return not isinstance(v, list) or all(keys_once(x) for x in v)


def no_nul_key(v):
    """No object anywhere in v has a key with a NUL (json-c cuts it there)."""
    if isinstance(v, Pairs):
        return all("\0" not in k and no_nul_key(x) for k, x in v)
    return not isinstance(v, list) or all(no_nul_key(x) for x in v)


def depth(v):
    if isinstance(v, Pairs):
        return 1 + max((depth(x) for _, x in v), default=0)
    if isinstance(v, list):
        return 1 + max((depth(x) for x in v), default=0)
    return 0


class Helper:
    def __init__(self, path):
        self.path = path

    def verdicts(self, texts):
        data = b"".join(struct.pack("<I", len(t)) + t for t in texts)
        out = subprocess.run([self.path], input=data, stdout=subprocess.PIPE, check=True).stdout
        lines = out.decode().splitlines()
        assert len(lines) == len(texts), "helper answered %d of %d" % (len(lines), len(texts))
        return [tuple(int(x) for x in line.split()) for line in lines]


def random_string(rng):
    chars = []
    for _ in range(rng.choice((0, 1, 3, 10, 40, 90))):
        k = rng.random()
        chars.append(rng.choice('"\\/\b\f\n\r\t') if k < 0.15 else
                     chr(rng.choice((0x1f, 0x7f, 0xe9, 0x2028, 0x1f600, 0xfffd))) if k < 0.25 else
                     rng.choice("abcxyz ,:[]{}01"))
    return json.dumps("".join(chars), ensure_ascii=rng.random() < 0.5)


SCALARS = ("0", "-1", "12.5e-3", "1E+2", "-0.0", "true", "false", "null")


def random_value(rng, d=0):
    """A JSON value as a list of tokens."""
    k = rng.random()
    if d < 6 and k < 0.25:
        toks = ["{"]
        for i in range(rng.randrange(4)):
            toks += ([","] if i else []) + [random_string(rng), ":"] + random_value(rng, d + 1)
        return toks + ["}"]
    if d < 6 and k < 0.5:
        toks = ["["]
        for i in range(rng.randrange(4)):
            toks += ([","] if i else []) + random_value(rng, d + 1)
        return toks + ["]"]
    return [random_string(rng)] if k < 0.75 else [rng.choice(SCALARS)]


def random_token(rng):
    return rng.choice(["{", "}", "[", "]", ",", ":", ",", ":", random_string(rng), rng.choice(SCALARS)])


def join(rng, toks):
    out = []
    for i, t in enumerate(toks):
        if i:
            word = lambda s: s[0] not in '{}[],:"'
            if word(toks[i - 1]) and word(t):
                out.append(" ")   # two scalars run together would be one other scalar
            else:
                out.append(rng.choice(("", "", " ", "\n", "\t", "\r\n  ")))
        out.append(t)
    return "".join(out).encode("utf-8")


def token_case(rng):
    toks = random_value(rng)
    if rng.random() < 0.1:   # deep, around the limit
        n = rng.randrange(60, 68)
        toks = ["["] * n + toks + ["]"] * n
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        i = rng.randrange(len(toks) + 1)
        op = rng.randrange(5)
        if op == 0 and i < len(toks):
            del toks[i]
        elif op == 1 and i < len(toks):
            toks.insert(i, toks[i])
        elif op == 2 and i + 1 < len(toks):
            toks[i], toks[i + 1] = toks[i + 1], toks[i]
        elif op == 3 and i < len(toks):
            toks[i] = random_token(rng)
        else:
            toks.insert(i, random_token(rng))
    return join(rng, toks)


BYTES = b'{}[],:"\\/ \t\n\r\x0c\x00\x1f\x7f\x80\xbf\xc0\xc3\xe2\xed\xf4\xffaeEfnrtu019-+.'


def chat_case(rng):
    chat = {"id": "c%d" % rng.randrange(100), "title": json.loads(random_string(rng)),
            "messages": [{"id": "m%d" % i, "role": "user", "content": json.loads(random_string(rng)),
                          "n": rng.choice((1, -2.5, 1e20, 0))} for i in range(rng.randrange(4))]}
    text = json.dumps(chat, ensure_ascii=rng.random() < 0.5,
                      separators=rng.choice(((",", ":"), (", ", ": ")))).encode("utf-8")
    b = bytearray(text)
    for _ in range(rng.choice((1, 1, 2, 3))):
        i = rng.randrange(len(b) + 1)
        op = rng.randrange(3)
        if op == 0 and i < len(b):
            b[i] = rng.choice(BYTES)
        elif op == 1:
            b[i:i] = bytes([rng.choice(BYTES)])
        elif i < len(b):
            del b[i]
    return bytes(b)


def main():
    helper = Helper(sys.argv[1])
    seed = int(os.environ.get("PS_PROPERTY_SEED", "1203"))
    cases = int(os.environ.get("PS_PROPERTY_CASES", "20000"))
    rng = random.Random(seed)
    failures = []

    # 1. by hand
    texts = [t.encode() for t, _ in HAND]
    for (text, is_json), (s, b, _, _) in zip(HAND, helper.verdicts(texts)):
        py = python_reads(text.encode()) is not NOT_JSON
        if py != is_json:
            failures.append("case list wrong: Python says %s for %r" % (py, text))
        if s != py or b != py:
            failures.append("by hand: Python %s, structure check %d/%d: %r" % (py, s, b, text))

    # 2. valid tokens, broken structure: exactly Python's answer
    texts = [token_case(rng) for _ in range(cases)]
    agree = {True: 0, False: 0}
    for text, (s, b, _, _) in zip(texts, helper.verdicts(texts)):
        py = python_reads(text) is not NOT_JSON
        agree[py] += 1
        if s != py or b != py:
            failures.append("tokens: Python %s (depth %s), structure check %d (baseline %d): %r"
                            % (py, depth(python_reads(text)) if py else "-", s, b, text))

    # 3. any byte broken: hashed => JSON; JSON => structure passes
    texts = [chat_case(rng) for _ in range(cases)]
    hashed = refused = 0
    for text, (s, b, h, o) in zip(texts, helper.verdicts(texts)):
        value = python_reads(text)
        if h != o:
            failures.append("bytes: content hash %d, the On-Demand reader %d: %r" % (h, o, text))
        if s != b:
            failures.append("bytes: AVX2 %d, baseline %d: %r" % (s, b, text))
        if value is not NOT_JSON and not s:
            failures.append("bytes: Python reads what the structure check refuses: %r" % text)
        if h:
            hashed += 1
            if not (isinstance(value, Pairs) and keys_once(value) and isinstance(dict(value).get("id"), str)):
                failures.append("bytes: hashed, but Python reads %r from %r" % (value, text))
        elif value is NOT_JSON:
            refused += 1

    # 4. valid tokens, broken structure, as a chat's value: exactly Python's answer
    texts = [b'{"id":"c","v":' + token_case(rng) + b'}' for _ in range(cases)]
    chats = {True: 0, False: 0}
    for text, (_, _, h, o) in zip(texts, helper.verdicts(texts)):
        value = python_reads(text)
        py = value is not NOT_JSON and keys_once(value) and no_nul_key(value)
        chats[py] += 1
        if h != py:
            failures.append("chats: Python %s, content hash %d: %r" % (py, h, text))
        if h != o:
            failures.append("chats: content hash %d, the On-Demand reader %d: %r" % (h, o, text))

    for f in failures[:20]:
        print(f)
    print("by hand: %d texts; tokens: %d JSON, %d not (seed %d); bytes: %d hashed, %d refused as not JSON;"
          " chats: %d hashed, %d not" % (len(HAND), agree[True], agree[False], seed, hashed, refused,
                                         chats[True], chats[False]))
    # each kind well represented, or the test proves little
    if (min(agree.values()) < cases // 10 or hashed < cases // 10 or refused < cases // 10
            or min(chats.values()) < cases // 10):
        failures.append("a kind of text is under-represented")
    if failures:
        print("%d failures" % len(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
