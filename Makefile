# Two commands matter on a fresh machine: `make run` and `make test` (see README.md).
GO      ?= go
VENV    ?= .venv
PY      := $(VENV)/bin/python
BIN     := bin/prefect-server
URL     ?= http://127.0.0.1:4200/api

.PHONY: run build test verify generate gotest e2e venv bench api-coverage fmt vet

build:
	$(GO) build -o $(BIN) ./cmd/prefect-server

run: build
	./$(BIN) start

# Everything under gen/ and the derived OpenAPI document come from here, with pinned tools.
generate:
	cd tools && $(GO) run ./openapi-derive -in ../openapi/prefect-3.9.1.json -out ../openapi/prefect-api.json
	cd tools && $(GO) tool oapi-codegen -config ../openapi/oapi-codegen.yaml ../openapi/prefect-api.json
	cd tools && $(GO) tool sqlc generate -f ../sqlc.yaml

# Fails when generation is not reproducible from the checked-in inputs.
verify: generate
	@git diff --exit-code -- openapi gen || (echo "generated files differ from the checked-in ones: run make generate and commit" && exit 1)
	@test -z "$$(git status --porcelain --untracked-files=all -- openapi gen)" || (git status --porcelain -- openapi gen; echo "untracked generated files" && exit 1)

test: verify venv gotest e2e

gotest:
	$(GO) test ./...

e2e: build venv
	PREFECT_SERVER_BIN=$(CURDIR)/$(BIN) $(PY) -m pytest e2e -q -p no:cacheprovider

venv: $(VENV)/.installed

$(VENV)/.installed: e2e/requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r e2e/requirements.txt
	touch $@

bench:
	cd tools && $(GO) run ./bench -url $(URL)

api-coverage:
	@$(GO) run ./cmd/prefect-server api-coverage

# Python 3.9.1 server vs ours on SQLite and PostgreSQL; rewrites BENCHMARKS.md (~15 min).
.PHONY: bench-compare
bench-compare: build
	cd tools && $(GO) run ./bench compare
