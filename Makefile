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
# and the OpenAPI description through its linter.
check: test test-asan fuzz lint-openapi

# The benchmark (docs/performance.md): polysyncd against the server it replaces.
.PHONY: bench bench-quick
bench: build
	@python3 bench/run.py --build $(BUILD) $(BENCH_ARGS)
bench-quick: build
	@python3 bench/run.py --quick --build $(BUILD) $(BENCH_ARGS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
