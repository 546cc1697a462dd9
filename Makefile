# wdo: build, run, test and benchmark.
#   make run    builds everything, then serves examples/wdo.toml on 127.0.0.1:8787 (data in .wdo/)
#   make test   lint + unit tests + end-to-end tests against the real `wdo serve`
#   make bench  the benchmarks (figures go in README.md)

CARGO ?= cargo
# Everything lands in ./target (CI links it to a cache folder), so paths like
# target/release/wdo and examples/wdo.toml's component paths always hold.
export CARGO_TARGET_DIR := $(CURDIR)/target

GUEST := --profile guest --target wasm32-wasip2
EXAMPLES := counter ticket history reminder meter room chat cursors worker-counter-object worker-counter-worker
TEST_GUESTS := probe other-world deploy-v1 deploy-v2 stray-import

.PHONY: build run test bench lint guests test-guests wasm-target browser clean

# The browser test drives Debian's chromium through chromedriver; install them when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

wasm-target:
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

build: wasm-target
	$(CARGO) build --release -p wdo-host
	$(CARGO) build $(GUEST) $(addprefix -p ,$(EXAMPLES))

run: build
	./target/release/wdo serve --listen 127.0.0.1:8787 --data .wdo examples/wdo.toml

browser:
	@command -v chromedriver >/dev/null 2>&1 || { \
		echo "installing Debian's chromium and chromium-driver for the browser test"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }

test-guests: wasm-target
	$(CARGO) build $(GUEST) $(addprefix -p ,$(TEST_GUESTS))

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: lint build test-guests browser
	$(CARGO) test --release -p wdo-host

bench: build test-guests
	$(CARGO) run --release -p wdo-bench -- $(BENCH_ARGS)

clean:
	$(CARGO) clean
	rm -rf .wdo
