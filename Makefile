# Two commands do all the set-up: `make run` (the studio's main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint bench clean

# The first `make run` installs for minutes: pip shows what it fetches and its progress bars (no -q there).
$(VENV)/.installed: requirements.txt requirements-base.txt
	@echo "installing the studio's requirements into $(VENV) (a few minutes, once)..."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install --progress-bar on -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# The project's bytecode, written where missing or stale (a second or so the first time, then nothing): Python
# writes it on its own, except where PYTHONDONTWRITEBYTECODE is set, and then every render process compiled its
# ~140 modules again (0.18-0.34 s of a 300-frame identity render's 3.4-4.0 s).
BYTECODE = $(PY) -m compileall -q app core scripts stylizers trainer

run: $(VENV)/.installed
	$(BYTECODE)
	$(PY) -m scripts.studio

test: $(VENV)/.dev-installed
	$(BYTECODE)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check .

bench: $(VENV)/.installed
	$(BYTECODE)
	$(PY) -m scripts.bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
