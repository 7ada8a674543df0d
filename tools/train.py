"""Train ENet: the encoder on 1/8 labels, then the whole network (the paper's two stages), or
the whole network alone (--encoder_epochs 0, the camvid preset). Rerun the same command to
resume after any stop. All logic is in enet_keras.training.

A run starts from a named recipe (--preset; by default the one named like --dataset: synthetic,
camvid, cityscapes; enet_keras.training.presets) and the flags given change it field by field, as
TrainConfig.from_preset(name, **overrides) does in Python.

Writes into --run_dir: config.json, best.keras (the best validation mIoU), summary.json, and per
stage (encoder/, decoder/) history.csv, curves.png, best.keras, last.keras and TensorBoard logs/.

Example:
    python tools/train.py --dataset camvid --data_dir ../shared/data/camvid --run_dir runs/camvid
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads; 0 shows its C++ log lines

import argparse
import math
import sys

from enet_keras import cli
from enet_keras.cli import add_switch

def scale_range(text):
    """argparse type of `--scale_range LOW,HIGH`."""
    try:
        low, high = (cli.finite_float(v) for v in text.split(","))
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expects LOW,HIGH, two finite numbers, e.g. 0.5,2.0. "
                                         f"Received: {text!r}") from None
    return (low, high)


def build_parser():
    from enet_keras.data import CACHE_MODES
    from enet_keras.training import TrainConfig, list_presets
    from enet_keras.model import ACTIVATIONS
    from enet_keras.training.trainer import CLASS_WEIGHTINGS, LOSSES, STAGES, STRATEGIES

    d = TrainConfig()
    p = cli.ArgumentParser(__doc__)
    cli.add_data_args(p, default=None, shown="the preset's; synthetic without --preset")
    p.add_argument("--preset", default=None, choices=list_presets(),
                   help="Recipe the flags change (enet_keras.training.presets) (default: the one named like "
                        "--dataset, if any; else TrainConfig's defaults, the paper's)")
    p.add_argument("--run_dir", default=None, help=f"Output folder; rerun the same command to resume (default: {d.run_dir})")
    p.add_argument("--stage", default=None, choices=STAGES, help=f"Stage(s) to train (default: {d.stage})")
    p.add_argument("--encoder_weights", default=None,
                   help="A .keras model whose weights start the full network, copied by layer name: a trained "
                        "encoder, or a whole ENet to train on (default: <run_dir>/encoder/best.keras; none with "
                        "--encoder_epochs 0)")
    p.add_argument("--num_classes", type=int, default=None, help="Expected number of classes, checked against the data (default: from the data)")
    for name, kind, what in [
        ("height", int, "Training crop height, a multiple of 8"),
        ("width", int, "Training crop width, a multiple of 8"),
        ("val_height", int, "Validation size; none = the images' full size"),
        ("val_width", int, "Validation size; none = the images' full size"),
        ("batch_size", int, "Batch size"),
        ("encoder_epochs", int, "Epochs of the encoder stage"),
        ("decoder_epochs", int, "Epochs of the full-network stage"),
        ("learning_rate", cli.finite_float, "Adam's initial learning rate (poly decay to 0)"),
        ("weight_decay", cli.finite_float, "L2 weight decay on every parameter (coupled, as Torch's Adam)"),
        ("encoder_c", cli.finite_float, "c of the class weights 1/ln(c+p), encoder stage"),
        ("decoder_c", cli.finite_float, "c of the class weights 1/ln(c+p), decoder stage"),
        ("seed", int, "Random seed"),
        ("steps_per_epoch", int, "Limit the steps per epoch; none = the whole training split"),
        ("validation_steps", int, "Limit the validation steps; none = the whole split"),
        ("validation_freq", int, "Validate every N epochs"),
        ("scale_range", scale_range, "Random scale range LOW,HIGH of the training images; 1,1 = none"),
    ]:
        default = getattr(d, name)
        p.add_argument(f"--{name}", type=kind, default=None, help=f"{what} (default: the preset's, else {default})")
    for name, what in [("flip", "Random horizontal flips"), ("color_jitter", "Random brightness and contrast")]:
        add_switch(p, name, None, f"{what} (default: the preset's, else {getattr(d, name)})")
    p.add_argument("--cache", default=None, choices=CACHE_MODES,
                   help=f"Where decoded training and validation images stay between epochs: memory, disk "
                        f"(<run_dir>/cache/), none, or auto: memory if the split fits --cache_budget_mb, else "
                        f"disk (default: {d.cache})")
    p.add_argument("--cache_budget_mb", type=int, default=None,
                   help="Memory that decoded images may take, in MB (default: half of the available memory)")
    p.add_argument("--loss", default=None, choices=LOSSES,
                   help=f"crossentropy (class-weighted, the paper) or lovasz (Lovasz-Softmax, a surrogate of "
                        f"1 - IoU; for fine-tuning a trained model) (default: {d.loss})")
    p.add_argument("--class_weighting", default=None, choices=CLASS_WEIGHTINGS,
                   help=f"Class weighting from the training labels, for crossentropy (default: {d.class_weighting})")
    p.add_argument("--activation", default=None, choices=ACTIVATIONS,
                   help=f"Activation: prelu (a slope per channel, the paper), prelu_layer (a slope per layer: "
                        f"faster int8) or relu (default: {d.activation})")
    p.add_argument("--strategy", default=None, choices=STRATEGIES,
                   help=f"tf.distribute strategy; multiworker reads TF_CONFIG (default: {d.strategy})")
    p.add_argument("--mixed_precision", action="store_true", default=None, help="mixed_float16, for GPUs (default: off)")
    add_switch(p, "jit_compile", None, "XLA; faster on some CPUs and GPUs, slower on others (default: off)")
    p.add_argument("--verbose", type=int, default=None, choices=(0, 1, 2),
                   help="Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch "
                        "(default: 1 in a terminal, else 2)")
    cli.add_debug_flag(p)
    return p


def config_from_args(args):
    """The `TrainConfig` of parsed flags: the preset (`--preset`, or the one named like
    `--dataset`) with every flag given as an override."""
    import dataclasses

    from enet_keras.training import TrainConfig, list_presets

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    overrides["dataset_options"] = dict(args.dataset_option)
    overrides.setdefault("verbose", 1 if sys.stdout.isatty() else 2)
    preset = args.preset or (args.dataset if args.dataset in list_presets() else None)
    if preset is None and args.dataset is None:
        preset = "synthetic"
    if preset is None:
        return TrainConfig(**overrides)
    return TrainConfig.from_preset(preset, **overrides)


def main(argv=None):
    args = build_parser().parse_args(argv)
    from enet_keras.training import train

    config = config_from_args(args)
    summary = train(config)
    print("\nSummary")
    for stage, info in summary["stages"].items():
        miou = info["best_val_mean_iou"]
        shown = "n/a" if math.isnan(miou) else f"{miou:.3f}"
        print(f"  {stage:8s} {info['epochs']:3d} epochs, best val mIoU {shown}, "
              f"curves {os.path.join(info['dir'], 'curves.png')}")
    if "best_model" in summary:
        print(f"  best model: {summary['best_model']}")
    return summary


if __name__ == "__main__":
    cli.run(main)
