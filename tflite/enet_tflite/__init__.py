"""Run an exported ENet `.tflite` with only numpy, Pillow and ai-edge-litert (no TensorFlow).

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

The command line is `python -m enet_tflite MODEL IMAGE` (`enet_tflite/__main__.py`).
"""

from enet_tflite.amx import disable_amx
from enet_tflite.files import atomic_file, load_image, save_png
from enet_tflite.palettes import check_palette, default_palette, load_palette, parse_palette, read_palette
from enet_tflite.segmenter import RESIZE_MODES, Segmenter

__all__ = [
    "Segmenter", "RESIZE_MODES", "default_palette", "check_palette", "parse_palette", "read_palette",
    "load_palette", "load_image", "save_png", "atomic_file", "disable_amx", "main", "cli",
]


def main(argv=None):
    """The command line's `main` (see `enet_tflite.__main__`)."""
    from enet_tflite.__main__ import main as run

    return run(argv)


def cli(argv=None):
    """The command line, with a wrong input reported as one line (see `enet_tflite.__main__`)."""
    from enet_tflite.__main__ import cli as run

    return run(argv)
