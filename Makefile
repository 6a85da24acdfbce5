# trustgate — see README.md. Two set-up commands: `make run` and `make test`.
GO      ?= go
BIN     := bin/trustgate
DEMO    := .demo
LISTEN  ?= 127.0.0.1:8080
OPA     := $(GO) tool opa

# A real Vault server for the key store's tests (docs/operations.md §6):
# built once from the Go module proxy at the version pinned in
# internal/tools/vault/go.mod (a module of its own, so that the gateway's
# go.mod stays small) into a cache outside the repository, keyed by version.
VAULT_VERSION := $(shell awk '$$1 == "github.com/hashicorp/vault" { print $$2 }' internal/tools/vault/go.mod)
VAULT_CACHE   ?= $(or $(XDG_CACHE_HOME),$(if $(HOME),$(HOME)/.cache,/tmp))/trustgate
VAULT_BIN     ?= $(VAULT_CACHE)/vault-$(VAULT_VERSION)/vault

# The console's browser tests (docs/console.md): Debian's headless
# Chromium, installed with apt-get when missing, and axe-core from npm,
# fetched once into a git-ignored folder. Screenshots go to .artifacts/.
AXE_VERSION := 4.10.3
AXE_DIR     := .cache/npm
AXE_JS      := $(AXE_DIR)/node_modules/axe-core/axe.min.js

.PHONY: all build run test test-go test-fuzz test-rego lint bench fuzz certs clean vault chromium

all: build

build:
	$(GO) build -ldflags "-X main.buildRevision=$(shell git rev-parse HEAD 2>/dev/null)" -o $(BIN) ./cmd/trustgate

# Prepare the demo Trust if absent (agency keys, signed protocols, records,
# config), print first requests, and start the gateway with a reference
# provider for every demo agency, in one process (Ctrl-C stops them all).
run: build
	@$(BIN) demo init --dir $(DEMO) --listen $(LISTEN) --if-absent
	@$(BIN) demo hint --dir $(DEMO) --listen $(LISTEN)
	$(BIN) demo run --dir $(DEMO) --listen $(LISTEN)

# Everything: formatting, vet, the Rego checks and tests, the Go tests.
test: lint test-rego test-go test-fuzz

lint:
	@out=$$(gofmt -l cmd internal policies protocols); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags bench ./...   # every build-tagged benchmark compiles, so make bench cannot rot
	$(GO) vet -tags pprof ./cmd/trustgate   # the profiling build the benchmarks make (BENCH_PPROF_DIR)
	$(OPA) fmt --list --fail policies
	$(OPA) check --strict policies

test-rego:
	$(OPA) test policies

test-go: $(VAULT_BIN) chromium $(AXE_JS)
	TRUSTGATE_VAULT_BIN=$(VAULT_BIN) TRUSTGATE_AXE=$(abspath $(AXE_JS)) TRUSTGATE_SCREENSHOTS=$(abspath .artifacts/console) $(GO) test -count=1 ./...

chromium:
	@command -v chromium >/dev/null 2>&1 || { echo "installing Debian's chromium for the console's browser tests"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }

$(AXE_JS):
	@mkdir -p $(AXE_DIR)
	npm install --prefix $(AXE_DIR) --no-save --no-package-lock --no-audit --no-fund axe-core@$(AXE_VERSION)

# The damaged-log fuzz target (internal/audit/damage_test.go): truncations
# and byte flips of a real log must never crash verify or the gateway's
# open, and a copy verify passes must read exactly as the undamaged log.
# Bounded here; `make fuzz` runs it longer (FUZZTIME=30m, say), and the
# independent fault battery (cmd/trustgate/faults_test.go: the built
# binary's verify and export on every damaged copy) on FAULTS random
# copies instead of make test's 240.
FUZZTIME ?= 10m
FAULTS   ?= 3000
test-fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDamagedLog$$' -fuzztime 10s ./internal/audit/

fuzz:
	TRUSTGATE_FAULTS=$(FAULTS) $(GO) test -count=1 -timeout 60m -run '^TestFaultBattery$$' ./cmd/trustgate/
	$(GO) test -run '^$$' -fuzz '^FuzzDamagedLog$$' -fuzztime $(FUZZTIME) ./internal/audit/

vault: $(VAULT_BIN)

$(VAULT_BIN):
	@test -n "$(VAULT_VERSION)" || { echo "no github.com/hashicorp/vault version in internal/tools/vault/go.mod"; exit 1; }
	@echo "building Vault $(VAULT_VERSION) once into $@ (about 12 minutes the first time; cached after)"
	@mkdir -p $(dir $@)
	cd internal/tools/vault && $(GO) build -ldflags='-s -w' -o $@.tmp.$$$$ github.com/hashicorp/vault && mv $@.tmp.$$$$ $@

# Benchmarks (not part of `make test`): see docs/performance.md.
bench: build $(VAULT_BIN)
	$(GO) test -run '^$$' -bench . -benchtime 2s ./internal/audit/ ./internal/identity/ ./internal/decision/
	TRUSTGATE_VAULT_BIN=$(VAULT_BIN) $(GO) test -tags bench -count=1 -run 'TestBench' -v -timeout 20m ./internal/bench/
	$(GO) test -tags bench -count=1 -run 'TestBenchWhatIf' -v -timeout 30m ./internal/whatif/
	$(GO) test -tags bench -count=1 -run 'TestBenchAudit' -v -timeout 30m ./internal/audit/
	$(GO) test -tags bench -count=1 -run 'TestBenchIndex' -v -timeout 40m ./internal/involvement/
	$(GO) test -tags bench -count=1 -run 'TestBenchOpen' -v -timeout 20m ./internal/audit/
	$(GO) test -tags bench -count=1 -run 'TestBenchRestart' -v -timeout 20m ./internal/app/
	$(GO) test -tags bench -count=1 -run 'TestBenchConsolePages' -v -timeout 20m ./internal/console/

# A development CA and server certificate under certs/dev (never committed).
certs: build
	$(BIN) dev certs --out certs/dev

clean:
	rm -rf bin $(DEMO)
