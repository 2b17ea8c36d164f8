# sandbox.swift — build, test, demo, bench, lint.
# swiftc from PATH, else the toolchain's usual place (/opt/swift, as the README installs it); its
# directory goes on PATH for the tools beside it (swift format in `make lint`).
SWIFTC     ?= $(or $(shell command -v swiftc 2>/dev/null),/opt/swift/usr/bin/swiftc)
export PATH := $(if $(findstring /,$(SWIFTC)),$(patsubst %/,%,$(dir $(SWIFTC))):)$(PATH)
SWIFTFLAGS := -parse-as-library -warnings-as-errors
SOURCES    := sandbox.swift $(wildcard sandbox_extra_tests.swift)
BUILD      := tests/build
PYTHON     ?= /usr/bin/python3
VENV       ?= $(CURDIR)/tests/build/venv

.PHONY: build test demo bench lint clean venv

# The CLI is built into tests/build, so the top level holds only the sources (the project's layout).
SANDBOX    := $(BUILD)/sandbox

build: $(SANDBOX)

# The CLI is a static PIE: no shared libraries to load and bind at each start (`sandbox --help`
# takes 1.1–1.4 ms instead of 1.8–2.7 ms with -static-stdlib), yet its base address is still randomized.
# lld (shipped with the toolchain) can link a static PIE, gold cannot. Extern links glibc's
# _GNU_SOURCE functions directly: a static binary has no symbol table for dlsym. The plain
# build line (`swiftc -O -parse-as-library sandbox.swift -o sandbox`) works too; tests/build/sandbox-base is built that way.
STATIC_PIE := -static-executable -use-ld=lld -Xclang-linker -static-pie -enable-experimental-feature Extern

$(SANDBOX): $(SOURCES)
	@mkdir -p $(BUILD)
	$(SWIFTC) -O $(SWIFTFLAGS) $(STATIC_PIE) $(SOURCES) -o $@

# The same file without the companion: --extra-tests must say so and run the base suite.
$(BUILD)/sandbox-base: sandbox.swift
	@mkdir -p $(BUILD)
	$(SWIFTC) -O $(SWIFTFLAGS) sandbox.swift -o $@

UNIT_SOURCES := sandbox.swift tests/unit_tests.swift tests/lifecycle_tests.swift tests/session_tests.swift tests/pool_tests.swift

$(BUILD)/unit_tests: $(UNIT_SOURCES)
	@mkdir -p $(BUILD)
	$(SWIFTC) $(SWIFTFLAGS) -D SANDBOX_LIBRARY $(UNIT_SOURCES) -o $@

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	@# numpy lets the tests check ordinary scientific work under the limits and the filter.
	$(VENV)/bin/pip install -q numpy || echo "venv: numpy not installed (no PyPI?); its test will be skipped"

venv: $(VENV)/bin/python

# The closing "N passed, N failed, N skipped" must stay the last line printed, and make prints
# "make: *** [...] Error 1" after any failed recipe. So a failed run ends make by SIGPIPE
# instead: exit status 141, not 0, and no line after the summary (neither make nor a shell
# reports a SIGPIPE death).
test: $(SANDBOX) $(BUILD)/sandbox-base $(BUILD)/unit_tests venv
	@VENV=$(VENV) SB=$(SANDBOX) tests/run.sh || kill -PIPE $$PPID

demo: $(SANDBOX) venv
	@echo "# This machine's kernel has no AppArmor, so the demo passes --no-apparmor (the tool says so too)."
	@echo "# With AppArmor: $(SANDBOX) --venv $(VENV) --apparmor-profile-name NAME prints the profile and how to install it."
	$(SANDBOX) --no-apparmor --venv $(VENV) --verbose
	$(SANDBOX) run --no-apparmor --venv $(VENV) --disable-network --code 'import sys, socket; print("hello from", sys.prefix, "on", socket.gethostname())'

$(BUILD)/bench: sandbox.swift tests/bench.swift
	@mkdir -p $(BUILD)
	$(SWIFTC) -O $(SWIFTFLAGS) -D SANDBOX_LIBRARY sandbox.swift tests/bench.swift -o $@

bench: $(SANDBOX) $(BUILD)/bench venv
	@# the plotting rows use the workload venv make test builds (pandas, matplotlib, scikit-learn), when it is there
	SANDBOX_BENCH_PLOT_VENV=$(if $(wildcard $(BUILD)/venv-work/.complete),$(CURDIR)/$(BUILD)/venv-work) $(BUILD)/bench $(VENV) $(SANDBOX) tests/bench-results.json
	$(PYTHON) tests/bench_serve.py $(SANDBOX) $(VENV)

lint:
	$(SWIFTC) -typecheck $(SWIFTFLAGS) sandbox.swift
	$(SWIFTC) -typecheck $(SWIFTFLAGS) sandbox.swift sandbox_extra_tests.swift
	$(SWIFTC) -typecheck $(SWIFTFLAGS) -enable-experimental-feature Extern sandbox.swift sandbox_extra_tests.swift
	$(SWIFTC) -typecheck $(SWIFTFLAGS) -swift-version 6 -D SANDBOX_LIBRARY sandbox.swift  # library users in Swift 6 mode
	@# Embedding: beside an app that declares exists, check, trimmed, run, Mount, Layout, printError, Config, Result.
	$(SWIFTC) -typecheck $(SWIFTFLAGS) -swift-version 6 -D SANDBOX_LIBRARY sandbox.swift tests/embedding/App.swift
	@# The blocking run is noasync: from async code the compiler picks the async run (and asks for await).
	@mkdir -p $(BUILD)
	@if $(SWIFTC) -typecheck $(SWIFTFLAGS) -swift-version 6 -D SANDBOX_LIBRARY sandbox.swift tests/embedding/NoAsyncMisuse.swift >$(BUILD)/noasync.txt 2>&1; \
	then echo "lint: the blocking run compiled from async code"; exit 1; \
	elif grep -q "expression is 'async' but is not marked with 'await'" $(BUILD)/noasync.txt; then echo "lint: the blocking run is refused from async code"; \
	else cat $(BUILD)/noasync.txt; exit 1; fi
	$(SWIFTC) -typecheck $(SWIFTFLAGS) -D SANDBOX_LIBRARY $(UNIT_SOURCES)
	$(SWIFTC) -typecheck $(SWIFTFLAGS) -D SANDBOX_LIBRARY sandbox.swift tests/bench.swift
	@# The style is .swift-format's (2-space indent, lines up to 120, no semicolons); any note fails.
	@# `swift format format -i sandbox.swift sandbox_extra_tests.swift` applies it.
	@if swift format --version >/dev/null 2>&1; then \
	  swift format lint --strict sandbox.swift sandbox_extra_tests.swift && echo "lint: swift format: no notes"; \
	else echo "lint: swift format is not in this toolchain; the style check is skipped"; fi

clean:
	rm -rf $(BUILD)
