# Roost's developer commands. `make help` lists them.
GO      ?= go
PKGS    := ./...
FUZZTIME ?= 30s

.PHONY: help run build test unit race e2e lint fmt vet fuzz bench verify

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

run: ## run a hub on the default ports with ./roost-data
	$(GO) run ./cmd/roost serve

build: ## build bin/roost
	$(GO) build -o bin/roost ./cmd/roost

test: vet race e2e ## the whole suite: vet, Go tests with -race, the Node SDK end-to-end tests

unit: ## Go tests without the race detector (quick)
	$(GO) test -count=1 $(PKGS)

race: ## Go tests with the race detector
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

e2e: ## the unmodified Azure SDKs against a real roost (needs port 443: run as root)
	bash test/e2e/run.sh

vet: ## go vet
	$(GO) vet $(PKGS)

fmt: ## gofmt the tree
	gofmt -w cmd internal

lint: vet ## gofmt check and vet
	@out=$$(gofmt -l cmd internal); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

fuzz: ## run every fuzz target for FUZZTIME each
	@for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

bench: ## run the Go benchmarks once each (see docs/BENCHMARKS.md for the full runs)
	$(GO) test -run '^$$' -bench . -benchtime 1x $(PKGS)

verify: lint test ## everything CI checks
