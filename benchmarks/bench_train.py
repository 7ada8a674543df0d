"""Training speed of the full ENet: the `model.fit` step as `tools/train.py` runs it, against a
bare `tf.function` step of the same model, printed as a Markdown table. Not a test.

- `fit`: the trainer's compile (class-weighted loss, weight decay on every parameter, mean IoU
  and pixel accuracy) fed by the real training pipeline (CamVid, the camvid preset's
  augmentation, cached after the first pass);
- `bare`: forward, softmax cross-entropy, backward and Adam on one batch held in memory: no
  metrics, class weights, regularizers or input pipeline.

The two alternate run by run in one process, so their ratio is measured side by side. Each is
compiled and warmed up first; the table gives the median over `--runs` runs of `--steps` steps.

With `--profile_dir`, it then traces two steps of each with TensorFlow's profiler (open the
folder in TensorBoard's Profile tab) and prints where the CPU time went, by op type.

Example:

    python benchmarks/bench_train.py --data_dir ../shared/data/camvid --steps 3 --runs 3
    python benchmarks/bench_train.py --data_dir ../shared/data/camvid --runs 1 --profile_dir runs/profile
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads; 0 shows its C++ log lines

import enet_keras  # noqa: E402,F401  first: it imports TensorFlow with its start-up lines filtered

import argparse
import collections
import glob
import json
import math
import statistics
import time
from pathlib import Path

import keras
import tensorflow as tf

from enet_keras import ENet, data
from enet_keras.benchmark import device_name
from enet_keras.losses import WeightedSparseCategoricalCrossentropy
from enet_keras.metrics import PixelAccuracy, mean_iou
from enet_keras.training.trainer import add_weight_decay

_DEFAULT_CAMVID = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", default=str(_DEFAULT_CAMVID), help=f"CamVid folder (default: {_DEFAULT_CAMVID})")
    p.add_argument("--batch_size", type=int, default=10, help="Batch size (default: 10)")
    p.add_argument("--height", type=int, default=360, help="Crop height (default: 360)")
    p.add_argument("--width", type=int, default=480, help="Crop width (default: 480)")
    p.add_argument("--steps", type=int, default=3, help="Timed steps per run (default: 3)")
    p.add_argument("--runs", type=int, default=3, help="Timed runs of each (default: 3)")
    p.add_argument("--xla", action="store_true", help="Compile both with XLA (default: off)")
    p.add_argument("--profile_dir", help="Also trace two steps of each here and print the time by op type")
    return p


def _fit_step(source, args):
    keras.utils.set_random_seed(0)
    model = ENet(source.num_classes)
    add_weight_decay(model, 2e-4)
    weights = data.class_weights(source, c=1.02)
    model.compile(
        keras.optimizers.Adam(5e-4),
        WeightedSparseCategoricalCrossentropy(list(map(float, weights)), source.ignore_label, source.num_classes),
        metrics=[mean_iou(source.num_classes, source.ignore_label), PixelAccuracy(source.ignore_label)],
        jit_compile=args.xla,
    )
    dataset = data.make_pipeline(source, args.batch_size, (args.height, args.width), scale_range=(1.0, 1.0),
                                 color_jitter=False).repeat()
    iterator = iter(dataset)
    for _ in range(math.ceil(source.num_examples / args.batch_size)):  # fill the cache
        next(iterator)

    def run(steps):
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)

    return run


def _bare_step(source, args):
    keras.utils.set_random_seed(0)
    model = ENet(source.num_classes)
    optimizer = keras.optimizers.Adam(5e-4)
    optimizer.build(model.trainable_variables)
    images, labels = next(iter(data.make_pipeline(source, args.batch_size, (args.height, args.width))))
    labels = tf.where(labels == source.ignore_label, 0, labels)

    @tf.function(jit_compile=args.xla)
    def step():
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    def run(steps):
        for _ in range(steps):
            step().numpy()

    return run


def _op_time_by_type(trace_dir):
    """{op type: host self-time in ms} from the newest trace in `trace_dir`, idle threads left
    out, or None where this TensorFlow has no converter for it."""
    try:
        from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin
    except ImportError:
        return None
    path = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)[-1]
    table = json.loads(plugin.xspace_to_tools_data([path], "framework_op_stats", {})[0])[0]
    columns = [c["id"] for c in table["cols"]]
    times = collections.Counter()
    for row in table["rows"]:
        row = dict(zip(columns, (cell.get("v") if cell else None for cell in row["c"])))
        if row["host_or_device"] == "Host" and row["type"] != "IDLE":
            times[row["type"]] += row["total_self_time"] / 1e3
    return times


def _print_profile(runners, profile_dir, top=12):
    tables = {}
    for name, run in runners.items():
        trace_dir = os.path.join(profile_dir, name)
        tf.profiler.experimental.start(trace_dir)
        run(2)
        tf.profiler.experimental.stop()
        tables[name] = _op_time_by_type(trace_dir)
    if any(table is None for table in tables.values()):
        print(f"\nTraces in {profile_dir} (open in TensorBoard's Profile tab)")
        return
    print(f"\nBusy CPU time of 2 steps by op type, all threads together (traces in {profile_dir})\n")
    print("| op type | " + " | ".join(f"{name} (ms)" for name in tables) + " |")
    print("|---|" + "---:|" * len(tables))
    first = next(iter(tables.values()))
    for op_type, _ in first.most_common(top):
        print(f"| {op_type} | " + " | ".join(f"{table[op_type]:.0f}" for table in tables.values()) + " |")
    print("| all | " + " | ".join(f"{sum(table.values()):.0f}" for table in tables.values()) + " |")


def main(argv=None):
    args = build_parser().parse_args(argv)
    source = data.get_source("camvid", "train", args.data_dir)
    runners = {"fit": _fit_step(source, args), "bare": _bare_step(source, args)}
    for run in runners.values():
        run(2)  # trace, compile and warm up
    times = {name: [] for name in runners}
    for _ in range(args.runs):
        for name, run in runners.items():
            start = time.perf_counter()
            run(args.steps)
            times[name].append((time.perf_counter() - start) / args.steps)
    steps_per_epoch = math.ceil(source.num_examples / args.batch_size)
    fit, bare = (statistics.median(times[name]) for name in ("fit", "bare"))
    print(f"\nENet training step, CamVid train ({source.num_examples} images), {args.height}x{args.width}, "
          f"batch {args.batch_size}, XLA {'on' if args.xla else 'off'}, {device_name()}, "
          f"median of {args.runs} runs of {args.steps} steps, alternating\n")
    print("| step | s/step | images/s | s/epoch (train) | vs bare |")
    print("|---|---:|---:|---:|---:|")
    for name, value in (("model.fit (trainer)", fit), ("bare tf.function", bare)):
        print(f"| {name} | {value:.2f} | {args.batch_size / value:.1f} | {value * steps_per_epoch:.0f} | "
              f"{value / bare:.2f}x |")
    if args.profile_dir:
        _print_profile(runners, args.profile_dir)


if __name__ == "__main__":
    main()
