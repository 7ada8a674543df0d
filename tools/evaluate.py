"""Evaluate a trained ENet (.keras, SavedModel folder, .tflite or .onnx) on a dataset split.

Prints per-class IoU and accuracy, mIoU, pixel accuracy and class-average accuracy (the
paper's "class avg."), ignoring the dataset's ignore label, and writes:
    <output>.json                   the metrics, confusion matrix and the resolved configuration
    <output stem>_confusion.png     the row-normalised confusion matrix
    <output stem>_examples.png      input | ground truth | prediction for the first --examples images
--output defaults to `<model>_<dataset>_<split>_eval.json` next to the model; for a model in an
export folder, next to that folder (`<export folder>_<model>_...`), since a re-export replaces the
folder whole.

Example:
    python tools/evaluate.py --model runs/camvid/best.keras --dataset camvid --data_dir ../shared/data/camvid
    python tools/evaluate.py --model export/enet_int8.tflite --reference export/enet_fp32.tflite \\
        --dataset camvid --data_dir ../shared/data/camvid     # also the int8 model's agreement with fp32
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads; 0 shows its C++ log lines

from enet_keras import cli


def build_parser():
    parser = cli.ArgumentParser(__doc__)
    parser.add_argument("--model", required=True,
                        help="Model to evaluate: a .keras file, a SavedModel folder, a .tflite or a .onnx file (required)")
    cli.add_data_args(parser)
    parser.add_argument("--split", default="val", choices=("train", "val", "test"), help="Split to evaluate (default: val)")
    parser.add_argument("--batch_size", type=int, default=4, help="Images per batch; TFLite runs one at a time (default: 4)")
    parser.add_argument("--reference", default=None,
                        help="Another model run on the same images (e.g. the fp32 one for an int8 model); "
                             "reports the share of pixels where both predict the same class (default: none)")
    parser.add_argument("--limit", type=int, default=None, help="Evaluate only the first N images (default: all)")
    parser.add_argument("--examples", type=int, default=4,
                        help="Images drawn in <output stem>_examples.png; 0 for none (default: 4)")
    parser.add_argument("--output", default=None,
                        help="JSON file for the results (default: <model>_<dataset>_<split>_eval.json next to the model)")
    cli.add_debug_flag(parser)
    return parser


def default_output(model, dataset, split):
    """`<model without extension>_<dataset>_<split>_eval.json` beside the model, or beside the
    export folder that holds it (`<export folder>_<model>_...`)."""
    from enet_keras.export.formats import export_folder_of

    model = os.path.normpath(os.fspath(model))
    stem = model if os.path.isdir(model) else os.path.splitext(model)[0]
    export_dir = export_folder_of(model)
    if export_dir is not None:
        inside = os.path.relpath(os.path.realpath(stem), export_dir).replace(os.sep, "_")
        stem = f"{export_dir}_{inside}" if inside != "." else export_dir
    return f"{stem}_{dataset}_{split}_eval.json"


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, least in (("batch_size", 1), ("limit", 1), ("examples", 0)):
        value = getattr(args, flag)
        if value is not None and value < least:
            parser.error(f"--{flag} must be >= {least}. Received: {value}")
    from enet_keras import evaluation, visualize
    from enet_keras.files import atomic_write_bytes, atomic_write_json, check_writable, resolve_output

    output = resolve_output(args.output, "--output") if args.output is not None \
        else default_output(args.model, args.dataset, args.split)
    check_writable(output, "--output")
    source = cli.get_source(args, args.split)
    results = evaluation.evaluate(args.model, source, batch_size=args.batch_size, limit=args.limit,
                                  reference=args.reference, examples=args.examples)
    print(evaluation.format_results(results))

    stem = os.path.splitext(output)[0]
    written = [output, f"{stem}_confusion.png"]
    visualize.plot_confusion_matrix(
        results["confusion_matrix"], results["class_names"], written[1],
        title=f"{os.path.basename(os.path.normpath(args.model))} on {args.dataset} {args.split}",
    )
    examples = results.pop("examples", None)
    if examples:
        written.append(f"{stem}_examples.png")
        panel = visualize.examples_grid(examples, source.palette, source.class_names)
        atomic_write_bytes(written[2], visualize.png_bytes(panel))
    results["config"] = vars(args)
    atomic_write_json(output, evaluation.json_ready(results))
    print("Wrote " + ", ".join(written))
    return results


if __name__ == "__main__":
    cli.run(main)
