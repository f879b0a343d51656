# Build, test and run the Graph change-notification handler. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
export CGO_ENABLED ?= 1

.PHONY: help build build-linux deps test vet fmt-check race bench fuzz clean

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

build: ## build ./handler for this machine
	$(GO) build -o handler .

build-linux: ## build ./handler for Azure (Linux x64, static)
	GOOS=linux GOARCH=amd64 CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o handler .

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

deps: node_modules/.package-lock.json ## install the pinned Azurite (npm ci)

test: deps fmt-check vet race ## everything CI runs: gofmt, go vet, go test -race (with Azurite)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './node_modules/*')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

race:
	$(GO) test -race -count=1 ./...

bench: ## run the Go benchmarks
	$(GO) test -run='^$$' -bench=. -benchmem ./...

fuzz: ## run each fuzz test for 20 s
	$(GO) test -run='^$$' -fuzz=FuzzDecodeCollection -fuzztime=20s ./internal/graph
	$(GO) test -run='^$$' -fuzz=FuzzWebhook -fuzztime=20s ./webhook

clean:
	rm -f handler
