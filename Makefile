# Both targets create .venv themselves; only Python 3.11+ and make are needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test check bench clean deb

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

# By hand, on a quiet machine; figures go to bench/RESULTS.md (see bench/README.md).
bench: $(STAMP)
	$(BIN)/python bench/bench_jobsfile.py
	$(BIN)/python bench/bench_cli.py
	$(BIN)/python bench/bench_daemon.py all

# dist/cronsup_VERSION_ARCH.deb (packaging/deb/build.py); the wheels are cached in build/wheels.
deb: $(STAMP)
	$(BIN)/python packaging/deb/build.py

clean:
	rm -rf $(VENV) .run .pytest_cache .hypothesis build dist *.egg-info
