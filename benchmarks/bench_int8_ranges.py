"""How int8 accuracy depends on the activation ranges it is quantized with: val mIoU per variant, as a Markdown table.

Every row is post-training int8 of the same model and export form (`int8_export_form`, logits
clipped), calibrated on the same training images; only the (min, max) per activation tensor
that the quantizer gets differ:

- converter: TFLite's calibrator (reads a tensor after the op consuming it has run, so in-place
  ADD/MUL give their input their output's range).
- minmax: every tensor's overall min and max over the images, read with no in-place reuse.
- mean: the mean over the images of each image's min and max; p90: their 10th and 90th
  percentiles.
- +widened: each PReLU MAXIMUM's output range widened to its inputs' (the quantizer shares it
  with them). `mean+widened` is what `tools/export.py` writes.

Accuracy, not speed: all rows have the same ops. Needs the dataset; not a test.

Example:

    python benchmarks/bench_int8_ranges.py --model enet_camvid.keras --dataset camvid --data_dir ../shared/data/camvid
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads; 0 shows its C++ log lines

import enet_keras  # noqa: E402,F401  first: it imports TensorFlow with its start-up lines filtered

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np
import keras
import tensorflow as tf

from enet_keras import data
from enet_keras.evaluation import evaluate
from enet_keras.export import tflite
from enet_keras.rewrite import clip_logits, int8_export_form

VARIANTS = ("converter", "converter+widened", "minmax", "minmax+widened", "mean", "mean+widened", "p90+widened")


def calibrated_variants(model, images, height, width, variants):
    """{variant: int8 flatbuffer}."""
    export_form = clip_logits(int8_export_form(model), *tflite.logit_range(model, images))

    def calibrate(calibration_images):
        converter = tf.lite.TFLiteConverter.from_keras_model(tflite.fixed_size_model(export_form, height, width))
        tflite.set_full_integer(converter, height, width, images, len(images))
        return tflite.calibrate_only(converter, calibration_images)

    by_converter = calibrate(images)
    skeleton = calibrate(images[:1])
    per_image = tflite.measured_ranges(skeleton, images)
    clips = tflite.clip_outputs(skeleton)
    reductions = {
        "minmax": lambda low, high: (low.min(), high.max()),
        "mean": lambda low, high: (low.mean(), high.mean()),
        "p90": lambda low, high: (np.percentile(low, 10), np.percentile(high, 90)),
    }
    flatbuffers = {}
    for variant in variants:
        ranges, _, widened = variant.partition("+")
        if ranges == "converter":
            calibrated = by_converter
        else:
            # As in the export: a clip's outputs (the logits) keep their overall range.
            calibrated = tflite.set_ranges(skeleton, {
                i: reductions["minmax" if i in clips else ranges](*v) for i, v in per_image.items()})
        if widened:
            calibrated = tflite.widen_maximum_ranges(calibrated)
        flatbuffers[variant] = tflite.quantize_calibrated(calibrated)
    return flatbuffers


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="Trained .keras model")
    parser.add_argument("--dataset", default="camvid", help="Dataset name (default: camvid)")
    parser.add_argument("--data_dir", required=True, help="Dataset folder")
    parser.add_argument("--size", default="360x480", help="HEIGHTxWIDTH of the export and of the val images (default: 360x480)")
    parser.add_argument("--calibration_images", type=int, default=100, help="Training images to calibrate on (default: 100)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"Comma-separated, from {', '.join(VARIANTS)}")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    height, width = (int(v) for v in args.size.split("x"))

    model = keras.saving.load_model(args.model, compile=False)
    train = data.get_source(args.dataset, "train", args.data_dir)
    val = data.get_source(args.dataset, "val", args.data_dir)
    images = data.calibration_images(train, height, width, args.calibration_images)
    with contextlib.redirect_stdout(sys.stderr):  # calibration's progress bars; stdout is the table
        flatbuffers = calibrated_variants(model, images, height, width, variants)
    with tempfile.TemporaryDirectory() as folder:
        reference = Path(folder) / "fp32.tflite"
        reference.write_bytes(tflite.convert(model, height, width, "fp32"))
        fp32 = evaluate(str(reference), val, verbose=0)
        rows = [("fp32 (reference)", fp32["mean_iou"], None)]
        for variant, flatbuffer in flatbuffers.items():
            path = Path(folder) / f"{variant.replace('+', '_')}.tflite"
            path.write_bytes(flatbuffer)
            result = evaluate(str(path), val, verbose=0, reference=str(reference))
            rows.append((variant, result["mean_iou"], result["agreement"]))
    print(f"\n{args.model}, {args.dataset} val at {height}x{width}, {len(images)} calibration images\n")
    print("| int8 activation ranges | mIoU | below fp32 | argmax agreement with fp32 (%) |")
    print("|---|---:|---:|---:|")
    for name, miou, agreement in rows:
        below = "" if agreement is None else f"{100 * (fp32['mean_iou'] - miou):.2f}"
        agree = "" if agreement is None else f"{100 * agreement:.2f}"
        print(f"| {name} | {100 * miou:.2f} | {below} | {agree} |")


if __name__ == "__main__":
    sys.exit(main())
