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

.PHONY: all build vault test unit integration demo lint clean package rules fuzz vulncheck mutate

all: build

# Static (CGO off) so the binary runs on any host of the fleet.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/certkeeper ./cmd/certkeeper

# A real Vault server (and Vault Agent), pinned in test/vaultserver/go.mod.
vault: bin/vault
bin/vault: test/vaultserver/go.mod test/vaultserver/go.sum test/vaultserver/main.go
	cd test/vaultserver && $(GO) build -trimpath -ldflags '-s -w' -o ../../bin/vault .

test: unit rules integration

# The example alerts and their promtool unit tests. promtool is in Debian's
# prometheus package, which .ci/run installs; a developer without it is
# told, not failed. Under CI=true a missing promtool fails: CI must run them.
rules:
	@if command -v promtool >/dev/null 2>&1; then \
		promtool check rules examples/prometheus/alerts.yml && \
		promtool test rules examples/prometheus/alerts_test.yml; \
	elif [ "$$CI" = true ]; then \
		echo "rules: promtool not found and CI=true: install the Debian package prometheus" >&2; exit 1; \
	else \
		echo "SKIP rules: promtool not found (install the Debian package prometheus)"; \
	fi

unit:
	CGO_ENABLED=1 $(GO) test -race -count=1 ./...

integration: bin/vault build
	CGO_ENABLED=1 $(GO) test -race -count=1 -tags '$(TAGS)' -timeout 30m -parallel 4 ./test/...

# Each parser of outside data, fuzzed for FUZZTIME. The committed seed
# corpora (testdata/fuzz) run in every `go test` anyway.
FUZZ_TARGETS := ./config:FuzzParse ./internal/pki:FuzzParseCertificates ./internal/pki:FuzzParseKey \
	./internal/pki:FuzzParseCRLs ./vault:FuzzParseIssued ./vault:FuzzParseRetryAfter
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($${t%%:*}, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

# Mutation testing with gremlins (pinned in test/mutate/go.mod, a module of
# its own so go.mod stays clean) over the packages that carry the promises:
# renewal timing, PKI checks, file sets, services, trust bundles, the
# templates' function gate. Prints killed/lived per package and every
# surviving mutant with the reason it is accepted (test/mutate/survivors.txt)
# or NEW. MUTATE_FLOOR (a percentage) fails the run when the overall score
# is lower or a survivor is NEW. About 13 minutes on 2 cores.
MUTATE_PKGS  ?= ./internal/renewal ./internal/pki ./sinks ./services ./trust ./templates
MUTATE_FLOOR ?= 0
mutate:
	cd test/mutate && $(GO) run . -root ../.. -floor $(MUTATE_FLOOR) $(MUTATE_PKGS)

# The demo is built, then run, not `go run`: go run exits 1 when it gets
# the terminal's SIGINT, however cleanly the demo stops, and make would
# then end a clean Ctrl-C with "Error 1".
demo: build bin/vault
	$(GO) build -o bin/certkeeper-demo ./test/demo
	bin/certkeeper-demo

# dist/certkeeper_<version>_amd64.deb, built with nfpm as a Go tool (pinned
# in packaging/go.mod): the static binary, the systemd unit, the host config
# as a conffile, the sudoers drop-in, a system user, the README and examples,
# and a man page made by `certkeeper man` (its -h text and every config key).
DEB_VERSION := $(shell echo $(VERSION) | sed -e 's/^v//' -e 's/^\([0-9a-f]\{7,\}\)/0.0.0+g\1/' -e 's/-dirty/.dirty/')
package: build
	mkdir -p dist
	bin/certkeeper man | gzip -9n > dist/certkeeper.1.gz
	cd packaging && VERSION=$(DEB_VERSION) $(GO) tool nfpm pkg --packager deb --config nfpm.yaml --target ../dist/certkeeper_$(DEB_VERSION)_amd64.deb
	@ls -l dist/*.deb

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags '$(TAGS)' ./...

clean:
	rm -rf bin dist

# govulncheck with a vulnerability database built here from the
# golang.org/x/vulndb module, which the Go module proxy serves like any
# module: no access to vuln.go.dev is needed. -scan package also fails on
# a vulnerable package that is imported but not (yet) called. Both are
# pinned; bump VULNDB_VERSION (go list -m golang.org/x/vulndb@latest) to
# check against newer advisories. The standard library is checked at the
# version of the go command that runs this, the one that builds the binary.
VULN_VERSION   := v1.9.0
VULNDB_VERSION := v0.0.0-20261105234957-e22db6528018
VULNDB         := bin/vulndb-$(VULNDB_VERSION)
vulncheck: $(VULNDB)
	$(GO) run golang.org/x/vuln/cmd/govulncheck@$(VULN_VERSION) -db file://$(CURDIR)/$(VULNDB) -scan package ./...
$(VULNDB):
	rm -rf $@.tmp
	src=$$($(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
		test -d "$$src/data/osv" && \
		$(GO) run golang.org/x/vulndb/cmd/indexdb@$(VULNDB_VERSION) -vulns "$$src/data/osv" -out $@.tmp
	mv $@.tmp $@

# Side by side on one dev Vault: certkeeper, Vault Agent and a bare
# vault/api client (test/bench). Prints a table of medians and writes it to
# test/bench/results/. Flags go through BENCH_FLAGS, e.g.
#   make bench BENCH_FLAGS='-n 100 -rounds 1 -big 0'
.PHONY: bench
BENCH_FLAGS ?=
bench: bin/vault build
	$(GO) build -o bin/certkeeper-bench ./test/bench
	bin/certkeeper-bench $(BENCH_FLAGS)

# A fleet of real `certkeeper run` processes against a 3-node Raft Vault
# on loopback (test/fleetbench): Vault's request rate and latency through
# a cold start, mass `rotate -spread` at several spreads, and a rotation
# with the leader SIGKILLed halfway. Writes a report and a timeline plot to
# test/fleetbench/results/. Not part of `make test`. For example
#   make fleet-bench FLEET_FLAGS='-n 200 -spreads 30s,60s,120s'
.PHONY: fleet-bench
FLEET_FLAGS ?=
fleet-bench: bin/vault build
	$(GO) build -o bin/certkeeper-fleetbench ./test/fleetbench
	bin/certkeeper-fleetbench $(FLEET_FLAGS)
