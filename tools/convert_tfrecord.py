"""Converts dataset splits (any `enet_keras.data` source) to PNG-encoded TFRecord shards, local
or on any `tf.io.gfile` path such as gs://. Train on them with `--dataset tfrecord`.

Writes into --output_dir: <split>-NNNNN-of-NNNNN.tfrecord shards and metadata.json (classes,
palette, counts and the resolved configuration).

Example:
    python tools/convert_tfrecord.py --dataset camvid --data_dir ../shared/data/camvid \\
        --splits train val --output_dir data/camvid_tfrecord --num_shards 4
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads; 0 shows its C++ log lines

from enet_keras import cli


def build_parser():
    """The argument parser of the converter."""
    p = cli.ArgumentParser(__doc__)
    cli.add_data_args(p, default=None, needed_for="every conversion")
    p.add_argument("--splits", nargs="+", default=["train", "val"],
                   choices=["train", "val", "test"], help="Splits to convert (default: train val)")
    p.add_argument("--output_dir", required=True, help="Output folder, local or gs:// (default: none, required)")
    p.add_argument("--num_shards", type=int, default=4, help="Shards per split (default: 4)")
    p.add_argument("--no_progress", action="store_true", help="Do not show a progress bar (default: shown)")
    cli.add_debug_flag(p)
    return p


def main(argv=None):
    """Runs the converter; returns the written splits."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dataset is None:
        parser.error("--dataset is required: the data source to convert")
    if args.num_shards < 1:
        parser.error(f"--num_shards must be >= 1. Received: {args.num_shards}")
    from enet_keras import data

    options = dict(args.dataset_option)
    config = {"source": args.dataset, "data_dir": args.data_dir, "splits": args.splits,
              "out_dir": args.output_dir, "num_shards": args.num_shards, "options": options}
    results = []
    for split in args.splits:
        source = cli.get_source(args, split)
        print(f"{args.dataset}/{split}: {source.num_examples} examples -> {args.output_dir}")
        results.append(data.write_tfrecords(source, args.output_dir, args.num_shards,
                                            progress=not args.no_progress, config=config))
    for r in results:
        print(f"wrote {r['num_examples']} {r['split']} examples in {len(r['files'])} shard(s)")
    if results:
        print(f"metadata and resolved configuration: {results[-1]['metadata']}")
    return results


if __name__ == "__main__":
    cli.run(main)
