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

On the command line a wrong input (a missing or broken file, a flag out of range) ends the run
with one line `error: ...` on stderr and exit status 2; `--debug` shows the traceback instead.
"""

import argparse
import ctypes
import errno
import json
import numbers
import os
import platform
import secrets
import statistics
import sys
import time

import numpy as np
from PIL import Image
from ai_edge_litert.interpreter import Interpreter

RESIZE_MODES = ("resize", "pad")
# A TFLite model is a FlatBuffer whose file identifier (bytes 4-8) is "TFL3"; LiteRT's verifier
# checks it too, so checking it first only gives a clearer message.
TFLITE_IDENTIFIER = b"TFL3"
# Exceptions that a wrong input raises (missing or unreadable files, bad values); the command line
# turns them into one line on stderr instead of a traceback.
USER_ERRORS = (OSError, ValueError)
# Linux x86-64: arch_prctl's syscall number and the request that asks to use AMX tile data
# (asm/prctl.h), seccomp's syscall number and its constants (linux/seccomp.h, linux/filter.h).
_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM = 158, 0x1023
_SYS_SECCOMP, _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC = 317, 1, 1
_AUDIT_ARCH_X86_64 = 0xC000003E
_PR_SET_NO_NEW_PRIVS = 38


def disable_amx():
    """Keeps XNNPACK's int8 kernels off Intel AMX for the rest of this process.

    On CPUs with AMX (Intel Xeon Sapphire Rapids and later) XNNPACK runs int8 convolutions with
    AMX tile kernels, which are slower for ENet's narrow layers than its AVX-512 VNNI kernels:
    on a 2-core Xeon, int8 ENet(19) at 360x640 takes 51 ms with AMX and 27.5 ms without
    (fp32: 35 ms either way; docs/benchmarks.md). Linux lets a process use AMX only once it has
    asked (`arch_prctl(ARCH_REQ_XCOMP_PERM)`); this installs a seccomp filter, on every thread,
    that refuses that request, so XNNPACK falls back to VNNI. fp32 and fp16 models do not use
    AMX in XNNPACK and run as before.

    Call it before the first `Segmenter` (or LiteRT interpreter) of the process: XNNPACK reads
    the CPU's features once. It cannot be undone, and it holds for the threads and child
    processes started later, including other libraries that have not asked for AMX yet
    (oneDNN in TensorFlow or PyTorch). That is why it is a choice (`--no_amx`), not the default.

    Returns:
        True if the filter was installed; False on anything but Linux on x86-64, which has no
        AMX to turn off.

    Raises:
        OSError: if the kernel refuses the filter (e.g. a kernel built without seccomp).

    Example:

    >>> disable_amx()                 # first, before any model is loaded
    True
    >>> segmenter = Segmenter("enet_int8.tflite", num_threads=2)
    """
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return False

    class Instruction(ctypes.Structure):  # struct sock_filter
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]

    class Program(ctypes.Structure):  # struct sock_fprog
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Instruction))]

    load, jump_if_equal, give = 0x20, 0x15, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_RET|K
    allow, refuse = 0x7FFF0000, 0x00050000 | errno.EPERM  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO
    instructions = [
        Instruction(load, 0, 0, 4),  # seccomp_data.arch
        Instruction(jump_if_equal, 0, 5, _AUDIT_ARCH_X86_64),
        Instruction(load, 0, 0, 0),  # seccomp_data.nr
        Instruction(jump_if_equal, 0, 3, _SYS_ARCH_PRCTL),
        Instruction(load, 0, 0, 16),  # the low 32 bits of args[0]: the request
        Instruction(jump_if_equal, 0, 1, _ARCH_REQ_XCOMP_PERM),
        Instruction(give, 0, 0, refuse),
        Instruction(give, 0, 0, allow),
    ]
    program = Program(len(instructions), (Instruction * len(instructions))(*instructions))
    libc = ctypes.CDLL(None, use_errno=True)
    # An unprivileged process may install a filter only once it cannot gain privileges (setuid).
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.syscall(
        _SYS_SECCOMP, _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(program)
    ) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"cannot keep XNNPACK off AMX: the kernel refused the seccomp filter ({os.strerror(code)})")
    return True


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
        try:
            self.interpreter = Interpreter(model_path=model_path, num_threads=num_threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"{model_path}: LiteRT cannot load this .tflite model: {_one_line(error)}") from error
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


def _one_line(error):
    """An exception's message on one line (LiteRT's messages can span several)."""
    return " ".join(str(error).split()) or type(error).__name__


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


def _check_palette(palette, num_classes, source="palette"):
    """Checks a palette and returns it as a list of (r, g, b) int tuples.

    Args:
        palette: list of (r, g, b) per class, or None for `default_palette(num_classes)`.
        num_classes: int. The least number of colours needed.
        source: str. What to call the palette in messages (a file and flag on the command line).
            Defaults to `"palette"`.

    Raises:
        ValueError: if `palette` is not a list of [r, g, b] with whole numbers in [0, 255], or
            has fewer than `num_classes` colours.
    """
    if palette is None:
        return default_palette(num_classes)
    expected = "expected a list of [r, g, b] per class with whole numbers in [0, 255]"
    if isinstance(palette, (str, bytes, dict)) or not isinstance(palette, (list, tuple, np.ndarray)):
        raise ValueError(f"{source}: {expected}. Received: a {type(palette).__name__}")
    colors = []
    for index, color in enumerate(palette):
        if not (
            isinstance(color, (list, tuple, np.ndarray))
            and len(color) == 3
            and all(_is_channel(v) for v in color)
        ):
            raise ValueError(f"{source}: entry {index} is not [r, g, b]; {expected}. Received: {color!r}")
        colors.append(tuple(int(v) for v in color))
    if len(colors) < num_classes:
        raise ValueError(
            f"{source} has {len(colors)} colour(s) but the model has {num_classes} classes; expected "
            f"at least {num_classes} [r, g, b] entries"
        )
    return colors


def _is_channel(value):
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and float(value).is_integer()
        and 0 <= value <= 255
    )


def load_palette(path, num_classes=None):
    """Reads a palette JSON file: a list of [r, g, b] per class, as `tools/export.py` writes.

    Args:
        path: str. The JSON file.
        num_classes: int or None. The model's classes; the palette needs at least as many
            colours. None skips that check (`Segmenter.overlay` makes it). Defaults to None.

    Returns:
        A list of (r, g, b) int tuples.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file is not JSON, not a list of [r, g, b] in [0, 255], or too short.
    """
    path = os.fspath(path)
    source = f"{path} (--palette)"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No palette file at {path} (--palette); expected a JSON list of [r, g, b] per class")
    try:
        with open(path, encoding="utf-8") as f:
            palette = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{source} is not valid JSON ({error}); expected a list of [r, g, b] per class") from error
    return _check_palette(palette, num_classes or 0, source)


def load_image(path, convert_rgb=False):
    """Reads an image file as an RGB PIL image.

    Args:
        path: str.
        convert_rgb: bool. Convert greyscale, palette or RGBA images to RGB instead of raising.
            Defaults to False.

    Raises:
        FileNotFoundError: if `path` does not exist or is a folder.
        ValueError: if the file is not an image Pillow can read (not an image, truncated), or
            the image is not RGB and `convert_rgb` is False.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No image at {path}" + (": it is a folder" if os.path.isdir(path) else ""))
    try:
        with Image.open(path) as image:
            if image.mode != "RGB" and not convert_rgb:
                raise ValueError(
                    f"{path} is a {image.mode!r} image, not RGB; pass --convert_rgb to convert it "
                    "(convert_rgb=True)"
                )
            return image.convert("RGB")  # decodes the pixels: a truncated file fails here
    except (OSError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        # Pillow raises UnidentifiedImageError (an OSError) for a file that is not an image,
        # OSError or SyntaxError for a truncated or corrupt one.
        raise ValueError(
            f"{path} is not a readable image ({_one_line(error)}); expected an RGB PNG or JPEG"
        ) from error


def save_png(image, path):
    """Saves a PIL image as PNG, whole or not at all.

    The PNG is written to a temporary file in the same folder, flushed to disk, then renamed over
    `path`, so `path` never holds half a file. The file gets the usual mode (0o666 less the umask),
    as `open(path, "wb")` would give it.

    Args:
        image: PIL image.
        path: str. Where to write; its folder must exist.

    Returns:
        `path`.

    Raises:
        FileNotFoundError: if the folder of `path` does not exist.
        IsADirectoryError: if `path` is a folder.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Cannot write {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"Cannot write {path}: it is a folder; expected a file name")
    tmp, fd = _create_temporary(folder, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _create_temporary(folder, name):
    """Creates a new hidden file beside `name` and returns (path, descriptor).

    Not `tempfile.mkstemp`: that creates files of mode 0o600, which the rename would keep; `os.open`
    with mode 0o666 lets the umask decide, as for any new file.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"Cannot create a temporary file for {name} in {folder}")


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
    parser = _Parser(description="Segment an image, or benchmark, with an ENet .tflite (LiteRT only).")
    parser.add_argument("model", help="The .tflite model. (default: required)")
    parser.add_argument("image", nargs="?", help="An RGB image to segment. (default: none; needed unless --benchmark)")
    parser.add_argument("--output", help="Overlay PNG to write; its folder must exist. (default: <image name>_overlay.png beside the image)")
    parser.add_argument("--class_map", help="Also write the class ids as a greyscale PNG here. (default: not written)")
    parser.add_argument("--palette", help="JSON file with a list of [r, g, b] per class. (default: the PASCAL VOC colour map)")
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
        palette = _check_palette(palette, segmenter.num_classes, f"{args.palette} (--palette)")
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
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
