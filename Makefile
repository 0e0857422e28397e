# citywatch — the two commands are `make demo` and `make test`.
GO      ?= go
PKGS    := ./...
TESTFLAGS ?= -race -count=1 -timeout 30m
STATICCHECK = $(shell $(GO) env GOPATH | cut -d: -f1)/bin/staticcheck

.PHONY: demo test bench deps build vet lint fmt-check fuzz clean

## demo: run the whole system in one process (embedded broker, hub, simulated city) and print the console URL
demo:
	$(GO) run ./demo

## test: install what the tests need (Mosquitto, Chromium, FFmpeg, InfluxDB 1.8.10, staticcheck), then vet, lint,
## format check and every test under the race detector
test: deps vet lint fmt-check
	$(GO) test $(TESTFLAGS) $(PKGS)

## bench: drive simulated agents through a real broker into the hub and InfluxDB; print figures.
## The peers (Telegraf, go2rtc) are built first: built during a benchmark, minutes of compiling
## would share the cores with the one before it.
bench: deps
	bash scripts/deps.sh telegraf
	bash scripts/deps.sh go2rtc
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 60m ./e2e/
	$(GO) test -run '^$$' -bench . -count 1 -timeout 30m $$($(GO) list ./... | grep -v /e2e)

## deps: install or build the services the tests start (idempotent, cached)
deps:
	bash scripts/deps.sh

## fuzz: run every fuzz target for a while (FUZZTIME, default 30s each)
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

build:
	$(GO) build ./...

vet:
	$(GO) vet $(PKGS)

## lint: staticcheck (installed by deps) over every package
lint: deps
	$(STATICCHECK) $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

clean:
	rm -rf bin
