"""Training speed of the full ENet (and the encoder stage): seconds per step, images/s and
seconds per CamVid epoch, with and without XLA, printed as a Markdown table. Not a test.

Feeds batches from the real training pipeline (CamVid, augmentation on, cached), so the
number includes the input pipeline as `model.fit` sees it. Each setting is compiled and warmed
up, then timed over `--steps` steps, `--runs` times; the table gives the median.

Example:

    python benchmarks/bench_train.py --data_dir ../shared/data/camvid --steps 5 --runs 3
"""

import argparse
import math
import platform
import statistics
import time
from pathlib import Path

import keras

from enet_keras import ENet, data
from enet_keras.losses import WeightedSparseCategoricalCrossentropy
from enet_keras.metrics import PixelAccuracy, mean_iou

_DEFAULT_CAMVID = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", default=str(_DEFAULT_CAMVID), help=f"CamVid folder (default: {_DEFAULT_CAMVID})")
    p.add_argument("--batch_size", type=int, default=10, help="Batch size (default: 10)")
    p.add_argument("--height", type=int, default=360, help="Crop height (default: 360)")
    p.add_argument("--width", type=int, default=480, help="Crop width (default: 480)")
    p.add_argument("--steps", type=int, default=5, help="Timed steps per run (default: 5)")
    p.add_argument("--runs", type=int, default=3, help="Timed runs per setting (default: 3)")
    p.add_argument("--stages", default="decoder,encoder", help="Stages to time (default: decoder,encoder)")
    p.add_argument("--xla", default="on,off", help="XLA settings to time (default: on,off)")
    return p


def _time(model, dataset, steps, runs):
    dataset = dataset.repeat()
    model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)  # compile and warm up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def main(argv=None):
    args = build_parser().parse_args(argv)
    source = data.get_source("camvid", "train", args.data_dir)
    rows = []
    for stage in args.stages.split(","):
        encoder = stage == "encoder"
        dataset = data.make_pipeline(
            source, args.batch_size, (args.height, args.width), training=True, label_downsample=8 if encoder else 1
        )
        for xla in args.xla.split(","):
            keras.utils.set_random_seed(0)
            model = ENet(source.num_classes, encoder_only=encoder)
            model.compile(
                keras.optimizers.Adam(5e-4),
                WeightedSparseCategoricalCrossentropy(None, source.ignore_label, source.num_classes),
                metrics=[mean_iou(source.num_classes, source.ignore_label), PixelAccuracy(source.ignore_label)],
                jit_compile=xla == "on",
            )
            step = _time(model, dataset, args.steps, args.runs)
            epoch = step * math.ceil(source.num_examples / args.batch_size)
            rows.append((stage, xla, step, args.batch_size / step, epoch))
    print(f"\nENet training speed, CamVid train ({source.num_examples} images), crops "
          f"{args.height}x{args.width}, batch {args.batch_size}, {platform.processor() or platform.machine()}, "
          f"median of {args.runs} runs of {args.steps} steps\n")
    print("| stage | XLA | s/step | images/s | s/epoch |")
    print("|---|---|---:|---:|---:|")
    for stage, xla, step, rate, epoch in rows:
        print(f"| {stage} | {xla} | {step:.2f} | {rate:.1f} | {epoch:.0f} |")


if __name__ == "__main__":
    main()
