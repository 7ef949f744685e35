# rmmc - make demo | make test | make clean
# Works on a fresh machine with Python >= 3.11 (PYTHON=...), node and npm. Every step is
# stamped, so a second run only does what changed. Without npm, `make test` still runs the
# suite and the tests that need Microsoft's KQL parser skip with the reason; without Chromium
# (`make browser` installs it) the playground's browser test skips the same way.

PYTHON ?= python3
NPM ?= npm
PYTEST_ARGS ?=

VENV := .venv
PY := $(VENV)/bin/python
INSTALL_STAMP := $(VENV)/.rmmc-install.stamp
TEST_STAMP := $(VENV)/.rmmc-test.stamp
ORACLE_DIR := tests/oracle
# npm ci writes this hidden lockfile; it stands for "node_modules is installed".
ORACLE_STAMP := $(ORACLE_DIR)/node_modules/.package-lock.json

.PHONY: demo test verify-long fuzz mutate clean install test-deps oracle browser

## demo: install rmmc into .venv, check the bundled rules (the seeds and the RMM pack), build them for
## every built-in environment into dist/ (prints the manifest summary), verify the seeds
demo: $(INSTALL_STAMP)
	$(VENV)/bin/rmmc check -q rules/
	$(VENV)/bin/rmmc build rules/ -o dist
	@echo "one tree per environment and target under dist/, and dist/manifest.json; refusals are"
	@echo "verdicts with located reasons (the RMM pack groups by DeviceId, which Sysmon, Winlogbeat"
	@echo "and CIM lack: 'rmmc build rules/ -o dist --allow-lossy' writes those without the key)"
	$(VENV)/bin/rmmc verify rules/*.txt
	@echo ""
	@echo "The playground (paste a rule, pick a target, see the translation, explain, verify):"
	@echo "  $(VENV)/bin/rmmc web        then open http://127.0.0.1:8765/ (Ctrl-C stops it)"

## test: install rmmc with its test extras and the npm oracle, then run the whole suite
test: $(TEST_STAMP) $(ORACLE_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## verify-long: the five translation properties (tests/test_properties.py) with a large example
## budget (hypothesis profile "long": 5000 examples each; the suite's own budget is minutes)
verify-long: $(TEST_STAMP) $(ORACLE_STAMP)
	HYPOTHESIS_PROFILE=long $(PY) -m pytest tests/test_properties.py -p no:cacheprovider --hypothesis-show-statistics $(PYTEST_ARGS)

## browser: Debian's chromium and chromium-driver for the playground's browser test
## (tests/test_web_e2e.py), installed with apt-get only when missing and never interactively;
## where they cannot be installed (no apt-get, no root) it says so and that test skips.
BROWSER_PACKAGES ?= chromium chromium-driver fonts-dejavu-core
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
		echo "make: chromium and chromedriver are installed"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "make: no apt-get: chromium is not installed and the browser test will skip"; \
	else \
		if [ "$$(id -u)" = 0 ]; then sudo=; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
		else echo "make: installing chromium needs root: the browser test will skip"; exit 0; fi; \
		echo "apt-get install $(BROWSER_PACKAGES)"; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null \
		&& $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES) </dev/null >/dev/null \
		|| echo "make: apt-get could not install chromium: the browser test will skip"; \
	fi

## fuzz: the long hostile-input sweep (tests/fuzz.py): 10,000 seeded mutations of corpus rules
## through check, translate (every target) and explain; fails on any traceback, internal error,
## round over 30 s or peak memory over 500 MB, and prints those figures.  FUZZ_ARGS='--seed 7'.
FUZZ_ARGS ?=
fuzz: $(TEST_STAMP)
	$(PY) tests/fuzz.py --mutations 10000 --hang-limit 30 --memory-limit 500 $(FUZZ_ARGS)
## mutate: mutation testing (cosmic-ray) of rmmc/backends/ and the evaluator on a temporary copy:
## a seeded sample of mutants within a time budget; prints the score and the survivors
## (MUTATE_ARGS='--sample 40 --budget 900' for a quicker run; see mutate/run.py)
MUTATE_ARGS ?=
MUTATE_STAMP := $(VENV)/.rmmc-mutate.stamp
mutate: $(TEST_STAMP) $(ORACLE_STAMP) $(MUTATE_STAMP)
	$(PY) mutate/run.py $(MUTATE_ARGS)

$(MUTATE_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check $(EDITABLE) -e '.[mutate]'
	@touch $@

install: $(INSTALL_STAMP)
test-deps: $(TEST_STAMP) $(ORACLE_STAMP)
oracle: $(ORACLE_STAMP)

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "rmmc needs Python >= 3.11, $(PYTHON) is " + sys.version.split()[0] + ": run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)

# setup.py builds the optional compiled loop (rmmc/grammar/_lalr_loop.c) and YAML composer
# (rmmc/compiler/sigma/_yaml_compose.c, with libyaml-dev), and the line starts of a read file
# (rmmc/compiler/_line_starts.c): a change to any
# installs again, which builds it again (where it cannot be built, rmmc runs without it)
<<<<<<< HEAD
BUILD_FILES := Makefile pyproject.toml setup.py rmmc/grammar/_lalr_loop.c rmmc/compiler/sigma/_yaml_compose.c

# The editable install puts the checkout on sys.path with a plain .pth line ("compat" mode), as a
# wheel's files are found, instead of setuptools' import hook: the hook imports pathlib, urllib
# and importlib.util at every interpreter start (python -c pass: 88 M -> 39 M instructions; a
# cold translation 317 M -> 302 M), which no installed rmmc pays
EDITABLE := --config-settings editable_mode=compat
=======
BUILD_FILES := pyproject.toml setup.py rmmc/grammar/_lalr_loop.c rmmc/compiler/sigma/_yaml_compose.c \
	rmmc/compiler/_line_starts.c
>>>>>>> speed3-glue

$(INSTALL_STAMP): $(BUILD_FILES) | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check $(EDITABLE) -e '.[verify,web]'
	@touch $@

$(TEST_STAMP): $(BUILD_FILES) | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check $(EDITABLE) -e '.[test]'
	@touch $@ $(INSTALL_STAMP)

$(ORACLE_STAMP): $(ORACLE_DIR)/package.json $(ORACLE_DIR)/package-lock.json
	@if command -v $(NPM) >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then \
		echo "cd $(ORACLE_DIR) && $(NPM) ci"; \
		cd $(ORACLE_DIR) && $(NPM) ci --no-audit --no-fund --loglevel=error && touch node_modules/.package-lock.json; \
	else \
		echo "make: node/npm not found: the Kusto oracle is not installed and its tests will skip"; \
	fi

clean:
	rm -rf $(VENV) $(ORACLE_DIR)/node_modules .pytest_cache .hypothesis build dist out tests/_artifacts bench/.venv .rmmc_cache
	rm -rf *.egg-info
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

## bench: time rmmc per stage, growth and CLI start against sigma-cli (installed in bench/.venv);
## prints a table and writes out/bench.json.  BENCH_ARGS='--sample 500 --max-factor 10' for a quick run.
BENCH_VENV := bench/.venv
BENCH_STAMP := $(BENCH_VENV)/.rmmc-bench.stamp
BENCH_PEERS ?= "sigma-cli==3.1.0" "pySigma<2" "pysigma-backend-splunk==2.1.0" "pysigma-backend-kusto==1.0.1"
BENCH_ARGS ?=

.PHONY: bench
bench: $(INSTALL_STAMP) $(BENCH_STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

$(BENCH_STAMP):
	$(PYTHON) -m venv $(BENCH_VENV)
	@$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check $(BENCH_PEERS) \
		|| echo "make: could not install sigma-cli into $(BENCH_VENV): the peer sections will say n/a"
	@touch $@
