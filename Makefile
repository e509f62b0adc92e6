# Both targets create .venv themselves; only Python 3.11+ and make are needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("cronsup needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The daemon in the foreground on the example jobs file, with its run log in .run/.
run: $(STAMP)
	$(BIN)/cronsup check examples/jobs
	$(BIN)/cronsup daemon --jobs examples/jobs --db .run/runs.db

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/bench_jobsfile.py

clean:
	rm -rf $(VENV) .run .pytest_cache .hypothesis build *.egg-info
