"""Throughput of the training input pipeline (images/s), printed as a Markdown table.

Measures `enet_keras.data.make_pipeline(..., training=True)` on CamVid at 360x480 with the full
augmentation (flip, scale 0.5-2, crop/pad, colour jitter), with each cache mode of
`tools/train.py --cache`:

- none:   every image is read and decoded again every epoch (PNG decode + augmentation);
- memory: decoded images are kept in memory after the first epoch;
- disk:   decoded images are written to files in the first epoch and read back after.

For each mode it times the first epoch (which fills the cache) over the whole split, then
`--runs` runs of `--images` images from fresh iterators (median and range), and reports how
much the process's resident memory grew in the first epoch and in the later runs, and what the
cache takes on disk. Each mode runs in
a process of its own, so that the memory growth is that mode's alone. Not a test.

Example:

    python benchmarks/bench_data.py --data_dir /work/shared/data/camvid --images 100 --runs 3
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads; 0 shows its C++ log lines

import enet_keras  # noqa: E402,F401  first: it imports TensorFlow with its start-up lines filtered

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
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
    p.add_argument("--cache", default="none,memory,disk",
                   help="Comma-separated cache modes to time, in order (default: none,memory,disk).")
    p.add_argument("--row", action="store_true", help=argparse.SUPPRESS)  # one mode, its table row only
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


def _rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def _folder_mb(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files) / 2**20


def _row(args):
    """Times one cache mode in this process; returns its table row."""
    source = data.get_source("camvid", args.split, data_dir=args.data_dir)
    batches = max(1, args.images // args.batch_size)
    with tempfile.TemporaryDirectory() as cache_dir:
        before = _rss_mb()
        ds = data.make_pipeline(source, args.batch_size, crop_size=(360, 480), training=True,
                                cache=args.cache, cache_dir=cache_dir)
        start = time.perf_counter()
        for _ in ds:  # the first epoch fills the cache (shared by later iterators)
            pass
        first = source.num_examples / (time.perf_counter() - start)
        filled = _rss_mb()
        rates = _time_runs(ds.repeat(), batches, args.runs)  # runs may cross epoch ends
        return (f"| {args.cache} | {first:.0f} | {statistics.median(rates):.0f} | {min(rates):.0f}-{max(rates):.0f} "
                f"| {filled - before:.0f} | {_rss_mb() - filled:.0f} | {_folder_mb(cache_dir):.0f} |")


def main(argv=None):
    """Runs the benchmark and prints the table; returns 0."""
    args = build_parser().parse_args(argv)
    if args.row:
        print(_row(args))
        return 0
    rows = []
    for cache in args.cache.split(","):
        flags = ["--data_dir", args.data_dir, "--split", args.split, "--batch_size", str(args.batch_size),
                 "--images", str(args.images), "--runs", str(args.runs), "--cache", cache, "--row"]
        out = subprocess.run([sys.executable, __file__, *flags], check=True, capture_output=True, text=True).stdout
        rows.append(out.strip().splitlines()[-1])
    device = f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    print()
    flags = " ".join(argv if argv is not None else sys.argv[1:])
    print(f"command: python benchmarks/bench_data.py {flags}")
    print(f"tensorflow {tf.__version__}, {device}; CamVid {args.split} at 360x480, batch {args.batch_size}, "
          f"flip, scale 0.5-2, crop, jitter; later epochs: median of {args.runs} runs of "
          f"{max(1, args.images // args.batch_size) * args.batch_size} images")
    print()
    print("| Cache | first epoch (images/s) | later epochs (images/s) | range | memory growth, first epoch (MB) "
          "| memory growth, later (MB) | on disk (MB) |")
    print("|---|---:|---:|---|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
