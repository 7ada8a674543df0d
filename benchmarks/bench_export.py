"""Size and CPU latency of every export of an (untrained) ENet, batch 1. Not a test.

    python benchmarks/bench_export.py --sizes 360x640,360x480 --runs 10 --threads 2

Exports ENet(num_classes) to each format at each size, then times the forward pass of each
runtime after warm-up: Keras (a `tf.function` of the model), the TF-Serving SavedModel signature
(uint8 in, includes padding, softmax and argmax), LiteRT fp32/fp16/int8 (`invoke()` only, with
XNNPACK as LiteRT applies it by default) and ONNX Runtime (CPU provider). Prints a table.
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
FORMATS = ("keras", "savedmodel", "tflite_fp32", "tflite_fp16", "tflite_int8", "onnx")


def _timed(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(np.ceil(0.9 * len(times))) - 1)]


def _size_mb(path):
    path = pathlib.Path(path)
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="360x640,360x480", help="Comma-separated HxW sizes. (default: 360x640,360x480)")
    parser.add_argument("--num_classes", type=int, default=11, help="Classes of the ENet. (default: 11)")
    parser.add_argument("--runs", type=int, default=10, help="Timed runs per format and size. (default: 10)")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed runs first. (default: 3)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of every runtime. (default: 2)")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"Comma-separated subset of {','.join(FORMATS)}. (default: all)")
    parser.add_argument("--num_calibration_images", type=int, default=20, help="Synthetic images calibrating int8. (default: 20)")
    parser.add_argument("--output_dir", default=None, help="Where to keep the exports and results.json. (default: a temporary folder)")
    args = parser.parse_args(argv)
    formats = args.formats.split(",")
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    from enet_keras import ENet, data, export

    sys.path.insert(0, str(ROOT / "tflite"))
    import enet_tflite

    output_dir = pathlib.Path(args.output_dir or tempfile.mkdtemp(prefix="enet_bench_"))
    keras.utils.set_random_seed(0)
    model = ENet(num_classes=args.num_classes)
    serving = None
    if "savedmodel" in formats:
        serving_dir = export.export_saved_model(model, output_dir / "serving")
        serving = (serving_dir, tf.saved_model.load(serving_dir).signatures["serving_default"])
    keras_fn = tf.function(lambda x: model(x, training=False))

    rows = []
    for height, width in sizes:
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)
        resolution = f"{height}x{width}"
        for fmt in formats:
            print(f"{resolution} {fmt} ...", file=sys.stderr, flush=True)
            if fmt == "keras":
                x = tf.constant(image.astype(np.float32))
                median, p90 = _timed(lambda: keras_fn(x).numpy(), args.runs, args.warmup)
                row = ("Keras 3 / TF " + tf.__version__, "fp32", float("nan"))
            elif fmt == "savedmodel":
                x = tf.constant(image)
                median, p90 = _timed(lambda: serving[1](images=x)["class_ids"].numpy(), args.runs, args.warmup)
                row = ("TF SavedModel signature", "fp32", _size_mb(serving[0]))
            elif fmt.startswith("tflite_"):
                precision = fmt.split("_")[1]
                images = None
                if precision == "int8":
                    source = data.get_source("synthetic", "train", num_examples=args.num_calibration_images)
                    images = export.calibration_images(source, height, width, args.num_calibration_images)
                path = output_dir / f"enet_{precision}_{resolution}.tflite"
                export.tflite.export(model, path, height, width, precision, images, args.num_calibration_images)
                result = enet_tflite.Segmenter(path, num_threads=args.threads).benchmark(args.runs, args.warmup)
                median, p90 = result["median_ms"], result["p90_ms"]
                row = ("LiteRT " + _version("ai_edge_litert"), precision, _size_mb(path))
            elif fmt == "onnx":
                path = output_dir / f"enet_{resolution}.onnx"
                export.export_onnx(model, path, height, width, batch_size=1)
                runner = export.OnnxSegmenter(path, num_threads=args.threads)
                x = image.astype(np.float32)
                median, p90 = _timed(lambda: runner.predict(x), args.runs, args.warmup)
                row = ("ONNX Runtime " + _version("onnxruntime"), "fp32", _size_mb(path))
            else:
                raise SystemExit(f"--formats: unknown format {fmt!r}; choose from {','.join(FORMATS)}")
            rows.append({"format": fmt, "runtime": row[0], "precision": row[1], "resolution": resolution,
                         "size_MB": row[2], "median_ms": median, "p90_ms": p90})

    cpu = _cpu_name()
    print(f"\nENet({args.num_classes}) untrained, batch 1, {args.threads} threads, {args.runs} runs after "
          f"{args.warmup} warm-up, CPU: {cpu}")
    print("| Format | Runtime | Precision | Resolution | Size (MB) | Median (ms) | p90 (ms) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        size = "-" if np.isnan(r["size_MB"]) else f"{r['size_MB']:.2f}"
        print(f"| {r['format']} | {r['runtime']} | {r['precision']} | {r['resolution']} | {size} | "
              f"{r['median_ms']:.1f} | {r['p90_ms']:.1f} |")
    (output_dir / "results.json").write_text(json.dumps({"cpu": cpu, "threads": args.threads, "rows": rows}, indent=2))
    print(f"\nExports and results.json in {output_dir}")
    return rows


def _version(module):
    from importlib.metadata import version

    return version({"ai_edge_litert": "ai-edge-litert"}.get(module, module))


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{os.cpu_count()} cores"


if __name__ == "__main__":
    main()
