# make demo: a store full of simulated data on http://127.0.0.1:8000
# make test: the whole suite (STOREFUNNEL_DATABASE_URL picks the database; default SQLite)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench browser clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

browser:
	@bash scripts/ensure-chromium.sh

demo: $(STAMP)
	$(VENV)/bin/storefunnel demo

test: $(STAMP) browser
	PYTHONHASHSEED=0 $(PY) -m pytest -n 2 -q

lint: $(STAMP)
	$(VENV)/bin/ruff check storefunnel tests bench migrations
	$(VENV)/bin/mypy storefunnel

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) var/*.db var/*.db-* .pytest_cache .mypy_cache
