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
	$(PY) -m pip install --quiet --no-deps "mediapipe>=1.2.3,<2"  # see the mediapipe extra in setup.cfg
	touch $(STAMP)

# The main job: train ENet on the embedded synthetic dataset (two stages), export it to TFLite
# fp32 and int8, and score int8 on the validation images against fp32 (with a picture of them).
RUN := runs/synthetic
SYNTHETIC := --dataset synthetic --dataset_option height=128 --dataset_option width=160
run: $(STAMP)
	$(PY) tools/train.py --dataset synthetic --run_dir $(RUN)
	$(PY) tools/export.py --model $(RUN)/best.keras --output_dir $(RUN)/export $(SYNTHETIC) \
		--formats tflite_fp32,tflite_int8 --height 128 --width 160
	$(PY) tools/evaluate.py --model $(RUN)/export/enet_int8.tflite --reference $(RUN)/export/enet_fp32.tflite \
		$(SYNTHETIC) --output $(RUN)/int8_val.json
	@echo
	@echo "Look at:  $(RUN)/int8_val_examples.png   (val images: input | truth | int8 prediction)"
	@echo "          $(RUN)/decoder/curves.png      (training curves)"
	@echo "          $(RUN)/int8_val.json           (int8 mIoU and agreement with fp32)"
	@echo "Next:     $(PY) tools/evaluate.py --model $(RUN)/best.keras $(SYNTHETIC)"
	@echo "          $(PY) tools/predict.py --model $(RUN)/export/enet_int8.tflite --input YOUR_IMAGE.png --output_dir $(RUN)/predict"
	@echo "          $(PY) tools/benchmark.py --model $(RUN)/best.keras --sizes 360x480 --threads 1,2"

test: $(STAMP)
	$(PY) -m pytest -q -rs -n 2 --dist loadfile --no-loadscope-reorder --durations=15

clean:
	rm -rf $(VENV) runs
