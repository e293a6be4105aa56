# Proteus build and test entry points. `make test` is what CI runs (see .ci/run).
GO ?= go
STATICCHECK_VERSION ?= v0.6.1
GOBIN ?= $(shell $(GO) env GOPATH)/bin
STATICCHECK := $(GOBIN)/staticcheck

.PHONY: build test vet staticcheck unit fuzz bench tools tidy-check config-reference docker

build:
	$(GO) build -o bin/proteus ./cmd/proteus

tools: $(STATICCHECK)

$(STATICCHECK):
	GOBIN=$(GOBIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

vet:
	$(GO) vet ./...

# Fails when go.mod or go.sum differ from what `go mod tidy` writes (CI runs it; fix with
# `go mod tidy`).
tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy" >&2; exit 1; }

# docs/config-reference.md from the config package's structs; `make test` (the test of
# tools/configref) fails when the checked-in file is stale.
config-reference:
	$(GO) run ./tools/configref

# The agent's image (deploy/docker/Dockerfile, FROM scratch: no registry needed) around a
# static binary built here.
DOCKER_TAG ?= proteus:latest
docker:
	CGO_ENABLED=0 $(GO) build -o deploy/docker/proteus ./cmd/proteus
	mkdir -p deploy/docker/data
	docker build -t $(DOCKER_TAG) deploy/docker

staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...

unit:
	$(GO) test -race -count=1 -timeout 30m ./...

test: vet staticcheck unit

# Short fuzzing pass over every fuzzer (found cases land in testdata/fuzz and are replayed by `make unit`).
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
