"""Throughput of the training input pipeline (images/s), printed as a Markdown table.

Measures `enet_keras.data.make_pipeline(..., training=True)` on CamVid at 360x480 with the full
augmentation (flip, scale 0.5-2, crop/pad, colour jitter), in two settings:

- cache=False: every image is read and decoded again (PNG decode + augmentation).
- cache=True:  decoded images come from memory after a warm-up epoch (augmentation only).

Each run iterates `--images` images from a fresh iterator; the table gives the median (and the
range) over `--runs` runs. Not a test.

Example:

    python benchmarks/bench_data.py --data_dir /work/shared/data/camvid --images 100 --runs 3
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads; 0 shows its C++ log lines

import enet_keras  # noqa: E402,F401  first: it imports TensorFlow with its start-up lines filtered

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import tensorflow as tf

from enet_keras import data

_DEFAULT_CAMVID = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"


def build_parser():
    """The argument parser of the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", default=str(_DEFAULT_CAMVID),
                   help=f"CamVid folder (SegNet layout) (default: {_DEFAULT_CAMVID}).")
    p.add_argument("--split", default="train", help="Split to read (default: train).")
    p.add_argument("--batch_size", type=int, default=10, help="Batch size (default: 10).")
    p.add_argument("--images", type=int, default=100,
                   help="Images per timed run (default: 100).")
    p.add_argument("--runs", type=int, default=3, help="Timed runs per setting (default: 3).")
    p.add_argument("--cache", choices=["both", "on", "off"], default="both",
                   help="Which cache settings to time (default: both).")
    return p


def _time_runs(ds, batches, runs):
    rates = []
    for _ in range(runs):
        it = iter(ds)
        next(it)  # start-up (threads, first fill of the prefetch buffers) is not timed
        start = time.perf_counter()
        n = 0
        for _ in range(batches):
            images, _ = next(it)
            n += int(images.shape[0])
        rates.append(n / (time.perf_counter() - start))
    return rates


def main(argv=None):
    """Runs the benchmark and prints the table; returns 0."""
    args = build_parser().parse_args(argv)
    source = data.get_source("camvid", args.split, data_dir=args.data_dir)
    batches = max(1, args.images // args.batch_size)
    settings = {"both": [False, True], "on": [True], "off": [False]}[args.cache]
    rows = []
    for cache in settings:
        ds = data.make_pipeline(source, args.batch_size, crop_size=(360, 480), training=True,
                                cache=cache)
        if cache:
            for _ in ds:  # warm-up epoch fills the in-memory cache (shared by later iterators)
                pass
        rates = _time_runs(ds.repeat(), batches, args.runs)  # runs may cross epoch ends
        rows.append((cache, statistics.median(rates), min(rates), max(rates)))
    device = f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    print()
    flags = " ".join(argv if argv is not None else sys.argv[1:])
    print(f"command: python benchmarks/bench_data.py {flags}")
    print(f"tensorflow {tf.__version__}, {device}; {batches * args.batch_size} images per run, "
          f"median of {args.runs} runs")
    print()
    print("| Dataset | Split | Resolution | Batch | Augmentation | Cache | images/s (median) "
          "| range | Device |")
    print("|---|---|---|---:|---|---|---:|---|---|")
    for cache, median, lo, hi in rows:
        print(f"| CamVid | {args.split} | 360x480 | {args.batch_size} | flip, scale 0.5-2, "
              f"crop, jitter | {'memory' if cache else 'off (decode PNG)'} | {median:.1f} | "
              f"{lo:.1f}-{hi:.1f} | {device} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
