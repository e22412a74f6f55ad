# shitenno — see README.md.
GO       ?= go
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/shitenno/shitenno/pkg/daemon.Version=$(VERSION)
BINS     := shitenno-postfix shitenno-dovecot shitenno-nginx shitenno-example-backend
PREFIX   ?= /usr/local
DESTDIR  ?=
FUZZTIME ?= 10s

.PHONY: all build run check test peers unit e2e fuzz bench lint install clean readme deb test-deb

all: build

build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ $(addprefix ./cmd/,$(BINS))

# Example backend + the three daemons on sockets under ./run, in the foreground.
run: build
	./scripts/run.sh

# Quick edit-test loop: unit tests, no race detector, no peers, no root
# (the e2e package runs nothing under -short).
check:
	$(GO) test -short -count=1 ./...

# Everything CI checks: formatting, vet, unit tests (race detector), fuzz
# seeds, short fuzzing runs and the end-to-end tests against the real
# postfix, dovecot and nginx, which it installs first when they are missing
# (scripts/install-peers.sh). An e2e test skipped for a missing peer fails
# the run unless SHITENNO_ALLOW_SKIP=1. The last line counts the tests.
test: lint peers
	@rm -rf $(RESULTS)
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory fuzz
	@$(MAKE) --no-print-directory e2e
	@$(TESTSUMMARY) -noskip $(E2EPKG) $(RESULTS)/unit.json $(RESULTS)/e2e.json

# The peers the e2e tests run: installed when missing (root or sudo -n),
# else the exact command to run is printed and this fails. The e2e suite
# itself needs root (private postfix, chroots).
peers:
	./scripts/install-peers.sh
	@[ "$$(id -u)" -eq 0 ] || [ "$(SHITENNO_ALLOW_SKIP)" = 1 ] || { \
		echo "make test: the e2e tests need root (private postfix, Debian 13 chroot): run  sudo make test"; \
		echo "           (or SHITENNO_ALLOW_SKIP=1 make test to accept skipped tests)"; exit 1; }

RESULTS     := bin/test-results
TESTSUMMARY := bin/testsummary
E2EPKG      := github.com/shitenno/shitenno/e2e

$(TESTSUMMARY): $(wildcard internal/testsummary/*.go)
	@mkdir -p bin
	$(GO) build -o $@ ./internal/testsummary

unit: $(TESTSUMMARY)
	@mkdir -p $(RESULTS)
	$(GO) test -json -race -count=1 ./pkg/... ./cmd/... ./internal/... 2>&1 | $(TESTSUMMARY) -o $(RESULTS)/unit.json

e2e: build $(TESTSUMMARY)
	@mkdir -p $(RESULTS)
	$(GO) test -json -count=1 -timeout 20m $(if $(E2ERUN),-run '$(E2ERUN)') ./e2e/... 2>&1 | $(TESTSUMMARY) -o $(RESULTS)/e2e.json -noskip $(E2EPKG)

fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

bench: build
	./scripts/bench.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	@# Debian builds Architecture: any; 32-bit linux/386 reaches some
	@# system calls differently (pkg/remote/h1peek_recvfrom.go).
	GOARCH=386 $(GO) vet ./...
	@command -v staticcheck >/dev/null 2>&1 || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	staticcheck ./...

# README.md is generated from docs/*.md.
readme:
	./scripts/readme.sh

# Debian package: dist/shitenno_<version>_<arch>.deb (scripts/deb.sh).
deb:
	./scripts/deb.sh

# The package installed, run, upgraded and purged in Debian 12 and 13
# chroots (scripts/test-deb.sh; root).
test-deb: deb
	./scripts/test-deb.sh dist/shitenno_$$(./scripts/deb-version.sh)_$$(dpkg-architecture -qDEB_HOST_ARCH).deb

install: build
	./scripts/install.sh "$(DESTDIR)" "$(PREFIX)"

clean:
	rm -rf bin run dist
