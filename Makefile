# Two commands (README): `make demo` runs the main job, `make test` the tests.
# Each bootstraps what it needs (apt packages, .venv, pinned packages).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export MUJOCO_GL ?= osmesa
export PYOPENGL_PLATFORM ?= $(MUJOCO_GL)
export PYTHONUNBUFFERED := 1

.PHONY: demo test bootstrap bench report clean-venv safety

bootstrap:
	@bash scripts/bootstrap.sh

# The main job (README "What you get"): a new folder per run under out/demo/.
demo: bootstrap
	$(VENV)/bin/surgbot demo --out out/demo/$(shell date +%Y%m%d-%H%M%S)

# Lint first (ruff.toml), then pytest: unit and sim tests (`pytest -m unit` alone runs in seconds).
# pytest's own faulthandler (on by default) prints a native crash's traceback to the real stderr
# (PYTHONFAULTHANDLER=1 would write it into pytest's capture, lost with the process).
# One pytest process per test module (scripts/run_tests.py says why); a module that collects no
# test fails the run, like pytest's exit 5; failed tests are rerun once and, if they pass, named FLAKY.
# -rs lists every skip; tests/conftest.py prints the skip count and fails the run on a skip
# whose reason is not in its ALLOWED_SKIP_PREFIXES (no silent skips).
test: bootstrap
	$(VENV)/bin/ruff check .
	$(PY) scripts/run_tests.py -rs --timeout 300 -m "not faults and not learning_acceptance and not full_stack"
	$(VENV)/bin/surgbot bench --quick --json --strict

# The fault-injection suite (~5 min, a quiet machine: its figures go into docs/safety.md), at the
# demo's real-time level unless SURGBOT_FAULTS_REALTIME says otherwise (off, sim, chain).
SURGBOT_FAULTS_REALTIME ?= sim
safety: bootstrap
	SURGBOT_FAULTS_REALTIME=$(SURGBOT_FAULTS_REALTIME) SURGBOT_SAFETY_RESULTS=docs/safety_faults.json $(PY) -m pytest tests/test_fault_injection.py -m faults -rs \
		--timeout 1500 -p no:cacheprovider; status=$$?; $(PY) scripts/safety_table.py; exit $$status

bench: bootstrap
	$(VENV)/bin/surgbot bench --json --out out/bench --report

clean-venv:
	rm -rf $(VENV)
