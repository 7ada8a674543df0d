"""Take part of the class weighting back from a trained ENet's logits, at the strength that
scores best on a split (val by default), and write the adjusted model.

Training with class weights `w` lifts each class's logit by about `log(w_c)`, so rare classes
are predicted too often. This scores `logits - strength * log(w)` for strength 0, 0.05, ..., 1
in one pass over the split (`enet_keras.evaluation.fit_logit_adjustment`), prints mIoU and
per-class IoU per strength, and writes the model with the best offsets added to its last
layer's bias (`enet_keras.rewrite.shift_logits`): same layers, same speed, every export form.
The weights are the training's: the train split's, by --class_weighting and --c (the trainer's
full-network defaults), cached beside the model as the trainer caches them in its run folder (so
a run's best.keras reuses its run's count), or a class_weights_*.json given as --class_weights.

Writes <output> (.keras) and <output stem>_adjustment.json (every strength's metrics).

Example:
    python tools/adjust_logits.py --model runs/camvid/best.keras --dataset camvid \\
        --data_dir ../shared/data/camvid --output runs/camvid/adjusted.keras
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads; 0 shows its C++ log lines

from enet_keras import cli


def build_parser():
    from enet_keras.training import TrainConfig

    parser = cli.ArgumentParser(__doc__)
    parser.add_argument("--model", required=True, help="The trained .keras model (required)")
    cli.add_data_args(parser)
    parser.add_argument("--split", default="val", choices=("train", "val"),
                        help="Split that picks the strength (default: val)")
    parser.add_argument("--class_weights", default=None,
                        help="A run's class_weights_*.json (the weights it trained with) "
                             "(default: computed on the train split by --class_weighting and --c)")
    parser.add_argument("--class_weighting", default="enet", choices=("enet", "median"),
                        help="Weighting the model trained with, when --class_weights is not given (default: enet)")
    parser.add_argument("--decoder_c", "--c", dest="decoder_c", type=cli.finite_float, default=TrainConfig.decoder_c,
                        help=f"c of the class weights 1/ln(c+p), as the trainer's --decoder_c; --c is the old "
                             f"spelling (default: {TrainConfig.decoder_c})")
    parser.add_argument("--strength", type=cli.finite_float, default=None,
                        help="Use this strength instead of the best on --split (default: the best)")
    parser.add_argument("--output", required=True, help="The adjusted .keras model to write (required)")
    cli.add_debug_flag(parser)
    return parser


def read_class_weights(path):
    """The `weights` list of a `class_weights_*.json` that training wrote."""
    import json

    with open(path) as f:
        try:
            return json.load(f)["weights"]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: not a class weights file (JSON with a 'weights' list): {error}") from None


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.output.endswith(".keras"):
        parser.error(f"--output must be a .keras file. Received: {args.output}")
    if args.strength is not None and not 0 <= args.strength <= 1:
        parser.error(f"--strength must be in [0, 1]. Received: {args.strength}")
    from enet_keras import data, evaluation
    from enet_keras.files import atomic_write_json, check_writable

    check_writable(args.output, "--output")  # before a pass over the split
    from enet_keras.model import load_model
    from enet_keras.rewrite import shift_logits
    from enet_keras.training.callbacks import save_model_atomic

    model = load_model(args.model, flag="--model")
    if args.class_weights:
        weights = read_class_weights(args.class_weights)
    else:
        weights = data.class_weights(cli.get_source(args, "train"), method=args.class_weighting, c=args.decoder_c,
                                     cache_dir=os.path.dirname(os.path.abspath(args.model))).tolist()
    strengths = None if args.strength is None else [0.0, args.strength]
    source = cli.get_source(args, args.split)
    fit = evaluation.fit_logit_adjustment(model, source, weights, strengths)
    names = list(source.class_names)
    print(f"\n{args.split} mIoU and per-class IoU (%) of logits - strength * log(class weight)\n")
    print("| strength | mIoU | " + " | ".join(names) + " |")
    print("|---:|---:|" + "---:|" * len(names))
    for strength, result in zip(fit["strengths"], fit["results"]):
        per_class = " | ".join(f"{100 * v:.1f}" for v in result["per_class_iou"])
        print(f"| {strength:.2f} | {100 * result['mean_iou']:.2f} | {per_class} |")
    chosen = fit["best_strength"] if args.strength is None else args.strength
    offsets = evaluation.logit_offsets(weights, chosen)
    save_model_atomic(shift_logits(model, offsets), args.output)
    report = os.path.splitext(args.output)[0] + "_adjustment.json"
    atomic_write_json(report, evaluation.json_ready({
        "model": args.model, "split": args.split, "class_weights": list(weights), "strength": chosen,
        "offsets": offsets.tolist(), "class_names": names, **fit, "config": vars(args)}))
    print(f"\nStrength {chosen:.2f}: wrote {args.output} and {report}")
    return fit


if __name__ == "__main__":
    cli.run(main)
