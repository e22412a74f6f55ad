# shitenno — see README.md.
GO       ?= go
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/shitenno/shitenno/pkg/daemon.Version=$(VERSION)
BINS     := shitenno-postfix shitenno-dovecot shitenno-nginx shitenno-example-backend
PREFIX   ?= /usr/local
DESTDIR  ?=
FUZZTIME ?= 10s

.PHONY: all build run test unit e2e fuzz bench lint install clean readme

all: build

build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ $(addprefix ./cmd/,$(BINS))

# Example backend + the three daemons on sockets under ./run, in the foreground.
run: build
	./scripts/run.sh

# Everything CI checks: formatting, vet, unit tests (race detector), fuzz
# seeds, end-to-end tests against the real postfix, dovecot and nginx, and
# short fuzzing runs.
test: lint unit e2e fuzz

unit:
	$(GO) test -race -count=1 ./pkg/... ./cmd/...

e2e: build
	$(GO) test -count=1 -timeout 20m ./e2e/...

fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

bench: build
	./scripts/bench.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	@command -v staticcheck >/dev/null 2>&1 || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	staticcheck ./...

# README.md is generated from docs/*.md.
readme:
	./scripts/readme.sh

install: build
	./scripts/install.sh "$(DESTDIR)" "$(PREFIX)"

clean:
	rm -rf bin run
