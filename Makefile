# The two commands of the README, plus the usual helpers. CMake does the real
# building; this file only picks build folders and the order of steps.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
FUZZ_SECONDS ?= 60
PORT       ?= 4001

.PHONY: all deps build run check test test-asan fuzz lint-openapi format clean install

all: build

deps:
	@scripts/install-deps.sh postgres

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@mkdir -p data
	./$(BUILD)/bin/polysyncd --port $(PORT)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPS_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)

fuzz: deps
	@scripts/run-fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

lint-openapi:
	@scripts/lint-openapi.sh

# Every test: the release build, the same suite under ASan+UBSan, the fuzzer,
# and the OpenAPI description through its linter; quiet, with one summary
# table at the end (scripts/check.sh) and a non-zero exit on any failure.
check:
	@BUILD=$(BUILD) ASAN_BUILD=$(ASAN_BUILD) FUZZ_BUILD=$(FUZZ_BUILD) JOBS=$(JOBS) \
	  FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/check.sh

# Deliberate bugs, each of which some suite must catch (tests/mutants/run.py;
# slow: one rebuild and one full ctest run per mutant; not part of check).
.PHONY: mutants coverage
mutants: deps
	@python3 tests/mutants/run.py --jobs $(JOBS) $(MUTANTS_ARGS)

# Line coverage of src/ by the ctest suites (gcov + lcov), report in
# build-coverage/html/index.html (scripts/coverage.sh).
coverage: deps
	@scripts/coverage.sh build-coverage $(JOBS)

# The benchmark (docs/performance.md): polysyncd against the server it replaces.
.PHONY: bench bench-quick
bench: build
	@python3 bench/run.py --build $(BUILD) $(BENCH_ARGS)
bench-quick: build
	@python3 bench/run.py --quick --build $(BUILD) $(BENCH_ARGS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# `make install PREFIX=/usr/local` (default); a system prefix also refreshes
# the library cache so the binaries find libpolysync.so.0 at once.
# `make uninstall` removes what the last install put there.
PREFIX ?= /usr/local
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)
	@case "$(PREFIX)" in /usr|/usr/local|/usr/|/usr/local/) \
	  if [ "$$(id -u)" -eq 0 ] && command -v ldconfig >/dev/null; then ldconfig; \
	  else echo "make install: run ldconfig as root so libpolysync.so.0 is found"; fi ;; esac

.PHONY: uninstall deb
uninstall:
	@test -f $(BUILD)/install_manifest.txt || { echo "uninstall: nothing installed from $(BUILD)"; exit 1; }
	xargs -d '\n' rm -f -- < $(BUILD)/install_manifest.txt
	@case "$(PREFIX)" in /usr|/usr/local|/usr/|/usr/local/) \
	  if [ "$$(id -u)" -eq 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi ;; esac

# The Debian package (CPack, dist/CMakeLists.txt): $(BUILD)/packages/*.deb
deb: build
	cd $(BUILD) && cpack -G DEB -B packages
	@ls $(BUILD)/packages/*.deb

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) build-mutants build-coverage
