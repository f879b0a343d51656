# Build, test and run the Graph change-notification handler. `make help` lists the targets.
# Times in `make help` were measured on a 2-core machine shared with other builds (load average 5–10), with
# the build cache warm; "cold" is with an empty GOCACHE, which adds a few minutes of compiling.
SHELL := /bin/bash
GO ?= go
export CGO_ENABLED ?= 1

.PHONY: help build build-linux demo deps test vet fmt-check race clock-shift bench fuzz clean

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  %-15s %s\n", $$1, $$2 }'

build: ## build ./handler for this machine
	$(GO) build -o handler .

# The demo is built, not `go run`: go run reports a Ctrl-C'd program as failed, and make then prints an error.
demo: deps ## the whole pipeline on this machine (Azurite + Graph and host doubles), no Azure account
	@echo "building the handler and test doubles: a minute or more the first time (it compiles the Azure SDK), seconds after"
	$(GO) build -o handler . && $(GO) build -o .demo/demo ./cmd/demo
	@./.demo/demo -handler ./handler $(ARGS)

build-linux: ## build ./handler for Azure (Linux x64, static)
	GOOS=linux GOARCH=amd64 CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o handler .

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

deps: node_modules/.package-lock.json ## install the pinned Azurite (npm ci)

test: deps fmt-check vet race clock-shift test-scripts ## everything CI runs: gofmt, go vet, go test -race (with Azurite), the unit suites with their clocks moved, script tests

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './node_modules/*')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

race:
	$(GO) test -race -count=1 ./...

# The unit suites again, with every fixed test clock (internal/testclock) ten years ahead, then ten years
# behind: a test that dates anything by the wall clock next to its fixed clock fails here at once, not on
# the day the calendar passes the date it pinned. (Product code reading the wall clock is refused by
# clock_test.go, in the race run.) About a minute on 2 cores.
CLOCK_SHIFT_PKGS := ./internal/subscription/ ./internal/status/ ./renewtimer/ ./internal/resync/ ./internal/intake/ ./eventhub/ ./internal/events/ ./internal/mailbox/
clock-shift:
	@for s in 87600h -87600h; do \
	  echo "unit suites with the test clock moved by $$s"; \
	  GRAPH_WEBHOOKS_TEST_CLOCK_SHIFT=$$s $(GO) test -count=1 -run '^TestUnit' ./queueworker/ || exit 1; \
	  GRAPH_WEBHOOKS_TEST_CLOCK_SHIFT=$$s $(GO) test -count=1 $(CLOCK_SHIFT_PKGS) || exit 1; \
	done

FUZZTIME ?= 20s
fuzz: ## run every fuzz test for FUZZTIME (20s); failing inputs land in testdata/fuzz/
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list='^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run='^$$' -fuzz="^$$f\$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -f handler

# ---------------------------------------------------------------------------------------------------------
# Operations: the real local run, script tests and script lint (see docs/operations.md). Appended block;
# the targets above are unchanged.
SCRIPTS := $(wildcard scripts/*.sh deploy/*.sh deploy/testdata/*.sh) .ci/run

.PHONY: start test-scripts lint-scripts publish

# publish checks what it uploads: `make build` leaves a cgo binary for this machine in ./handler, and a
# hand-run `func azure functionapp publish` would ship it.
publish: ## build-linux, check ./handler is a static Linux x64 build, then func azure functionapp publish $(APP)
	@[ -n "$(APP)" ] || { echo "usage: make publish APP=<function app name>" >&2; exit 2; }
	@command -v func >/dev/null 2>&1 || { echo "Core Tools (func) not found: install it (docs/operations.md), or publish with deploy/deploy.sh --zip-deploy" >&2; exit 2; }
	$(MAKE) --no-print-directory build-linux
	./scripts/check-handler.sh handler
	func azure functionapp publish $(APP)

start: ## build ./handler, start Azurite (data in .azurite/), run func start (ARGS= passes flags to func)
	./scripts/start.sh $(ARGS)

test-scripts: ## shell tests of scripts/, deploy/ and make publish (no Core Tools, no Azure, no network)
	bash scripts/start_test.sh
	bash scripts/check-handler_test.sh
	bash deploy/deploy_test.sh
	bash deploy/grant-graph-permission_test.sh

lint-scripts: ## bash -n, then shellcheck when installed, on every shell script
	@for f in $(SCRIPTS); do bash -n "$$f" || exit 1; done; echo "bash -n: ok ($(words $(SCRIPTS)) files)"
	@if command -v shellcheck >/dev/null 2>&1; then shellcheck -x $(SCRIPTS) && echo "shellcheck: ok"; \
	else echo "shellcheck not installed (apt-get install shellcheck): skipped"; fi

# ---------------------------------------------------------------------------------------------------------
# Benchmarks: cmd/bench measures the handler beside the baseline in bench/baseline and writes
# docs/benchmarks.md (see that file's header). Appended block; `bench` moved here from above, and still runs
# every Go benchmark first.
.PHONY: bench bench-quick

bench: ## Go benchmarks, then cold start / throughput / memory vs a baseline → docs/benchmarks.md (~2½ min)
	$(GO) test -run='^$$' -bench=. -benchmem ./...
	$(GO) run ./cmd/bench -out docs/benchmarks.md

bench-quick: ## smoke run of every benchmark step (~35 s; ~4 min cold); the report goes to $TMPDIR, not docs/
	$(GO) run ./cmd/bench -quick -out $${TMPDIR:-/tmp}/benchmarks-quick.md

# ---------------------------------------------------------------------------------------------------------
# Pipeline measurements: the real handler under the host double with Azurite and the Graph double. Each
# writes its own sub-section of the block between the bench-pipeline markers of docs/benchmarks.md, which
# `make bench` keeps. Appended block; the targets above are unchanged. REL_ARGS / PIPE_ARGS pass flags.
.PHONY: bench-pipeline reliability

bench-pipeline: deps ## Graph requests and events per change, state-table cost, groups, drives, latency → docs/benchmarks.md (~5 min; PIPE_ARGS=-only-detection or -only-drives: that part alone)
	$(GO) run ./cmd/benchpipeline -out docs/benchmarks.md $(PIPE_ARGS)

reliability: deps ## faults (429/503/SIGKILL/forgeries/garbage/drops+resync, the same through Event Hubs, storage outages), hostile bodies (peak RSS) + every fuzz target → docs/benchmarks.md (~7 min, but the storage group beside them takes ~20 min with its six 3-minute outages; REL_ARGS='-storage-stretch 1m' shortens them)
	$(GO) run ./cmd/reliability -out docs/benchmarks.md $(REL_ARGS)

# ---------------------------------------------------------------------------------------------------------
# Tenant scale: full passes over 20,000 and 100,000 users, a burst, one POST of 5,000 notifications, with the
# real handler under the host double, Azurite and the Graph double. Writes the bench-scale block of
# docs/benchmarks.md. Appended block; not part of `make test`. SCALE_ARGS passes flags (-only pass|burst|post).
.PHONY: bench-scale

bench-scale: deps ## tenant scale: full passes (20k, 100k users), burst, 5,000-notification POST → docs/benchmarks.md (~10 min)
	$(GO) run ./cmd/benchscale -out docs/benchmarks.md $(SCALE_ARGS)

# Mailboxes at scale: 10,000 mailboxes converged and kept against the Graph double, and the enrichment's
# Graph requests per notification with Outlook's duplicates. Appended block; not part of `make test`.
.PHONY: bench-mailboxes
bench-mailboxes: ## 10,000 mailboxes: runs to converge, requests per mailbox per day, RSS → docs/benchmarks.md (~5 min)
	$(GO) run ./cmd/benchmailboxes -out docs/benchmarks.md $(MAIL_ARGS)
