# Two commands (README): `make demo` runs the main job, `make test` the tests.
# Each bootstraps what it needs (apt packages, .venv, pinned packages).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export MUJOCO_GL ?= osmesa
export PYOPENGL_PLATFORM ?= $(MUJOCO_GL)
export PYTHONUNBUFFERED := 1

.PHONY: demo test bootstrap bench report clean-venv

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	$(VENV)/bin/surgbot sim --scene box_trainer --headless --duration 10

# Lint first (ruff.toml), then pytest: unit and sim tests (`pytest -m unit` alone runs in seconds).
# pytest's own faulthandler (on by default) prints a native crash's traceback to the real stderr
# (PYTHONFAULTHANDLER=1 would write it into pytest's capture, lost with the process).
# pytest exits 5 when it collected no test: that is a failure here, not a pass.
# -rs lists every skip; tests/conftest.py prints the skip count and fails the run on a skip
# whose reason is not in its ALLOWED_SKIP_PREFIXES (no silent skips).
test: bootstrap
	$(VENV)/bin/ruff check .
	@set -o pipefail; $(PY) -m pytest tests -q -rs -p no:cacheprovider --timeout 300; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	  [ $$rc -eq 0 ] || exit $$rc
	$(VENV)/bin/surgbot bench --quick --json

bench: bootstrap
	$(VENV)/bin/surgbot bench --json --out out/bench --report

clean-venv:
	rm -rf $(VENV)
