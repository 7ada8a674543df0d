"""Segment an image, or benchmark, with an ENet `.tflite` and LiteRT alone:

    python -m enet_tflite enet_fp32.tflite street.png --output street_overlay.png
    python -m enet_tflite enet_int8.tflite --benchmark --runs 20 --threads 2

(from the `tflite/` folder, or anywhere once enet_keras is installed). A wrong input (a missing
or broken file, a flag out of range) ends the run with one line `error: ...` on stderr and exit
status 2; `--debug` shows the traceback instead.
"""

import argparse
import os
import sys

import numpy as np
from PIL import Image

from enet_tflite.amx import disable_amx
from enet_tflite.files import load_image, one_line, save_png
from enet_tflite.palettes import check_palette, load_palette
from enet_tflite.segmenter import RESIZE_MODES, Segmenter

# Exceptions that a wrong input raises (missing or unreadable files, bad values); the command line
# turns them into one line on stderr instead of a traceback.
USER_ERRORS = (OSError, ValueError)


def format_table(rows):
    """A plain-text table from a list of dicts with the same keys."""
    keys = list(rows[0])
    cells = [[str(k) for k in keys]] + [[_cell(r[k]) for k in keys] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(keys))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value):
    return f"{value:.2f}" if isinstance(value, float) else str(value)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr like every other error (exit status 2)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def _parser():
    parser = _Parser(prog="python -m enet_tflite",
                     description="Segment an image, or benchmark, with an ENet .tflite (LiteRT only).")
    parser.add_argument("model", help="The .tflite model. (default: required)")
    parser.add_argument("image", nargs="?", help="An RGB image to segment. (default: none; needed unless --benchmark)")
    parser.add_argument("--output", help="Overlay PNG to write; its folder must exist. (default: <image name>_overlay.png beside the image)")
    parser.add_argument("--class_map", help="Also write the class ids as a greyscale PNG here. (default: not written)")
    parser.add_argument("--palette", help="Palette file: JSON list of [r, g, b] per class, or text lines r g b [name]. (default: the PASCAL VOC colour map)")
    parser.add_argument("--alpha", type=float, default=0.5, help="Weight of the class colours in the overlay, in [0, 1]. (default: 0.5)")
    parser.add_argument("--resize_mode", choices=RESIZE_MODES, default="resize",
                        help="Fit the image to the model by bilinear resizing or by zero padding. (default: resize)")
    parser.add_argument("--convert_rgb", action="store_true",
                        help="Convert greyscale, palette or RGBA images to RGB instead of failing. (default: off)")
    parser.add_argument("--threads", type=int, default=None, help="LiteRT CPU threads, >= 1. (default: LiteRT's default)")
    parser.add_argument("--no_amx", action="store_true",
                        help="Keep XNNPACK off Intel AMX (disable_amx): int8 runs faster on Sapphire Rapids "
                             "and later. (default: off)")
    parser.add_argument("--benchmark", action="store_true", help="Time the model instead of segmenting. (default: off)")
    parser.add_argument("--runs", type=int, default=20, help="Timed runs for --benchmark, >= 1. (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed runs before timing, >= 0. (default: 3)")
    parser.add_argument("--debug", action="store_true",
                        help="On an error, show the traceback instead of one line. (default: off)")
    return parser


def _check_args(args):
    """Checks the flags before any file is read, naming the flag at fault."""
    if not 0 <= args.alpha <= 1:
        raise ValueError(f"--alpha must be in [0, 1]. Received: --alpha {args.alpha}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1 (or left out for LiteRT's default). Received: --threads {args.threads}")
    if args.runs < 1:
        raise ValueError(f"--runs must be >= 1. Received: --runs {args.runs}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0. Received: --warmup {args.warmup}")
    if args.benchmark:
        return
    if not args.image:
        raise ValueError("expected an image to segment, or --benchmark. Received: neither")
    for flag, path in (("--output", args.output), ("--class_map", args.class_map)):
        if path is None:
            continue
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{flag} {path}: the folder {folder} does not exist; create it first")
        if os.path.isdir(path):
            raise ValueError(f"{flag} {path} is a folder; expected the name of a PNG file to write")


def main(argv=None):
    """Segments an image or benchmarks a model; see `--help`.

    Raises the errors of `Segmenter`, `load_image`, `load_palette` and `save_png` (and
    `ValueError` for a flag out of range); `cli` turns them into one line on stderr.

    Returns:
        The class map, or the benchmark's result with `--benchmark`.
    """
    args = _parser().parse_args(argv)
    return _run(args)


def _run(args):
    # Everything that can be checked without the model is checked first: loading it makes LiteRT
    # print an INFO line on stderr, which would come before our one-line error.
    _check_args(args)
    if not args.benchmark:
        image = load_image(args.image, args.convert_rgb)
        palette = load_palette(args.palette) if args.palette else None
    if args.no_amx:
        disable_amx()
    segmenter = Segmenter(args.model, num_threads=args.threads)
    if args.benchmark:
        result = segmenter.benchmark(args.runs, args.warmup)
        height, width = segmenter.size
        row = {
            "model": os.path.basename(args.model),
            "size_MB": os.path.getsize(args.model) / 1e6,
            "input": f"1x{height}x{width}x3 {segmenter.input_dtype}",
            "threads": args.threads if args.threads else "default",
            "amx": "off" if args.no_amx else "default",
            "runs": args.runs,
            "median_ms": result["median_ms"],
            "p90_ms": result["p90_ms"],
        }
        print(format_table([row]))
        return result
    if palette is not None:
        palette = check_palette(palette, segmenter.num_classes, f"{args.palette} (--palette)")
    class_map = segmenter.predict(image, args.resize_mode)
    output = args.output or os.path.splitext(args.image)[0] + "_overlay.png"
    save_png(segmenter.overlay(image, class_map, palette, args.alpha), output)
    written = [output]
    if args.class_map:
        save_png(Image.fromarray(class_map.astype(np.uint8), "L"), args.class_map)
        written.append(args.class_map)
    present = np.unique(class_map).tolist()
    print(f"Segmented {args.image} ({image.size[0]}x{image.size[1]}) with {args.model} "
          f"({segmenter.input_dtype} input {segmenter.size[0]}x{segmenter.size[1]}); classes present: {present}")
    print("Wrote " + ", ".join(written))
    return class_map


def cli(argv=None):
    """The command line: `main`, with a wrong input reported as one line instead of a traceback.

    Returns:
        The exit status: 0, or 2 after printing `error: ...` to stderr (as argparse does for a
        usage error). With `--debug` the exception propagates with its traceback.
    """
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
