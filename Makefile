# The two commands (see README): `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[all]"
	touch $(STAMP)

# The main job: train ENet on the embedded synthetic dataset (two stages), then export it.
run: $(STAMP)
	$(PY) tools/train.py --dataset synthetic --run_dir runs/synthetic
	$(PY) tools/export.py --model runs/synthetic/best.keras --output_dir runs/synthetic/export --dataset synthetic

test: $(STAMP)
	$(PY) -m pytest -q -rs

clean:
	rm -rf $(VENV) runs
