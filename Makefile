# The two commands a user needs:  `make reproduce` (the study) and `make test` (the tests).
# Both create .venv with the pinned PyTorch and the project on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.assignlab-installed
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
PROFILE ?= cpu
EXECUTOR ?= local
WORKERS ?= 2

.PHONY: venv test test-slow test-browser reproduce lab ext data clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name assignlab --display-name "assignlab (.venv)" > /dev/null
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)  # exit status 5 means no test is marked slow
	$(PY) -m pytest -q -m slow || test $$? -eq 5

ext: $(STAMP)
	$(PY) -m assignlab.ops.build

data: $(STAMP)
	$(PY) -m assignlab data prepare --preset $(PROFILE)

reproduce: $(STAMP)
	$(PY) -m assignlab reproduce --profile $(PROFILE) --executor $(EXECUTOR) --workers $(WORKERS) $(if $(SLURM_CONFIG),--slurm-config $(SLURM_CONFIG)) $(if $(ONLY),--only $(ONLY))

# JupyterLab on the repository (results/notebooks/ reachable), opening at notebooks/
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=. --LabApp.default_url=/lab/tree/notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

# JupyterLab in a real browser: Debian's chromium (apt install chromium) driven by Playwright
test-browser: $(STAMP)
	$(PY) -m pip install --quiet "playwright>=1.40"
	$(PY) -m pytest -q -m browser tests/test_browser.py

clean:
	rm -rf build .pytest_cache
