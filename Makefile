# meshctl developer entry points.  Run ./bootstrap once (as root) first.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: all venv test test-unit test-lab bench demo lint manuals dist clean

all: test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip uninstall -q -y meshctl 2>/dev/null || true  # the distribution was called meshctl before babelwire
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

## The whole suite: unit, adapter and namespace-lab tests (lab tests need root).
test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

## Fast tests only: no namespaces, no daemons.
test-unit: venv
	$(PY) -m pytest -m "not lab" $(PYTEST_ARGS)

test-lab: venv
	$(PY) -m pytest -m lab $(PYTEST_ARGS)

## Speed and memory, against a baseline measured in the same run.
bench: venv
	$(PY) -m bench

## Bring up topologies/seed.toml, show the mesh, fail a gateway, show the move.
demo: venv
	$(PY) -m meshctl.lab.demo topologies/seed.toml

lint: venv
	$(PY) -m pip install -q ruff mypy
	$(PY) -m ruff check meshctl tests bench
	$(PY) -m mypy meshctl

## The man page and bash/zsh completions in contrib/, from the argparse parser (commit the result).
manuals: venv
	$(PY) -m meshctl.manuals

## dist/babelwire-VERSION.tar.gz and dist/babelwire-VERSION-py3-none-any.whl (the command is still meshctl).
dist: venv
	$(PY) -m build

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info dist
