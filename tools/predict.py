"""Segment images, a folder of images or a video with a trained ENet (.keras or .tflite; any
model tools/evaluate.py takes works).

Example:
    python tools/predict.py --model runs/camvid/best.keras --input street.png --output_dir out --palette camvid

Writes into --output_dir, per image (or video frame `<video>_frame000123`):
    <name>_class_ids.png   the class ids, 8-bit greyscale, the input's size
    <name>_overlay.png     the input and the colour overlay side by side, with a legend
    predict_config.json    the resolved configuration
Videos (.mp4, .avi, .mov, .mkv) need opencv-python (pip install opencv-python-headless).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads; 0 shows its C++ log lines

from enet_keras import cli


def build_parser():
    parser = cli.ArgumentParser(__doc__)
    parser.add_argument("--model", required=True,
                        help="Trained model: a .keras or .tflite file (or a SavedModel folder / .onnx). (default: required)")
    parser.add_argument("--input", required=True, help="An image, a folder of images or a video. (default: required)")
    parser.add_argument("--output_dir", required=True, help="Folder for the outputs. (default: required)")
    parser.add_argument("--palette", default="default",
                        help="camvid, cityscapes, default (VOC colour map) or the path of a palette JSON file. (default: default)")
    parser.add_argument("--alpha", type=cli.finite_float, default=0.5, help="Opacity of the class colours in the overlay. (default: 0.5)")
    parser.add_argument("--every", type=int, default=1, help="For videos: segment every N-th frame. (default: 1)")
    cli.add_debug_flag(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error(f"--every must be >= 1. Received: --every {args.every}")
    if not 0.0 <= args.alpha <= 1.0:
        parser.error(f"--alpha must be in [0, 1]. Received: --alpha {args.alpha}")
    from enet_keras import inference, runtimes, visualize
    from enet_keras.files import atomic_write_json, resolve_output

    inference.check_inputs(args.input)  # fail on a bad input before loading the model
    output_dir = resolve_output(args.output_dir, "--output_dir")
    source_dir = os.path.realpath(args.input if os.path.isdir(args.input) else os.path.dirname(args.input) or ".")
    if os.path.isdir(args.input) and (output_dir + os.sep).startswith(source_dir + os.sep):
        parser.error(f"--output_dir {args.output_dir} is inside the --input folder {args.input}: the next run "
                     "would read the outputs as inputs; choose a folder outside it")
    predictor = runtimes.load_predictor(args.model)
    palette, class_names = visualize.get_palette(args.palette, predictor.num_classes)
    written = inference.predict_to_files(
        predictor, args.input, output_dir, palette, class_names, alpha=args.alpha, every=args.every
    )
    atomic_write_json(os.path.join(output_dir, "predict_config.json"), vars(args))
    print(f"Wrote {len(written) // 2} class-id PNGs and overlays to {args.output_dir}")
    return written


if __name__ == "__main__":
    cli.run(main)
