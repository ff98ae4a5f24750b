# Ember developer entry points. Everything installs into $(VENV), which is reused when present.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# pip takes these two builds from the local disk; an unpinned `pip install timm` could pull another.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.ember-installed

.PHONY: install test demo clean

install: $(STAMP)

$(STAMP): setup.py setup.cfg Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_PINS)
	$(PIP) install --quiet $(TORCH_PINS) -e '.[ros,serve,dev]'
	touch $(STAMP)

# pytest exits 5 when it collects no test; make treats any non-zero exit as failure.
test: install
	$(PY) -m pytest

demo: install
	$(VENV)/bin/ember robots validate
	$(VENV)/bin/ember robots list
	$(VENV)/bin/ember robots show underwater_robot

clean:
	rm -rf $(VENV) build install log *.egg-info .pytest_cache
