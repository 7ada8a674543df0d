"""Run an exported ENet `.tflite` with only numpy, Pillow and ai-edge-litert (no TensorFlow).

A module and a command line:

    python tflite/enet_tflite.py enet_fp32.tflite street.png --output street_overlay.png
    python tflite/enet_tflite.py enet_int8.tflite --benchmark --runs 20 --threads 2

Models come from `enet_keras.export.tflite` (or `tools/export.py`): fp32 and fp16 models take
float32 images of raw pixels in [0, 255], int8 models take uint8 pixels; all have a fixed input
of shape (1, H, W, 3) and return per-pixel logits (1, H, W, num_classes). An image of another
size is resized to the model's size (or padded, with `resize_mode="pad"`) and the class map is
brought back to the image's size.

Example:

    >>> from enet_tflite import Segmenter
    >>> segmenter = Segmenter("enet_int8.tflite", num_threads=2)
    >>> class_map = segmenter.predict(image)          # (H, W) uint8 class ids
    >>> segmenter.overlay(image, class_map).save("overlay.png")
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image
from ai_edge_litert.interpreter import Interpreter

RESIZE_MODES = ("resize", "pad")


def default_palette(num_classes):
    """A distinct colour per class id: the PASCAL VOC colour map (bits of the id spread over r, g, b).

    Args:
        num_classes: int.

    Returns:
        A list of `num_classes` (r, g, b) tuples.
    """
    palette = []
    for index in range(num_classes):
        r = g = b = 0
        value = index
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette.append((r, g, b))
    return palette


class Segmenter:
    """An ENet `.tflite` model with its pre- and post-processing.

    Args:
        model_path: str. The `.tflite` file.
        num_threads: int or None. CPU threads for LiteRT; None keeps LiteRT's default.
            Defaults to None.

    Raises:
        FileNotFoundError: if `model_path` does not exist.
        ValueError: if the model is not an image segmenter with input (1, H, W, 3) and output
            (1, H', W', num_classes).
    """

    def __init__(self, model_path, num_threads=None):
        model_path = os.fspath(model_path)
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"No TFLite model at {model_path}")
        self.model_path = model_path
        self.interpreter = Interpreter(model_path=model_path, num_threads=num_threads)
        self.interpreter.allocate_tensors()
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{model_path}: expected one input and one output. Received: {len(inputs)} inputs, {len(outputs)} outputs")
        self._input, self._output = inputs[0], outputs[0]
        shape, out_shape = tuple(int(d) for d in self._input["shape"]), tuple(int(d) for d in self._output["shape"])
        if len(shape) != 4 or shape[0] != 1 or shape[-1] != 3 or len(out_shape) != 4:
            raise ValueError(
                f"{model_path}: expected an input of shape (1, H, W, 3) and an output (1, H, W, classes). "
                f"Received: input {shape}, output {out_shape}"
            )
        self.input_shape = shape
        self.input_dtype = np.dtype(self._input["dtype"])
        self.input_quantization = tuple(self._input["quantization"])  # (scale, zero_point)
        self.num_classes = out_shape[-1]
        self.num_threads = num_threads

    @property
    def size(self):
        """The model's input (height, width)."""
        return self.input_shape[1], self.input_shape[2]

    def _pixels(self, image):
        """Checks an image and returns it as an (H, W, 3) array of raw pixels (uint8 or float32)."""
        if isinstance(image, Image.Image):
            if image.mode != "RGB":
                raise ValueError(
                    f"Expected an RGB image. Received: a PIL image of mode {image.mode!r} and size "
                    f"{image.size}; convert it with image.convert('RGB') (--convert_rgb on the command line)"
                )
            image = np.asarray(image)
        image = np.asarray(image)
        if image.ndim == 4 and image.shape[0] == 1:
            image = image[0]
        if image.dtype.kind not in "uif":
            raise ValueError(f"Expected an image of numbers (uint8 pixels). Received: dtype {image.dtype}")
        if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] != 3):
            channels = 1 if image.ndim == 2 else image.shape[-1]
            hint = {1: " (a greyscale image?)", 4: " (RGBA? drop the alpha channel with image[..., :3])"}.get(channels, "")
            raise ValueError(
                f"Expected an RGB image of shape (height, width, 3). Received: shape {image.shape} with "
                f"{channels} channel(s){hint}"
            )
        if image.ndim != 3:
            raise ValueError(
                f"Expected one image of shape (height, width, 3) or (1, height, width, 3); the model "
                f"runs batches of 1. Received: shape {image.shape}"
            )
        if image.size == 0:
            raise ValueError(f"Expected a non-empty image. Received: shape {image.shape}")
        if image.dtype == np.uint8:
            return image
        low, high = float(image.min()), float(image.max())
        if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > 255:
            raise ValueError(
                f"Expected raw pixels in [0, 255]. Received: dtype {image.dtype} with values in "
                f"[{low}, {high}]"
            )
        if self.input_dtype != np.float32 and image.dtype.kind == "f" and not np.all(image == np.round(image)):
            raise ValueError(
                f"{self.model_path} takes {self.input_dtype} pixels (an integer model); it cannot take "
                f"fractional values. Received: dtype {image.dtype} with values in [{low}, {high}] that are "
                f"not whole numbers (scaled to [0, 1]? pass uint8 pixels in [0, 255])"
            )
        return image.astype(np.uint8) if self.input_dtype != np.float32 else image.astype(np.float32)

    def preprocess(self, image, resize_mode="resize"):
        """Turns an RGB image into the model's input tensor.

        Args:
            image: PIL RGB image, or array (H, W, 3) / (1, H, W, 3) of raw pixels in [0, 255]
                (uint8, or integers or floats that are whole numbers for an integer model).
            resize_mode: str. `"resize"` (bilinear, to the model's size) or `"pad"` (zeros at
                the bottom and right; the image must not be larger than the model's input).
                Defaults to `"resize"`.

        Returns:
            The input batch (1, H, W, 3) in the model's dtype.

        Raises:
            ValueError: for a wrong dtype, shape, channel count or value range, naming what was
                received and what was expected.
        """
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}. Received: {resize_mode!r}")
        pixels = self._pixels(image)
        height, width = self.size
        if pixels.shape[:2] != (height, width):
            if resize_mode == "resize":
                pixels = _resize(pixels, height, width)
            else:
                if pixels.shape[0] > height or pixels.shape[1] > width:
                    raise ValueError(
                        f"resize_mode='pad' needs an image no larger than the model's input {height}x{width}. "
                        f"Received: shape {pixels.shape}"
                    )
                pixels = np.pad(pixels, [(0, height - pixels.shape[0]), (0, width - pixels.shape[1]), (0, 0)])
        return self._quantize(pixels)[None]

    def _quantize(self, pixels):
        dtype = self.input_dtype
        if dtype == np.float32:
            return pixels.astype(np.float32)
        scale, zero_point = self.input_quantization
        if scale == 0:  # not quantized: an integer input taking raw pixels
            scale, zero_point = 1.0, 0
        info = np.iinfo(dtype)
        quantized = np.round(pixels.astype(np.float32) / scale) + zero_point
        return np.clip(quantized, info.min, info.max).astype(dtype)

    def run(self, batch):
        """Runs the model on a preprocessed batch (1, H, W, 3) of the model's dtype.

        Returns:
            The raw output (1, H, W, num_classes): float32 logits, or int8 for int8 models.
        """
        batch = np.asarray(batch)
        if batch.shape != self.input_shape or batch.dtype != self.input_dtype:
            raise ValueError(
                f"{self.model_path} expects an input of shape {self.input_shape} and dtype "
                f"{self.input_dtype}. Received: shape {batch.shape}, dtype {batch.dtype}; use preprocess()"
            )
        self.interpreter.set_tensor(self._input["index"], batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output["index"])

    def predict(self, image, resize_mode="resize"):
        """Segments one image.

        Args:
            image: as in `preprocess`.
            resize_mode: as in `preprocess`. Defaults to `"resize"`.

        Returns:
            The class map: (H, W) uint8 class ids at the image's own size (argmax of the logits;
            quantized logits keep their order, so no dequantization is needed).
        """
        pixels = self._pixels(image)
        original = pixels.shape[:2]
        output = self.run(self.preprocess(pixels, resize_mode))[0]
        class_map = np.argmax(output, axis=-1).astype(np.uint8 if self.num_classes <= 256 else np.int32)
        if resize_mode == "pad":
            return class_map[: original[0], : original[1]]
        if class_map.shape != original:
            class_map = np.asarray(Image.fromarray(class_map).resize(original[::-1], Image.NEAREST))
        return class_map

    def colorize(self, class_map, palette=None):
        """An RGB PIL image of a class map, one colour per class (default: `default_palette`)."""
        colors = np.asarray(_check_palette(palette, self.num_classes), dtype=np.uint8)
        return Image.fromarray(colors[np.asarray(class_map)], "RGB")

    def overlay(self, image, class_map, palette=None, alpha=0.5):
        """The image with its class colours blended on top.

        Args:
            image: the RGB image segmented (PIL or array).
            class_map: (H, W) class ids, as from `predict`.
            palette: list of (r, g, b) per class, or None for `default_palette`. Defaults to None.
            alpha: float. Weight of the class colours. Defaults to 0.5.

        Returns:
            An RGB PIL image.
        """
        pixels = self._pixels(image)
        rgb = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8), "RGB")
        return Image.blend(rgb, self.colorize(class_map, palette), alpha)

    def benchmark(self, runs=20, warmup=3):
        """Times `invoke()` on a random input after `warmup` runs.

        Returns:
            A dict with `median_ms`, `p90_ms`, `mean_ms`, `min_ms`, `runs`, `threads`.
        """
        if runs < 1 or warmup < 0:
            raise ValueError(f"runs must be >= 1 and warmup >= 0. Received: runs={runs}, warmup={warmup}")
        rng = np.random.default_rng(0)
        batch = self._quantize(rng.integers(0, 256, self.input_shape[1:], dtype=np.uint8))[None]
        self.interpreter.set_tensor(self._input["index"], batch)
        for _ in range(warmup):
            self.interpreter.invoke()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self.interpreter.invoke()
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        return {
            "median_ms": statistics.median(times),
            "p90_ms": times[min(len(times) - 1, int(np.ceil(0.9 * len(times))) - 1)],
            "mean_ms": statistics.fmean(times),
            "min_ms": times[0],
            "runs": runs,
            "threads": self.num_threads,
        }


def _resize(pixels, height, width):
    if pixels.dtype == np.uint8:
        return np.asarray(Image.fromarray(pixels, "RGB").resize((width, height), Image.BILINEAR))
    channels = [
        np.asarray(Image.fromarray(pixels[..., c].astype(np.float32), "F").resize((width, height), Image.BILINEAR))
        for c in range(3)
    ]
    return np.stack(channels, axis=-1)


def _check_palette(palette, num_classes):
    palette = default_palette(num_classes) if palette is None else [tuple(int(v) for v in c) for c in palette]
    if len(palette) < num_classes or any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in palette):
        raise ValueError(
            f"palette must hold at least {num_classes} (r, g, b) colours with values in [0, 255]. "
            f"Received: {len(palette)} entries"
        )
    return palette


def load_image(path, convert_rgb=False):
    """Reads an image file as an RGB PIL image.

    Args:
        path: str.
        convert_rgb: bool. Convert greyscale, palette or RGBA images to RGB instead of raising.
            Defaults to False.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the image is not RGB and `convert_rgb` is False.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No image at {path}")
    with Image.open(path) as image:
        if image.mode != "RGB" and not convert_rgb:
            raise ValueError(
                f"{path} is a {image.mode!r} image, not RGB; pass --convert_rgb to convert it "
                "(convert_rgb=True)"
            )
        return image.convert("RGB")


def save_png(image, path):
    """Saves a PIL image as PNG atomically (temporary file in the same folder, then rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


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


def main(argv=None):
    parser = argparse.ArgumentParser(description="Segment an image, or benchmark, with an ENet .tflite (LiteRT only).")
    parser.add_argument("model", help="The .tflite model. (default: required)")
    parser.add_argument("image", nargs="?", help="An RGB image to segment. (default: none; needed unless --benchmark)")
    parser.add_argument("--output", help="Overlay PNG to write. (default: <image name>_overlay.png beside the image)")
    parser.add_argument("--class_map", help="Also write the class ids as a greyscale PNG here. (default: not written)")
    parser.add_argument("--palette", help="JSON file with a list of [r, g, b] per class. (default: the PASCAL VOC colour map)")
    parser.add_argument("--alpha", type=float, default=0.5, help="Weight of the class colours in the overlay. (default: 0.5)")
    parser.add_argument("--resize_mode", choices=RESIZE_MODES, default="resize",
                        help="Fit the image to the model by bilinear resizing or by zero padding. (default: resize)")
    parser.add_argument("--convert_rgb", action="store_true",
                        help="Convert greyscale, palette or RGBA images to RGB instead of failing. (default: off)")
    parser.add_argument("--threads", type=int, default=None, help="LiteRT CPU threads. (default: LiteRT's default)")
    parser.add_argument("--benchmark", action="store_true", help="Time the model instead of segmenting. (default: off)")
    parser.add_argument("--runs", type=int, default=20, help="Timed runs for --benchmark. (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed runs before timing. (default: 3)")
    args = parser.parse_args(argv)

    segmenter = Segmenter(args.model, num_threads=args.threads)
    if args.benchmark:
        result = segmenter.benchmark(args.runs, args.warmup)
        height, width = segmenter.size
        row = {
            "model": os.path.basename(args.model),
            "size_MB": os.path.getsize(args.model) / 1e6,
            "input": f"1x{height}x{width}x3 {segmenter.input_dtype}",
            "threads": args.threads if args.threads else "default",
            "runs": args.runs,
            "median_ms": result["median_ms"],
            "p90_ms": result["p90_ms"],
        }
        print(format_table([row]))
        return result
    if not args.image:
        parser.error("give an image to segment, or --benchmark")
    palette = None
    if args.palette:
        with open(args.palette) as f:
            palette = json.load(f)
    image = load_image(args.image, args.convert_rgb)
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


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
