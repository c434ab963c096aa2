# make demo: train the default model on the embedded digits data; make test: run the tests.
# Both create .venv and install what they need. TORCH_SPEC picks the torch to install when none
# is importable (the CPU wheel by default; set TORCH_SPEC= to let pip choose).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint format clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --upgrade --quiet pip
	@if ! $(PY) -c "import torch" 2>/dev/null; then \
		echo "installing $(TORCH_SPEC)"; $(PY) -m pip install --quiet "$(TORCH_SPEC)"; fi
	$(PY) -m pip install --quiet -e ".[test,tracking]"
	@touch $(STAMP)

# The demo trains, then explains the gap: log p(x) by IS and AIS, the gap split into its
# approximation and amortization parts, ELBO surgery, active units, and latent-space grids.
demo: $(STAMP)
	@run=runs/demo-$$(date +%Y%m%d-%H%M%S); set -e; \
	$(VENV)/bin/pyro-vae train --model bernoulli_vae --guide mean_field --data digits \
		--objective trace_mean_field --epochs 300 --batch-size 100 --lr 1e-3 \
		--out $$run --progress; \
	$(VENV)/bin/pyro-vae evaluate $$run --num-samples 1000 --ais --ais-steps 200 \
		--decompose --surgery --progress; \
	$(VENV)/bin/pyro-vae sample $$run --interpolate --attributes

# pytest exits 5 when it collects no test; that is not a failure of the code.
test: $(STAMP)
	$(PY) -m pytest -q || { rc=$$?; [ $$rc -eq 5 ] && echo "no tests collected"; [ $$rc -eq 5 ]; }

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow || { rc=$$?; [ $$rc -eq 5 ] && echo "no slow tests"; [ $$rc -eq 5 ]; }

lint: $(STAMP)
	$(VENV)/bin/ruff check pyro_vae tests benchmarks
	$(VENV)/bin/ruff format --check pyro_vae tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format pyro_vae tests benchmarks
	$(VENV)/bin/ruff check --fix pyro_vae tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
