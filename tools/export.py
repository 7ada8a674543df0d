"""Export a trained ENet to TF-Serving SavedModel, TFLite (fp32, fp16, int8), ONNX and TF-TRT.

Example:
    python tools/export.py --model runs/camvid/best.keras --output_dir runs/camvid/export \\
        --dataset camvid --data_dir ../shared/data/camvid

Writes into --output_dir:
    serving/<model_name>/<version>/   SavedModel for TF-Serving (uint8 `images` -> `class_ids`, `probabilities`)
    <model_name>_fp32.tflite, <model_name>_fp16.tflite, <model_name>_int8.tflite
                                      with TFLite metadata (labels, normalization): MediaPipe's
                                      ImageSegmenter loads them as they are
    <model_name>.onnx                 float32 [1, H, W, 3] -> logits, for ONNX Runtime / trtexec
    tftrt_<precision>/                TF-TRT SavedModel (only with --formats ...,tftrt and a TensorRT build)
    palette.json                      the dataset's class colours (for enet_tflite --palette)
    export_config.json, export_summary.json
The folder is written as one unit: built beside --output_dir and swapped in when complete, so a
re-export never leaves a mix of old and new files, and a killed one leaves the previous export.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads; 0 shows its C++ log lines

from enet_keras import cli
from enet_keras.cli import comma_list
from enet_keras.export.formats import DEFAULT_FORMATS, EXPORTED, FORMATS, ExportSettings, check_destination
from enet_keras.files import check_file_name


def build_parser():
    parser = cli.ArgumentParser(__doc__)
    parser.add_argument("--model", required=True, help="Trained model, a .keras file. (default: required)")
    parser.add_argument("--output_dir", required=True, help="Folder for the exported files. (default: required)")
    parser.add_argument("--formats", type=comma_list(EXPORTED), default=list(DEFAULT_FORMATS),
                        help=f"Comma-separated formats from {','.join(EXPORTED)}. (default: {','.join(DEFAULT_FORMATS)})")
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
    parser.add_argument("--license", default="MIT", help="License written into the TFLite metadata. (default: MIT)")
    parser.add_argument("--no_metadata", action="store_true",
                        help="Leave the TFLite metadata out (labels from --dataset, normalization, name, version, "
                             "license) that MediaPipe's ImageSegmenter needs. (default: written)")
    cli.add_debug_flag(parser)
    return parser


def _check_args(parser, args):
    from enet_keras.model import check_memory, check_model_file, check_size

    for flag in ("height", "width"):
        check_size(getattr(args, flag), f"--{flag}")
    if args.num_calibration_images < 1:
        parser.error(f"--num_calibration_images must be >= 1. Received: {args.num_calibration_images}")
    settings = ExportSettings(tftrt_precision=args.tftrt_precision)
    if not args.dataset and any(FORMATS[f].calibrated(settings) for f in args.formats):
        parser.error("int8 export calibrates on training images: give --dataset (and --data_dir), "
                     "or leave tflite_int8 out of --formats")
    if "tftrt" in args.formats:  # before anything is loaded or written
        from enet_keras.export import tensorrt

        tensorrt.require_tensorrt()
    check_model_file(args.model, "--model")
    check_file_name(args.model_name, "--model_name")
    check_memory(args.height, args.width, flag="--height/--width")
    check_destination(args.output_dir)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)

    from enet_keras.data import calibration_images
    from enet_keras.model import load_model
    from enet_keras.export.formats import export_all

    model = load_model(args.model)
    config = dict(vars(args), num_classes=int(model.output_shape[-1]))
    images, extra, class_names = None, {}, None
    if args.dataset:
        source = cli.get_source(args, "train")
        print(f"Reading up to {args.num_calibration_images} {args.dataset} training images at {args.height}x{args.width}")
        images = calibration_images(source, args.height, args.width, args.num_calibration_images)
        class_names = list(source.class_names)
        config.update(class_names=class_names, calibration_images=len(images))
        extra["palette.json"] = [list(c) for c in source.palette]
    summary = export_all(
        model, args.output_dir, args.formats, args.height, args.width, calibration_images=images,
        num_calibration_images=args.num_calibration_images, model_name=args.model_name, version=args.version,
        opset=args.opset, tftrt_precision=args.tftrt_precision, class_names=class_names, license=args.license,
        metadata=not args.no_metadata, extra_files=extra, config=config,
    )
    summary["model"] = args.model
    _print_summary(args, summary["files"], os.path.join(args.output_dir, "serving", args.model_name, str(args.version)))
    return summary


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
