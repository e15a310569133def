# socialrx — the two commands: `make run` (service on SQLite with the demo configuration) and `make test`.
GO      ?= go
PKGS    := ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
FUZZTIME ?= 10s
RIVER_PG ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable

.PHONY: run build test test-postgres test-fhir-clients vet lint fmt-check test-race fuzz bench bench-smoke bench-old bench-hostile bench-river river-bench socialrx-bin crash generate clean

run: ## run the service on sqlite:socialrx.db with the embedded demo configuration
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/socialrx serve

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/socialrx ./cmd/socialrx

test: fmt-check vet lint ## the whole test suite; PostgreSQL tests skip without a server (fail when CI is set)
	$(GO) test -count=1 -timeout 20m $(PKGS)

test-postgres: ## the store suite on PostgreSQL (SOCIALRX_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test); skips without a server unless CI is set
	$(GO) test -count=1 ./outbox/postgres/...

SCREENSHOT_DIR ?= $(CURDIR)/screenshots
.PHONY: test-browser
test-browser: ## the community inbox and the operations console in headless Chromium (server/internal/browsertest); skips without Chromium unless CI is set; screenshots to SCREENSHOT_DIR
	SCREENSHOT_DIR='$(SCREENSHOT_DIR)' $(GO) test -count=1 -timeout 10m -run '^TestBrowser' ./server/
	@echo "screenshots: $(SCREENSHOT_DIR)"
# The real-client walk (clients/fhir, Node 20+ and npm): fhir-kit-client and the SMART fhirclient drive a real
# `socialrx serve` (temporary SQLite file, free loopback port); Medplum's validator checks every resource returned.
# The npm packages are pinned by clients/fhir/package-lock.json and installed with npm ci when it changes.
CLIENTS_BIN := bin/socialrx-clients
test-fhir-clients: clients/fhir/node_modules/.package-lock.json ## real FHIR clients (fhir-kit-client, fhirclient) walk a real socialrx; every resource R4-validated
	$(GO) build -ldflags "$(LDFLAGS)" -o $(CLIENTS_BIN) ./cmd/socialrx
	cd clients/fhir && SOCIALRX_BIN=$(CURDIR)/$(CLIENTS_BIN) node walk.mjs

clients/fhir/node_modules/.package-lock.json: clients/fhir/package-lock.json
	cd clients/fhir && npm ci --prefer-offline --no-audit --no-fund --loglevel=error

vet:
	$(GO) vet $(PKGS)

lint: ## staticcheck, pinned in go.mod (tool directive); bench/river is its own module, so ./... leaves it out
	$(GO) tool staticcheck $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test-race: ## concurrency-heavy packages under the race detector
	$(GO) test -count=1 -race -timeout 20m ./outbox/... ./server/...

# FUZZTIME is go test's -fuzztime: a duration (10s) or an execution count (50000x). CI uses a count: a duration
# can end a sound run with a spurious "context deadline exceeded" on Go 1.26 (golang/go#75804, fixed in 1.27).
fuzz: ## every fuzz target for FUZZTIME each (bounded; CI uses 50000x): decoders (the stored referral's too), validator, mapping, JSON Patch, webhook verification, token endpoint and every API (on SQLite and on PostgreSQL: SOCIALRX_FUZZ_BACKEND)
	$(GO) test ./fhir -run='^$$' -fuzz='^FuzzParseServiceRequest$$' -fuzztime=$(FUZZTIME) -timeout=10m
	$(GO) test ./fhir -run='^$$' -fuzz='^FuzzParseTransaction$$' -fuzztime=$(FUZZTIME) -timeout=10m
	$(GO) test ./fhir -run='^$$' -fuzz='^FuzzValidatorAgainstSchema$$' -fuzztime=$(FUZZTIME) -timeout=10m
	$(GO) test ./mapping -run='^$$' -fuzz='^FuzzBuild$$' -fuzztime=$(FUZZTIME) -timeout=10m
	$(GO) test ./server/internal/jsonpatch -run='^$$' -fuzz='^FuzzJSONPatch$$' -fuzztime=$(FUZZTIME) -timeout=10m
	$(GO) test ./outbox -run='^$$' -fuzz='^FuzzVerify$$' -fuzztime=$(FUZZTIME) -timeout=10m
	$(GO) test ./outbox/internal/sqlstore -run='^$$' -fuzz='^FuzzDecodeStored$$' -fuzztime=$(FUZZTIME) -timeout=10m
	$(GO) test ./server -run='^$$' -fuzz='^FuzzTokenRequest$$' -fuzztime=$(FUZZTIME) -timeout=10m
	$(GO) test ./server -run='^$$' -fuzz='^FuzzAPIs$$' -fuzztime=$(FUZZTIME) -timeout=10m
	SOCIALRX_FUZZ_BACKEND=postgres $(GO) test ./server -run='^$$' -fuzz='^FuzzAPIs$$' -fuzztime=$(FUZZTIME) -timeout=10m
	SOCIALRX_FUZZ_BACKEND=postgres $(GO) test ./server -run='^$$' -fuzz='^FuzzTokenRequest$$' -fuzztime=$(FUZZTIME) -timeout=10m

# The comparison table (issue 12): every socialrx figure beside its peer (the bare SQLite insert loop, pgbench
# running the store's CreateReferral transaction, River), medians [min–max] of BENCH_ROUNDS interleaved rounds,
# the load average at each round's start and end. PostgreSQL rows need BENCH_PG (skipped when unreachable). The
# 1,000,000-message backlog's pre-load takes minutes (BENCH_HUGE=false leaves it out). Run on a quiet machine.
BENCH_PG     ?= $(RIVER_PG)
BENCH_ROUNDS ?= 3
BENCH_HUGE   ?= true
RIVER_BENCH  := $(CURDIR)/bin/river-bench
SOCIALRX_BIN := $(CURDIR)/bin/socialrx
TABLE_FLAGS  ?=
bench: river-bench socialrx-bin ## the comparison table: socialrx vs bare SQLite, pgbench and River, 3 interleaved rounds (tens of minutes; README "Performance")
	$(GO) run ./cmd/socialrx-bench -table -table-rounds=$(BENCH_ROUNDS) -table-huge=$(BENCH_HUGE) \
		-table-postgres='$(BENCH_PG)' -river-bench=$(RIVER_BENCH) -socialrx-bin=$(SOCIALRX_BIN) $(TABLE_FLAGS)

bench-smoke: river-bench socialrx-bin ## the comparison table at smoke sizes (1 round, 2 s runs, 500/2,000 backlogs, no 1M): checks that it works, in 2–3 minutes
	$(GO) run ./cmd/socialrx-bench -table -table-rounds=1 -table-intake-duration=2s -table-paced-duration=2s \
		-table-backlogs=500,2000 -table-instances-backlog=2000 -table-default-drain=2000 -table-huge=false \
		-table-postgres='$(BENCH_PG)' -river-bench=$(RIVER_BENCH) -socialrx-bin=$(SOCIALRX_BIN) $(TABLE_FLAGS)

bench-old: ## the former `make bench`: the store's go benchmarks, then socialrx-bench's intake and delivery tables
	$(GO) test ./outbox/sqlite -run='^$$' -bench=. -benchtime=2s -count=1
	$(GO) run ./cmd/socialrx-bench

socialrx-bin: ## build bin/socialrx (the table's `serve` process rows run it)
	$(GO) build -o $(SOCIALRX_BIN) ./cmd/socialrx

river-bench: ## build bin/river-bench (bench/river, its own module)
	cd bench/river && $(GO) build -o $(RIVER_BENCH) .

HOSTILE_FLAGS ?=
bench-hostile: ## the real binary under 64 maximum-size bodies and a bad-token flood: peak RSS, a legitimate GP's p50/p99 (README "Security")
	$(GO) run ./cmd/socialrx-bench -hostile $(HOSTILE_FLAGS)

bench-river: ## the same webhook job on riverqueue/river and this machine's PostgreSQL (separate module bench/river)
	cd bench/river && $(GO) run . -server '$(RIVER_PG)'

CRASH_REFERRALS ?= 1000
CRASH_KILLS     ?= 10
CRASH_CLIENTS   ?= 8
crash: ## kill -9 the real binary during a delivery storm, alone on SQLite and as 3 instances on PostgreSQL (go test ./... runs a short version)
	CRASH_REFERRALS=$(CRASH_REFERRALS) CRASH_KILLS=$(CRASH_KILLS) CRASH_CLIENTS=$(CRASH_CLIENTS) \
		$(GO) test -count=1 -v -timeout 30m -run 'DeliveryStorm|ThreeInstances' ./cmd/socialrx/crashtest

generate:
	$(GO) generate ./...

clean:
	rm -rf bin socialrx.db socialrx.db-wal socialrx.db-shm clients/fhir/node_modules
