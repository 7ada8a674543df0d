"""Converts a dataset split (any `enet_keras.data` source) to PNG-encoded TFRecord shards.

Example:

    python tools/convert_tfrecord.py --source camvid --data_dir /data/camvid \\
        --splits train val --out_dir /data/camvid_tfrecord --num_shards 4

Read them back with `enet_keras.data.get_source("tfrecord", "train", data_dir=out_dir)`.
"""

import argparse
import sys

from enet_keras import data
from enet_keras.cli import key_value


def build_parser():
    """The argument parser of the converter."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", required=True, choices=data.SOURCE_NAMES,
                   help="Data source to convert (default: none, required).")
    p.add_argument("--data_dir", default=None,
                   help="Folder of the source dataset (default: None; not needed for synthetic).")
    p.add_argument("--splits", nargs="+", default=["train", "val"],
                   choices=["train", "val", "test"], help="Splits to convert (default: train val).")
    p.add_argument("--out_dir", required=True,
                   help="Output folder, local or gs:// (default: none, required).")
    p.add_argument("--num_shards", type=int, default=4,
                   help="Shards per split (default: 4).")
    p.add_argument("--dataset_option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="Source option, repeatable, value parsed as JSON if it can be, e.g. "
                        "--dataset_option num_examples=20 (default: none).")
    p.add_argument("--no_progress", action="store_true",
                   help="Do not show a progress bar (default: False).")
    return p


def main(argv=None):
    """Runs the converter; returns 0 on success."""
    args = build_parser().parse_args(argv)
    options = dict(args.dataset_option)
    config = {"source": args.source, "data_dir": args.data_dir, "splits": args.splits,
              "out_dir": args.out_dir, "num_shards": args.num_shards, "options": options}
    results = []
    for split in args.splits:
        source = data.get_source(args.source, split, data_dir=args.data_dir, **options)
        print(f"{args.source}/{split}: {source.num_examples} examples -> {args.out_dir}")
        results.append(data.write_tfrecords(source, args.out_dir, args.num_shards,
                                            progress=not args.no_progress, config=config))
    for r in results:
        print(f"wrote {r['num_examples']} {r['split']} examples in {len(r['files'])} shard(s)")
    if results:
        print(f"metadata and resolved configuration: {results[-1]['metadata']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
