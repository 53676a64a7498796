# Two commands do all the set-up: `make run` (the studio's main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint bench clean

$(VENV)/.installed: requirements.txt requirements-base.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(PY) -m scripts.studio

test: $(VENV)/.dev-installed
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check .

bench: $(VENV)/.installed
	$(PY) -m scripts.bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
