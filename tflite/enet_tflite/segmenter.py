"""`Segmenter`: an ENet `.tflite` model run with LiteRT, with its pre- and post-processing."""

import numbers
import os
import statistics
import time

import numpy as np
from PIL import Image

from enet_tflite.files import one_line
from enet_tflite.palettes import check_palette

RESIZE_MODES = ("resize", "pad")
# A TFLite model is a FlatBuffer whose file identifier (bytes 4-8) is "TFL3"; LiteRT's verifier
# checks it too, so checking it first only gives a clearer message.
TFLITE_IDENTIFIER = b"TFL3"


class Segmenter:
    """An ENet `.tflite` model with its pre- and post-processing.

    Args:
        model_path: str. The `.tflite` file.
        num_threads: int or None. CPU threads for LiteRT (>= 1); None keeps LiteRT's default.
            Defaults to None.

    Raises:
        FileNotFoundError: if `model_path` does not exist or is a folder.
        ValueError: if `num_threads` is below 1, if the file is empty or not a `.tflite` model
            (a `.keras` zip, random bytes) or LiteRT cannot load it, or if the model is not an
            image segmenter with input (1, H, W, 3) and output (1, H', W', num_classes).
    """

    def __init__(self, model_path, num_threads=None):
        model_path = os.fspath(model_path)
        if num_threads is not None and (
            isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral) or num_threads < 1
        ):
            raise ValueError(f"num_threads must be None or an integer >= 1. Received: num_threads={num_threads!r}")
        _check_model_file(model_path)
        self.model_path = model_path
        from ai_edge_litert.interpreter import Interpreter  # here: palettes and files need no LiteRT

        try:
            self.interpreter = Interpreter(model_path=model_path, num_threads=num_threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"{model_path}: LiteRT cannot load this .tflite model: {one_line(error)}") from error
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
        colors = np.asarray(check_palette(palette, self.num_classes), dtype=np.uint8)
        return Image.fromarray(colors[np.asarray(class_map)], "RGB")

    def overlay(self, image, class_map, palette=None, alpha=0.5):
        """The image with its class colours blended on top.

        Args:
            image: the RGB image segmented (PIL or array).
            class_map: (H, W) class ids, as from `predict`.
            palette: list of (r, g, b) per class, or None for `default_palette`. Defaults to None.
            alpha: float. Weight of the class colours, in [0, 1]. Defaults to 0.5.

        Returns:
            An RGB PIL image.

        Raises:
            ValueError: if `alpha` is outside [0, 1] or the palette is not at least
                `num_classes` (r, g, b) colours in [0, 255].
        """
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1]. Received: alpha={alpha}")
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


def _check_model_file(path):
    """Raises a clear error unless `path` is a file that starts like a TFLite FlatBuffer."""
    if os.path.isdir(path):
        raise FileNotFoundError(f"No TFLite model at {path}: it is a folder; expected a .tflite file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No TFLite model at {path}")
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise ValueError(f"{path} is empty (0 bytes); expected a .tflite model (a TFLite FlatBuffer)")
    if head.startswith(b"PK\x03\x04"):
        raise ValueError(
            f"{path} is a zip archive (a .keras model?), not a .tflite model; export a TFLite "
            "FlatBuffer with tools/export.py"
        )
    if head.startswith(b"\x89HDF"):
        raise ValueError(
            f"{path} is an HDF5 file (an .h5 Keras model?), not a .tflite model; export a TFLite "
            "FlatBuffer with tools/export.py"
        )
    if head[4:8] != TFLITE_IDENTIFIER:
        raise ValueError(
            f"{path} is not a .tflite model: not a TFLite FlatBuffer (expected the identifier "
            f"{TFLITE_IDENTIFIER!r} at bytes 4-8. Received: {head[4:8]!r})"
        )
