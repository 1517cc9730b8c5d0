# The two set-up commands of the README: `make demo` and `make test`.
# Each creates (or reuses) .venv and installs what it needs; torch is pinned first so
# pip takes the CPU wheel instead of resolving a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q $(TORCH_PIN)
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

.PHONY: install demo test test-slow
install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gdn demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

test-slow: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m slow
