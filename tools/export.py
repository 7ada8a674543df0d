"""Export a trained ENet to TF-Serving SavedModel, TFLite (fp32, fp16, int8), ONNX and TF-TRT.

    python tools/export.py --model runs/synthetic/best.keras --output_dir runs/synthetic/export --dataset synthetic

Writes into --output_dir:
    serving/<model_name>/<version>/   SavedModel for TF-Serving (uint8 `images` -> `class_ids`, `probabilities`)
    <model_name>_fp32.tflite, <model_name>_fp16.tflite, <model_name>_int8.tflite
    <model_name>.onnx                 float32 [1, H, W, 3] -> logits, for ONNX Runtime / trtexec
    tftrt_<precision>/                TF-TRT SavedModel (only with --formats ...,tftrt and a TensorRT build)
    palette.json                      the dataset's class colours (for tflite/enet_tflite.py --palette)
    export_config.json, export_summary.json
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads; 0 shows its C++ log lines

import argparse
import time

from enet_keras import cli
from enet_keras.cli import comma_list

FORMATS = ("savedmodel", "tflite_fp32", "tflite_fp16", "tflite_int8", "onnx", "tftrt")
DEFAULT_FORMATS = ("savedmodel", "tflite_fp32", "tflite_fp16", "tflite_int8", "onnx")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Trained model, a .keras file. (default: required)")
    parser.add_argument("--output_dir", required=True, help="Folder for the exported files. (default: required)")
    parser.add_argument("--formats", type=comma_list(FORMATS), default=list(DEFAULT_FORMATS),
                        help=f"Comma-separated formats from {','.join(FORMATS)}. (default: {','.join(DEFAULT_FORMATS)})")
    parser.add_argument("--height", type=int, default=360, help="Input height of the TFLite and ONNX models, a multiple of 8. (default: 360)")
    parser.add_argument("--width", type=int, default=480, help="Input width of the TFLite and ONNX models, a multiple of 8. (default: 480)")
    cli.add_data_args(parser, default=None, needed_for="int8: training images calibrate it")
    parser.add_argument("--num_calibration_images", type=int, default=100,
                        help="Training images used to calibrate int8 models. (default: 100)")
    parser.add_argument("--model_name", default="enet", help="Model name in TF-Serving and file name prefix. (default: enet)")
    parser.add_argument("--version", type=int, default=1, help="TF-Serving version folder. (default: 1)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset. (default: 17)")
    parser.add_argument("--tftrt_precision", choices=("FP32", "FP16", "INT8"), default="FP16",
                        help="Precision of the TF-TRT conversion. (default: FP16)")
    cli.add_debug_flag(parser)
    return parser


def _check_args(parser, args):
    for flag in ("height", "width"):
        value = getattr(args, flag)
        if value <= 0 or value % 8:
            parser.error(f"--{flag} must be a positive multiple of 8 (ENet downsamples by 8). Received: --{flag} {value}")
    if args.num_calibration_images < 1:
        parser.error(f"--num_calibration_images must be >= 1. Received: {args.num_calibration_images}")
    needs_data = "tflite_int8" in args.formats or ("tftrt" in args.formats and args.tftrt_precision == "INT8")
    if needs_data and not args.dataset:
        parser.error("int8 export calibrates on training images: give --dataset (and --data_dir), "
                     "or leave tflite_int8 out of --formats")
    if not os.path.isfile(args.model):
        raise FileNotFoundError(f"--model: no model file at {args.model}")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)

    import keras
    from enet_keras import export
    from enet_keras.files import atomic_write_json

    if "tftrt" in args.formats and not export.is_tensorrt_available():
        import tensorflow as tf

        raise RuntimeError(export.tensorrt.NO_TENSORRT_MESSAGE.format(version=tf.__version__))

    model = keras.saving.load_model(args.model)
    os.makedirs(args.output_dir, exist_ok=True)
    config = dict(vars(args), num_classes=int(model.output_shape[-1]))
    del config["dataset_option"]

    images, source = None, None
    if args.dataset:
        source = cli.get_source(args, "train")
        print(f"Reading up to {args.num_calibration_images} {args.dataset} training images at {args.height}x{args.width}")
        images = export.calibration_images(source, args.height, args.width, args.num_calibration_images)
        config.update(class_names=list(source.class_names), calibration_images=len(images))
        atomic_write_json(os.path.join(args.output_dir, "palette.json"), [list(c) for c in source.palette])
    atomic_write_json(os.path.join(args.output_dir, "export_config.json"), config)

    prefix = os.path.join(args.output_dir, args.model_name)
    serving_dir = os.path.join(args.output_dir, "serving", args.model_name, str(args.version))
    written = []
    for step, fmt in enumerate(args.formats, start=1):
        print(f"[{step}/{len(args.formats)}] {fmt} ...", flush=True)
        start = time.time()
        if fmt == "savedmodel":
            path = export.export_saved_model(
                model, os.path.join(args.output_dir, "serving"), args.model_name, args.version,
                warmup_images=images[:3] if images else None,
            )
        elif fmt.startswith("tflite_"):
            precision = fmt.split("_", 1)[1]
            path = export.tflite.export(
                model, f"{prefix}_{precision}.tflite", args.height, args.width, precision,
                representative_images=images if precision == "int8" else None,
                num_calibration_images=args.num_calibration_images,
            )
        elif fmt == "onnx":
            path = export.export_onnx(model, f"{prefix}.onnx", args.height, args.width, args.opset, batch_size=1)
        else:
            if not os.path.isdir(serving_dir):
                raise FileNotFoundError(f"tftrt converts the SavedModel at {serving_dir}: add savedmodel to --formats")
            path = export.convert_tftrt(
                serving_dir, os.path.join(args.output_dir, f"tftrt_{args.tftrt_precision.lower()}"),
                args.tftrt_precision, calibration_images=images, build_shapes=[(args.height, args.width)],
                num_calibration_images=args.num_calibration_images,
            )
        written.append({"format": fmt, "path": path, "size_MB": round(_size(path) / 1e6, 3),
                        "seconds": round(time.time() - start, 1)})

    summary = {"model": args.model, "height": args.height, "width": args.width, "files": written}
    atomic_write_json(os.path.join(args.output_dir, "export_summary.json"), summary)
    _print_summary(args, written, serving_dir)
    return summary


def _size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _print_summary(args, written, serving_dir):
    rows = [("format", "size (MB)", "seconds", "path")] + [
        (w["format"], f"{w['size_MB']:.2f}", f"{w['seconds']:.0f}", w["path"]) for w in written
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"\nExported {args.model} at {args.height}x{args.width} (TFLite, ONNX; the SavedModel takes any size):")
    for i, row in enumerate(rows):
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))
    print(f"Config and summary: {os.path.join(args.output_dir, 'export_config.json')}, "
          f"{os.path.join(args.output_dir, 'export_summary.json')}")
    if "savedmodel" in args.formats:
        from enet_keras.export.saved_model import saved_model_cli_command

        print(f"Inspect the serving signature: {saved_model_cli_command(serving_dir)}")


if __name__ == "__main__":
    cli.run(main)
