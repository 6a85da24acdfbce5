# trustgate — see README.md. Two set-up commands: `make run` and `make test`.
GO      ?= go
BIN     := bin/trustgate
DEMO    := .demo
LISTEN  ?= 127.0.0.1:8080
OPA     := $(GO) tool opa

.PHONY: all build run test test-go test-rego lint bench certs clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/trustgate

# Prepare the demo Trust if absent (agency keys, signed protocols, config),
# print a first request, and start the gateway on the demo config.
run: build
	@$(BIN) demo init --dir $(DEMO) --listen $(LISTEN) --if-absent
	@$(BIN) demo hint --dir $(DEMO) --listen $(LISTEN)
	$(BIN) serve --config $(DEMO)/trustgate.yaml --listen $(LISTEN)

# Everything: formatting, vet, the Rego checks and tests, the Go tests.
test: lint test-rego test-go

lint:
	@out=$$(gofmt -l cmd internal policies protocols); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	$(OPA) fmt --list --fail policies
	$(OPA) check --strict policies

test-rego:
	$(OPA) test --v1-compatible -v policies | tail -n 3
	@$(OPA) test policies >/dev/null

test-go:
	$(GO) test -count=1 ./...

# Benchmarks (not part of `make test`): see docs/performance.md.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 2s ./internal/audit/ ./internal/identity/
	$(GO) test -tags bench -count=1 -run 'TestBench' -v -timeout 20m ./internal/bench/

# A development CA and server certificate under certs/dev (never committed).
certs: build
	$(BIN) dev certs --out certs/dev

clean:
	rm -rf bin $(DEMO)
