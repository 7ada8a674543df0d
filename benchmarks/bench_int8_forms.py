"""Which PReLU form makes int8 ENet fast: latency and XNNPACK delegation per form, as a Markdown table.

XNNPACK (LiteRT's CPU delegate) runs an op in int8 only if it has a kernel for it; the rest runs
in LiteRT's own kernels and splits the delegated graph into partitions. ENet has 82 PReLUs, so
their form decides most of that. Rows, for one model at one size (batch 1, `invoke()` only):

- fp32: the float TFLite model (PRELU, as exported).
- int8 prelu: int8 with PRELU kept (no export form).
- int8 maximum: `maximum(x, alpha*x)`, what `enet_keras.export.tflite` exports (MUL + MAXIMUM).
- int8 sum: `alpha*x + relu((1-alpha)*x)` (MUL, MUL+RELU, ADD: all delegated, more work).
- int8 depthwise: `x + relu(-(1-alpha)*x)`, the per-channel scale as a 1x1 DEPTHWISE_CONV_2D
  with the RELU fused, then ADD: two delegated ops, no per-channel broadcast (slopes <= 1).
- int8 leaky (speed only): one slope per layer (the mean of its slopes, in [0.05, 0.95]) as
  LEAKY_RELU, one delegated op. Not the trained function: what a model trained with shared
  slopes would cost.
- int8 relu (different network): ReLU instead of PReLU, a lower bound on PReLU's cost.

Each row gives the median (min-max) over `--runs` runs after `--warmup`, alternating the models
in every round so that they share the machine's state, and the delegate's node and partition
counts. Not a test.

Example:

    python benchmarks/bench_int8_forms.py --model runs/camvid/best.keras --size 360x640 --threads 2
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads; 0 shows its C++ log lines

import enet_keras  # noqa: E402,F401  first: it imports TensorFlow with its start-up lines filtered

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import keras
from keras import ops

from enet_keras import ENet, benchmark, runtimes, transfer_weights
from enet_keras import rewrite
from enet_keras.export import tflite
from enet_keras.layers import MaximumPReLU


class _SumPReLU(MaximumPReLU):
    """`alpha*x + relu((1-alpha)*x)`: PReLU for slopes <= 1, from ops XNNPACK runs in int8."""

    def call(self, inputs):
        return inputs * self.alpha + ops.relu(inputs * (1.0 - self.alpha))


class _DepthwisePReLU(MaximumPReLU):
    """`x + relu(-(1-alpha)*x)`: PReLU for slopes <= 1 as a 1x1 depthwise convolution (fused
    RELU) and an ADD, both run by XNNPACK in int8."""

    def call(self, inputs):
        kernel = ops.reshape(self.alpha - 1.0, (1, 1, int(inputs.shape[-1]), 1))
        return inputs + ops.relu(ops.depthwise_conv(inputs, kernel, strides=1, padding="valid"))


class _LayerLeakyReLU(MaximumPReLU):
    """LEAKY_RELU with the mean of the layer's slopes, kept in [0.05, 0.95] (read when the weights
    are set): speed only. XNNPACK leaves an int8 LEAKY_RELU whose slope is too close to 0 for
    its scales to LiteRT, which a model trained with shared slopes would have to avoid."""

    slope = 0.25

    def set_weights(self, weights):
        super().set_weights(weights)
        self.slope = float(np.clip(np.mean(weights[0]), 0.05, 0.95))

    def call(self, inputs):
        return ops.leaky_relu(inputs, negative_slope=self.slope)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="Trained .keras model (default: ENet(11), random)")
    parser.add_argument("--size", default="360x640", help="HEIGHTxWIDTH, multiples of 8 (default: 360x640)")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT threads (default: 2)")
    parser.add_argument("--runs", type=int, default=20, help="Timed runs per model (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed runs first (default: 3)")
    parser.add_argument("--forms", default="prelu,maximum,sum,depthwise,leaky,relu",
                        help="Comma-separated int8 rows besides fp32, from prelu,maximum,sum,depthwise,leaky,relu "
                             "(default: all)")
    parser.add_argument("--no_amx", action="store_true",
                        help="Keep XNNPACK off Intel AMX (enet_tflite.disable_amx) (default: off)")
    args = parser.parse_args(argv)
    if args.no_amx:
        from enet_tflite import disable_amx

        disable_amx()
    ((height, width),) = benchmark.parse_sizes(args.size)

    if args.model:
        model = keras.saving.load_model(args.model, compile=False)
    else:  # untrained, with slopes like trained ones (zero slopes quantize to a zero scale)
        model, rng = ENet(num_classes=11), np.random.default_rng(0)
        for layer in model.layers:
            if isinstance(layer, keras.layers.PReLU):
                layer.alpha.assign(rng.uniform(0.05, 0.3, layer.alpha.shape).astype("float32"))
    relu = ENet(int(model.output_shape[-1]), activation="relu")
    transfer_weights(model, relu, skip=[l.name for l in model.layers if isinstance(l, keras.layers.PReLU)])
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(8)]

    forms = {
        "prelu": ("int8 prelu", lambda: tflite.convert(model, height, width, "int8", images, len(images),
                                                       export_form=False)),
        "maximum": ("int8 maximum (exported)", lambda: tflite.convert(model, height, width, "int8", images,
                                                                      len(images))),
        "sum": ("int8 sum", lambda: tflite.convert(rewrite.int8_export_form(model, _SumPReLU), height, width,
                                                   "int8", images, len(images))),
        "depthwise": ("int8 depthwise", lambda: tflite.convert(rewrite.int8_export_form(model, _DepthwisePReLU),
                                                               height, width, "int8", images, len(images))),
        "leaky": ("int8 leaky (speed only)", lambda: tflite.convert(rewrite.int8_export_form(model, _LayerLeakyReLU),
                                                                    height, width, "int8", images, len(images))),
        "relu": ("int8 relu (other network)", lambda: tflite.convert(relu, height, width, "int8", images,
                                                                     len(images))),
    }
    chosen = [name.strip() for name in args.forms.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(forms))
    if unknown or not chosen:
        parser.error(f"--forms: expected names from {','.join(forms)}. Received: {args.forms!r}")
    variants = {"fp32": lambda: tflite.convert(model, height, width, "fp32"), **dict(forms[name] for name in chosen)}
    runners, delegation = {}, {}
    with tempfile.TemporaryDirectory() as work:
        for name, make in variants.items():
            print(f"exporting {name} ...", file=sys.stderr, flush=True)
            path = Path(work) / f"{name.split(' (')[0].replace(' ', '_')}.tflite"
            path.write_bytes(make())
            runners[name] = runtimes.TFLitePredictor(path, args.threads).runner(images[0][None])
            delegation[name] = benchmark.xnnpack_delegation(path, args.threads)
        for _ in range(args.warmup):
            for run in runners.values():
                run()
        times = {name: [] for name in runners}
        for _ in range(args.runs):
            for name, run in runners.items():
                start = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - start) * 1000)

    fp32 = statistics.median(times["fp32"])
    print(f"\nENet int8 forms, {height}x{width}, batch 1, {args.threads} threads, {args.runs} runs, "
          f"{benchmark.device_name()}, model {args.model or 'untrained ENet(11)'}"
          f"{', AMX kept off (--no_amx)' if args.no_amx else ''}\n")
    print("| Model | Median (ms) | Min-max (ms) | vs fp32 | XNNPACK nodes | Partitions | Left to LiteRT kernels |")
    print("|---|---|---|---|---|---|---|")
    for name, values in times.items():
        info = delegation[name]
        outside = ", ".join(f"{op} {n}" for op, n in info["outside"].items()) or "-"
        print(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f}-{max(values):.1f} | "
              f"{statistics.median(values) / fp32:.2f}x | {info['delegated_nodes']}/{info['total_nodes']} | "
              f"{info['partitions']} | {outside} |")


if __name__ == "__main__":
    main()
