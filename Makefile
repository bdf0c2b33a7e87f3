# certkeeper: `make demo` runs it against a local dev Vault; `make test` runs
# every test (unit, integration against a real Vault, end-to-end).

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
# Integration and end-to-end tests sit behind this tag so `go test ./...`
# stays fast; `make test` always sets it. `faults` adds the long fault
# suite (Raft cluster, outages, crashes, disk faults); make test sets it too.
TAGS     := integration faults
# Each fuzz target runs this long under `make fuzz`.
FUZZTIME ?= 20s

export CGO_ENABLED ?= 0

.PHONY: all build vault test unit integration fuzz demo lint clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/certkeeper ./cmd/certkeeper

# A real Vault server (and Vault Agent), pinned in test/vaultserver/go.mod.
vault: bin/vault
bin/vault: test/vaultserver/go.mod test/vaultserver/go.sum test/vaultserver/main.go
	cd test/vaultserver && $(GO) build -trimpath -ldflags '-s -w' -o ../../bin/vault .

test: unit integration

unit:
	CGO_ENABLED=1 $(GO) test -race -count=1 ./...

integration: bin/vault build
	CGO_ENABLED=1 $(GO) test -race -count=1 -tags '$(TAGS)' -timeout 30m -parallel 4 ./test/...

# Each parser of outside data, fuzzed for FUZZTIME. The committed seed
# corpora (testdata/fuzz) run in every `go test` anyway.
FUZZ_TARGETS := ./config:FuzzParse ./agent/pki:FuzzParseCertificates ./agent/pki:FuzzParseKey \
	./agent/pki:FuzzParseCRLs ./agent/vault:FuzzParseIssued ./agent/vault:FuzzParseRetryAfter
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($${t%%:*}, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

demo: build bin/vault
	$(GO) run ./test/demo

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags '$(TAGS)' ./...

clean:
	rm -rf bin dist
