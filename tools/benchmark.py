"""Benchmark ENet on CPU: GFLOPs, file sizes and batch-1 latency of every export format.

Example:
    python tools/benchmark.py --output_dir runs/benchmark
    python tools/benchmark.py --model runs/camvid/best.keras --sizes 360x480 --formats keras,tflite_int8,onnx

Formats: keras (tf.function on the BN-folded model), keras_xla (the same, jit_compile=True),
savedmodel (TF-Serving signature: uint8 in, pad, softmax, argmax), tflite_fp32, tflite_fp16,
tflite_int8 (LiteRT, invoke() only, one row per --threads), onnx (ONNX Runtime CPU, one row per
--threads). Prints a Markdown table and the command that produced it; with --output_dir also
writes benchmark.md, benchmark.csv and benchmark_config.json there. All logic lives in
`enet_keras.benchmark`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads; 0 shows its C++ log lines

import argparse
import shlex
import sys

from enet_keras import cli
from enet_keras.benchmark import FORMATS
from enet_keras.cli import comma_list
DEFAULT_SIZES = "360x480,360x640,720x1280"



def _parse_threads(text):
    try:
        threads = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        threads = []
    if not threads or any(t < 1 for t in threads):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, such as 1,2. Received: {text!r}")
    return list(dict.fromkeys(threads))


def _parse_sizes(text):
    from enet_keras.benchmark import parse_sizes

    try:
        return parse_sizes(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser():
    parser = cli.ArgumentParser(__doc__)
    parser.add_argument("--num_classes", type=int, default=11,
                        help="Classes of the untrained ENet benchmarked when --model is not given. (default: 11)")
    parser.add_argument("--model", default=None,
                        help="A trained model, a .keras file. (default: none, an untrained ENet(--num_classes))")
    parser.add_argument("--sizes", type=_parse_sizes, default=DEFAULT_SIZES,
                        help=f"Comma-separated HxW input sizes, multiples of 8. (default: {DEFAULT_SIZES})")
    parser.add_argument("--formats", type=comma_list(FORMATS), default=list(FORMATS),
                        help=f"Comma-separated formats from {','.join(FORMATS)}. (default: all)")
    parser.add_argument("--threads", type=_parse_threads, default=[1, 2],
                        help="Comma-separated thread counts of LiteRT and ONNX Runtime; TensorFlow uses the "
                             "largest. (default: 1,2)")
    parser.add_argument("--runs", type=int, default=20, help="Timed runs per row, batch 1. (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed runs before timing. (default: 3)")
    parser.add_argument("--num_calibration_images", type=int, default=8,
                        help="Random images calibrating int8 (enough for latency, not accuracy). (default: 8)")
    parser.add_argument("--no_amx", action="store_true",
                        help="Keep XNNPACK (and oneDNN) off Intel AMX, with enet_tflite.disable_amx: "
                             "int8 runs faster on Sapphire Rapids and later. (default: off)")
    parser.add_argument("--output_dir", default=None,
                        help="Folder for benchmark.md, benchmark.csv and benchmark_config.json. "
                             "(default: none, print only)")
    parser.add_argument("--keep_exports", action="store_true",
                        help="Keep the exported models in <output_dir>/exports. (default: False)")
    cli.add_debug_flag(parser)
    return parser


def main(argv=None):
    """Runs the benchmark; returns the rows."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if isinstance(args.sizes, str):
        args.sizes = _parse_sizes(args.sizes)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1. Received: --runs {args.runs}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0. Received: --warmup {args.warmup}")
    if args.num_classes < 2:
        parser.error(f"--num_classes must be >= 2. Received: --num_classes {args.num_classes}")
    if args.model:
        from enet_keras.model import check_model_file

        check_model_file(args.model, "--model")
    if args.keep_exports and not args.output_dir:
        parser.error("--keep_exports needs --output_dir")
    command = " ".join(shlex.quote(a) for a in ["python", "tools/benchmark.py", *(sys.argv[1:] if argv is None else argv)])

    if args.no_amx:
        # Before anything asks for AMX; the LiteRT-only runtime holds the one implementation.
        from enet_tflite import disable_amx

        disable_amx()

    from enet_keras import benchmark as bench

    # Before TensorFlow starts its thread pools (later calls cannot change them).
    tf_threads = bench.configure_tensorflow_threads(max(args.threads))

    import keras
    from enet_keras import ENet
    from enet_keras.model import load_model
    from enet_keras.files import atomic_write_bytes, atomic_write_json

    if args.model:
        model = load_model(args.model)
        description = f"{args.model} ({int(model.output_shape[-1])} classes)"
    else:
        keras.utils.set_random_seed(0)
        model = ENet(num_classes=args.num_classes)
        description = f"untrained ENet({args.num_classes})"
    work_dir = os.path.join(args.output_dir, "exports") if args.keep_exports else None
    rows = bench.benchmark(model, args.sizes, args.formats, args.threads, args.runs, args.warmup,
                           work_dir=work_dir, num_calibration_images=args.num_calibration_images, command=command)
    notes = [
        f"{description}, batch 1, median/min/max over {args.runs} runs after {args.warmup} warm-up runs.",
        f"TensorFlow rows use {tf_threads} intra-op threads. GFLOPs: TF profiler, BN folded, multiply-add = 2 FLOPs;"
        " GFLOP/s = GFLOPs / median latency.",
        f"int8 is calibrated on {args.num_calibration_images} random images: fine for latency, not for accuracy.",
    ]
    if args.no_amx:
        notes.append("AMX kept off (--no_amx): XNNPACK's int8 runs its AVX-512 VNNI kernels.")
    table = bench.to_markdown(rows, notes)
    print("\n" + table)
    if args.output_dir:
        config = dict(vars(args), sizes=[f"{h}x{w}" for h, w in args.sizes], tensorflow_threads=tf_threads,
                      command=command, device=bench.device_name())
        atomic_write_bytes(os.path.join(args.output_dir, "benchmark.md"), table.encode())
        atomic_write_bytes(os.path.join(args.output_dir, "benchmark.csv"), bench.to_csv(rows).encode())
        atomic_write_json(os.path.join(args.output_dir, "benchmark_config.json"), config)
        print(f"Wrote benchmark.md, benchmark.csv and benchmark_config.json to {args.output_dir}")
    return rows


if __name__ == "__main__":
    cli.run(main)
