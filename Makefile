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

# The daemon in the foreground on the example jobs file, with its run log in .run/, and the
# web view in the background on http://127.0.0.1:8467/ (WEB_LISTEN=...); Ctrl-C stops both.
WEB_LISTEN ?= 127.0.0.1:8467
run: $(STAMP)
	$(BIN)/cronsup check examples/jobs
	@mkdir -p -m 700 .run; \
	$(BIN)/cronsup web --jobs examples/jobs --db .run/runs.db --listen $(WEB_LISTEN) > .run/web.url 2> .run/web.log & web=$$!; \
	trap 'kill $$web 2>/dev/null; wait $$web 2>/dev/null' EXIT; trap 'exit 130' INT TERM; \
	for i in 1 2 3 4 5 6 7 8 9 10; do [ -s .run/web.url ] && break; kill -0 $$web 2>/dev/null || break; sleep 0.5; done; \
	if [ -s .run/web.url ]; then echo "web view: $$(cat .run/web.url)  (log: .run/web.log)"; \
	else echo "web view did not start:"; cat .run/web.log; fi; \
	$(BIN)/cronsup daemon --jobs examples/jobs --db .run/runs.db

# Two pytest processes side by side: the `long` tests (minutes of real time that mostly wait:
# a three-minute soak of three daemons, a 30 s PostgreSQL outage) in the background, their
# output in $(LONG_LOG) and printed at the end; the rest in the foreground. Fails if either fails.
# A background job starts with SIGINT ignored: LONG gives it back, so that Ctrl-C stops both
# (each with its teardown: no daemon or PostgreSQL left behind).
LONG_LOG := $(VENV)/pytest-long.log
LONG := import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler); \
	sys.exit(pytest.main(sys.argv[1:]))
test: $(STAMP)
	@$(BIN)/python -c '$(LONG)' -q -m long -p no:cacheprovider > $(LONG_LOG) 2>&1 & long=$$!; \
	trap 'kill -INT $$long 2>/dev/null; wait $$long; exit 130' INT TERM; \
	$(BIN)/python -m pytest -q -m "not long"; main=$$?; \
	wait $$long; slow=$$?; \
	echo "--- the long tests (pytest -m long, run beside the rest) ---"; cat $(LONG_LOG); \
	[ $$main -eq 0 ] && [ $$slow -eq 0 ]

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
