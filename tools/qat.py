"""Quantization-aware fine-tuning of a trained ENet, exported as a full-integer TFLite model.

All logic is in enet_keras.training.qat (see its docstring for the tf_keras twin design).
Experimental: on the CamVid weights the converted QAT model is still less accurate than
post-training int8 (docs/int8.md, "Quantization-aware training").

Example:
    python tools/qat.py --model runs/camvid/best.keras --dataset camvid --data_dir ../shared/data/camvid \\
        --output runs/camvid/qat/enet_int8_qat.tflite
    python tools/evaluate.py --model runs/camvid/qat/enet_int8_qat.tflite --dataset camvid \\
        --data_dir ../shared/data/camvid
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads; 0 shows its C++ log lines

from enet_keras import cli


def build_parser():
    from enet_keras.training import TrainConfig

    parser = cli.ArgumentParser(__doc__)
    parser.add_argument("--model", required=True, help="Trained float model, a .keras file. (required)")
    parser.add_argument("--output", required=True, help="The int8 .tflite file to write. (required)")
    cli.add_data_args(parser, default="synthetic")
    parser.add_argument("--epochs", type=int, default=4, help="Fine-tuning epochs. (default: 4)")
    parser.add_argument("--batch_size", type=int, default=10, help="Batch size. (default: 10)")
    parser.add_argument("--learning_rate", type=cli.finite_float, default=1e-4,
                        help="Adam's initial learning rate, poly decay to 0. (default: 1e-4)")
    parser.add_argument("--steps_per_epoch", type=int, default=None, help="Limit the steps per epoch. (default: all)")
    parser.add_argument("--height", type=int, default=240, help="Training crop height, a multiple of 8. (default: 240)")
    parser.add_argument("--width", type=int, default=320, help="Training crop width, a multiple of 8. (default: 320)")
    parser.add_argument("--export_height", type=int, default=360, help="Height of the exported model. (default: 360)")
    parser.add_argument("--export_width", type=int, default=480, help="Width of the exported model. (default: 480)")
    parser.add_argument("--class_weighting", choices=("enet", "median", "none"), default="enet",
                        help="Class weights of the loss, as in training. (default: enet)")
    parser.add_argument("--decoder_c", "--class_weight_c", dest="decoder_c", type=cli.finite_float,
                        default=TrainConfig.decoder_c,
                        help=f"c of the class weights 1/ln(c+p), as the trainer's --decoder_c; --class_weight_c is "
                             f"the old spelling. (default: {TrainConfig.decoder_c})")
    parser.add_argument("--num_calibration_images", type=int, default=100,
                        help="Training images calibrating the tensors QAT has no ranges for. (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="Random seed. (default: 0)")
    cli.add_debug_flag(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    from enet_keras.model import check_model_file, check_size

    for name in ("height", "width", "export_height", "export_width"):
        check_size(getattr(args, name), f"--{name}")
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch_size must be >= 1")
    check_model_file(args.model, "--model")

    from enet_keras.files import atomic_write_json, check_writable, resolve_output
    from enet_keras.training import qat

    args.output = resolve_output(args.output, "--output")
    check_writable(args.output, "--output")  # before the epochs of training

    result = qat.quantization_aware_training(
        args.model, args.dataset, args.output, data_dir=args.data_dir, dataset_options=dict(args.dataset_option),
        crop_size=(args.height, args.width), export_size=(args.export_height, args.export_width),
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        steps_per_epoch=args.steps_per_epoch, class_weighting=args.class_weighting, c=args.decoder_c,
        num_calibration_images=args.num_calibration_images, seed=args.seed,
    )
    summary_path = os.path.splitext(args.output)[0] + "_qat.json"
    summary = {k: v for k, v in result.items() if k != "qat_model"}
    atomic_write_json(summary_path, {**summary, "model": args.model, "dataset": args.dataset})
    print(f"Wrote {result['path']} (QAT int8, {args.export_height}x{args.export_width}) and {summary_path}")
    return result


if __name__ == "__main__":
    cli.run(main)
