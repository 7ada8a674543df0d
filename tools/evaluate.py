"""Evaluate a trained ENet (.keras, SavedModel folder, .tflite or .onnx) on a dataset split.

    python tools/evaluate.py --model runs/camvid/best.keras --dataset camvid --data_dir ../shared/data/camvid --split val

Prints per-class IoU and accuracy, mIoU, pixel accuracy and class-average accuracy (the
paper's "class avg."), ignoring the dataset's ignore label, and writes:
    <output>.json                   the metrics, confusion matrix and the resolved configuration
    <output stem>_confusion.png     the row-normalised confusion matrix
--output defaults to `<model>_<dataset>_<split>_eval.json` next to the model.
"""

import argparse
import os
import sys


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True,
                        help="Model to evaluate: a .keras file, a SavedModel folder, a .tflite or a .onnx file. (default: required)")
    parser.add_argument("--dataset", default="camvid",
                        help="Data source name, as enet_keras.data.get_source takes. (default: camvid)")
    parser.add_argument("--data_dir", default=None, help="Folder of the dataset. (default: None, the source's own default)")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"), help="Split to evaluate. (default: val)")
    parser.add_argument("--batch_size", type=int, default=4, help="Images per batch (TFLite runs one at a time). (default: 4)")
    parser.add_argument("--reference", default=None,
                        help="Another model run on the same images (e.g. the fp32 one for an int8 model); "
                             "reports the share of pixels where both predict the same class. (default: None)")
    parser.add_argument("--limit", type=int, default=None, help="Evaluate only the first N images. (default: None, all)")
    parser.add_argument("--output", default=None,
                        help="JSON file for the results. (default: <model>_<dataset>_<split>_eval.json next to the model)")
    parser.add_argument("--num_examples", type=int, default=None,
                        help="Only for --dataset synthetic: number of images. (default: None, the source's default)")
    parser.add_argument("--image_size", type=int, nargs=2, default=None, metavar=("HEIGHT", "WIDTH"),
                        help="Only for --dataset synthetic: image height and width. (default: None, the source's default)")
    return parser


def default_output(model, dataset, split):
    """`<model without extension>_<dataset>_<split>_eval.json` beside the model."""
    model = os.path.normpath(os.fspath(model))
    stem = model if os.path.isdir(model) else os.path.splitext(model)[0]
    return f"{stem}_{dataset}_{split}_eval.json"


def main(argv=None):
    args = build_parser().parse_args(argv)
    from enet_keras import data, evaluation, visualize
    from enet_keras.files import atomic_write_json

    options = {}
    if args.num_examples is not None:
        options["num_examples"] = args.num_examples
    if args.image_size is not None:
        options["height"], options["width"] = args.image_size
    source = data.get_source(args.dataset, args.split, args.data_dir, **options)
    results = evaluation.evaluate(args.model, source, batch_size=args.batch_size, limit=args.limit,
                                 reference=args.reference)
    print(evaluation.format_results(results))

    output = args.output or default_output(args.model, args.dataset, args.split)
    png = os.path.splitext(output)[0] + "_confusion.png"
    visualize.plot_confusion_matrix(
        results["confusion_matrix"], results["class_names"], png,
        title=f"{os.path.basename(os.path.normpath(args.model))} on {args.dataset} {args.split}",
    )
    results["config"] = vars(args)
    results["confusion_png"] = png
    atomic_write_json(output, evaluation.json_ready(results))
    print(f"Wrote {output} and {png}")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
