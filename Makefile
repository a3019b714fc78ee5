# connwarden — the two commands that set everything up on Debian bookworm:
#   make run    installs what is missing, builds, starts the sidecar in front of the demo app
#   make test   installs what is missing, builds, runs every test (ctest)
# Also: make test-asan (ASan + UBSan build, same tests), make fuzz (libFuzzer, tests/fuzz/),
# make bench (tests/bench/).

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = http1_request http1_response config address tls_server proxy
JOBS       ?= $(shell nproc)
RUN_DIR    ?= .run
HTTP_PORT  ?= 8080
HTTPS_PORT ?= 8443
APP_PORT   ?= 8081

# Debian packages the build and the tests need.
DEPS = build-essential cmake pkg-config \
       libprotobuf-dev protobuf-compiler libabsl-dev libevent-dev libssl-dev \
       libgtest-dev libgmock-dev node-llhttp libyaml-cpp-dev liburing-dev \
       libgrpc++-dev protobuf-compiler-grpc \
       openssl curl python3 \
       prometheus-cpp-dev prometheus

# Test tools that Debian does not package, from the npm registry, pinned, kept in $(TOOLS):
# buf (a gRPC CLI operators use: tests/e2e/buf_curl_test.sh). npm is the machine's, or
# Debian's when there is none (a Node.js from elsewhere brings its own and conflicts with it).
TOOLS ?= .tools
BUF_VERSION = 1.75.0

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps tools build test test-asan fuzz run bench clean

all: build

deps:
	@missing=$$(for p in $(DEPS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

$(TOOLS)/node_modules/.bin/buf: | deps
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends npm; }
	npm install --prefix $(TOOLS) --no-audit --no-fund --loglevel=error @bufbuild/buf@$(BUF_VERSION)

tools: $(TOOLS)/node_modules/.bin/buf

test: build tools
	cd $(BUILD) && ctest --output-on-failure -j2 --timeout 300

$(BUILD_ASAN)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DCONNWARDEN_SANITIZE=ON

test-asan: deps tools $(BUILD_ASAN)/CMakeCache.txt
	cmake --build $(BUILD_ASAN) -j$(JOBS)
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j2 --timeout 600

# Each fuzz target for FUZZ_SECONDS under libFuzzer (clang, ASan, UBSan), from the checked-in
# corpus; what it learns stays in $(BUILD_FUZZ)/corpus-*, a failing input in $(BUILD_FUZZ).
$(BUILD_FUZZ)/CMakeCache.txt: | deps
	@command -v clang++ >/dev/null && [ -n "$$(clang++ -print-file-name=libclang_rt.fuzzer-x86_64.a | grep /)" ] || { \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  $(SUDO) apt-get install -y -qq --no-install-recommends clang libclang-rt-dev; }
	CC=clang CXX=clang++ cmake -S . -B $(BUILD_FUZZ) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCONNWARDEN_FUZZ=ON

fuzz: deps $(BUILD_FUZZ)/CMakeCache.txt
	cmake -S . -B $(BUILD_FUZZ) >/dev/null  # a target added since the last run needs it
	cmake --build $(BUILD_FUZZ) -j$(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(BUILD_FUZZ)/corpus-$$t && \
	  echo "== fuzz_$$t, $(FUZZ_SECONDS) s" && \
	  (cd $(BUILD_FUZZ) && ./fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -dict=$(CURDIR)/tests/fuzz/$$t.dict corpus-$$t $(CURDIR)/tests/fuzz/corpus/$$t) || exit 1; \
	done

run: build
	@bash deploy/run-demo.sh $(BUILD) $(RUN_DIR) $(HTTP_PORT) $(HTTPS_PORT) $(APP_PORT)

bench: build
	bash tests/bench/proxy_bench.sh

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ) $(RUN_DIR) $(TOOLS)
