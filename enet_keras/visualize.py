"""Drawing segmentations: palettes, colour maps, overlays, side-by-side views with a legend,
and confusion-matrix plots (matplotlib figures drawn with Agg: no display needed)."""

import io
import os

import numpy as np

from enet_tflite.palettes import default_palette, read_palette  # the runtime's: one VOC map, one reader

from enet_keras.files import atomic_write_bytes

PALETTE_NAMES = ("camvid", "cityscapes", "default")


def get_palette(name_or_path, num_classes=None):
    """Colours and class names by palette name or from a file.

    Args:
        name_or_path: str. `"camvid"` (11 classes), `"cityscapes"` (19), `"default"` (the VOC
            colour map, `num_classes` colours named `class 0` ...), or the path of a palette file:
            either a list of [r, g, b], or `{"palette": [[r, g, b], ...], "class_names": [...]}`
            (the `palette.json` that `tools/export.py` writes), or text lines `r g b [name]`
            (`enet_tflite.parse_palette`).
        num_classes: int or None. Number of classes needed; an error if the palette has fewer.
            Required for `"default"`. Defaults to None.

    Returns:
        A tuple `(palette, class_names)`: a list of (r, g, b) and a list of str.

    Raises:
        ValueError: for an unknown name, a malformed file or too few colours.
        FileNotFoundError: for a missing palette file.

    Example:

    >>> palette, names = get_palette("camvid")
    >>> len(palette), names[0]
    (11, 'Sky')
    """
    if name_or_path == "camvid":
        from enet_keras.pretrained import CAMVID_CLASSES, CAMVID_PALETTE

        palette, names = list(CAMVID_PALETTE), list(CAMVID_CLASSES)
    elif name_or_path == "cityscapes":
        from enet_keras.data import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE

        palette, names = list(CITYSCAPES_PALETTE), list(CITYSCAPES_CLASSES)
    elif name_or_path == "default":
        if num_classes is None:
            raise ValueError("The default palette needs num_classes")
        palette, names = default_palette(num_classes), [f"class {i}" for i in range(num_classes)]
    else:
        palette, names = _read_palette_file(name_or_path)
    palette = [tuple(int(v) for v in colour) for colour in palette]
    if num_classes is not None and len(palette) < num_classes:
        raise ValueError(
            f"The palette {name_or_path!r} has {len(palette)} colours but {num_classes} classes need "
            "colouring: use --palette default or a palette file with enough colours"
        )
    return palette, list(names)


def _read_palette_file(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No palette file at {path}: expected one of {PALETTE_NAMES} or the path of a palette file"
        )
    palette, names = read_palette(path)
    return palette, names or [f"class {i}" for i in range(len(palette))]


def colorize(class_ids, palette):
    """Colours class ids with a palette; ids without a colour (e.g. the ignore label) are black.

    Args:
        class_ids: integer array (H, W).
        palette: sequence of (r, g, b).

    Returns:
        uint8 array (H, W, 3).

    Example:

    >>> colorize(np.array([[0, 1, 255]]), [(1, 2, 3), (4, 5, 6)]).tolist()
    [[[1, 2, 3], [4, 5, 6], [0, 0, 0]]]
    """
    class_ids = np.asarray(class_ids).astype(np.int64)
    table = np.zeros((max(256, len(palette), int(class_ids.max(initial=0)) + 1), 3), np.uint8)
    table[: len(palette)] = np.asarray(palette, np.uint8).reshape(-1, 3)
    return table[np.clip(class_ids, 0, len(table) - 1)]


def overlay(image, class_ids, palette, alpha=0.5):
    """Blends the colours of the class ids over an image.

    Args:
        image: uint8 array (H, W, 3).
        class_ids: integer array (H, W).
        palette: sequence of (r, g, b).
        alpha: float in [0, 1]. Opacity of the colours. Defaults to 0.5.

    Returns:
        uint8 array (H, W, 3).

    Raises:
        ValueError: if the image and class ids differ in height and width, or alpha is out of range.
    """
    image = np.asarray(image)
    class_ids = np.asarray(class_ids)
    if image.shape[:2] != class_ids.shape or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"overlay needs an (H, W, 3) image and (H, W) class ids. Received: image {image.shape}, "
            f"class_ids {class_ids.shape}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]. Received: alpha={alpha}")
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colorize(class_ids, palette).astype(np.float32)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def side_by_side(image, overlaid, legend=None):
    """The image and its overlay side by side, with a legend of class colours below.

    Args:
        image: uint8 array (H, W, 3).
        overlaid: uint8 array (H, W, 3), e.g. from `overlay`.
        legend: sequence of (name, (r, g, b)) or None. Defaults to None (no legend).

    Returns:
        A `PIL.Image.Image` (RGB) of width 2W and height H plus the legend's.

    Example:

    >>> img = np.zeros((64, 64, 3), np.uint8)
    >>> side_by_side(img, img, [("road", (128, 64, 128))]).size[0]
    128
    """
    image, overlaid = np.asarray(image, np.uint8), np.asarray(overlaid, np.uint8)
    if image.shape != overlaid.shape:
        raise ValueError(f"image and overlay must have equal shapes. Received: {image.shape}, {overlaid.shape}")
    return grid([[image, overlaid]], legend)


def grid(rows, legend=None, titles=None):
    """Tiles equally sized RGB images in rows, with column titles above and a legend below.

    Args:
        rows: list of lists of uint8 arrays (H, W, 3), all of one shape.
        legend: sequence of (name, (r, g, b)) or None. Defaults to None (no legend).
        titles: sequence of str, one per column, or None. Defaults to None.

    Returns:
        A `PIL.Image.Image` (RGB).

    Example:

    >>> img = np.zeros((32, 48, 3), np.uint8)
    >>> grid([[img, img, img]] * 2, titles=["input", "truth", "prediction"]).size[0]
    144
    """
    from PIL import Image, ImageDraw, ImageFont

    height, width = np.asarray(rows[0][0]).shape[:2]
    columns = max(len(row) for row in rows)
    total_width = columns * width
    legend = list(legend or [])
    font = ImageFont.load_default()
    line, swatch, pad = 14, 10, 4
    # Lay out legend entries left to right, wrapping at the canvas width.
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    positions, x, y = [], pad, pad
    for name, _ in legend:
        entry = swatch + 4 + int(probe.textlength(str(name), font=font)) + 12
        if x + entry > total_width and x > pad:
            x, y = pad, y + line
        positions.append((x, y))
        x += entry
    top = line + pad if titles else 0
    legend_height = (y + line + pad) if legend else 0
    canvas = Image.new("RGB", (total_width, top + len(rows) * height + legend_height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for column, title in enumerate(titles or []):
        draw.text((column * width + pad, pad // 2), str(title), fill=(0, 0, 0), font=font)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            tile = np.asarray(tile, np.uint8)
            if tile.shape != (height, width, 3):
                raise ValueError(f"grid needs ({height}, {width}, 3) images. Received: {tile.shape} at row {r}, column {c}")
            canvas.paste(Image.fromarray(tile), (c * width, top + r * height))
    bottom = top + len(rows) * height
    for (name, colour), (x, y) in zip(legend, positions):
        draw.rectangle([x, bottom + y + 2, x + swatch, bottom + y + 2 + swatch], fill=tuple(colour), outline=(0, 0, 0))
        draw.text((x + swatch + 4, bottom + y), str(name), fill=(0, 0, 0), font=font)
    return canvas


def examples_grid(examples, palette, class_names):
    """Rows of input | ground truth | prediction, with a legend: how a model segments a few
    images of a split. Ignored label pixels are black in the truth column.

    Args:
        examples: list of (image uint8 (H, W, 3), label (H, W), prediction (H, W)).
        palette: sequence of (r, g, b), one per class.
        class_names: sequence of str, one per class.

    Returns:
        A `PIL.Image.Image` (RGB).
    """
    rows = [[image, colorize(label, palette), colorize(prediction, palette)] for image, label, prediction in examples]
    return grid(rows, list(zip(class_names, palette)), titles=["input", "ground truth", "prediction"])


def png_bytes(image):
    """PNG bytes of a PIL image or a uint8 array ((H, W) greyscale or (H, W, 3) RGB)."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image, np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def plot_confusion_matrix(confusion, class_names, path, title=None):
    """Writes a row-normalised confusion matrix (rows: labels, columns: predictions) as a PNG.

    Args:
        confusion: array (C, C) of pixel counts.
        class_names: sequence of C str.
        path: str. The PNG to write (atomically).
        title: str or None. Plot title. Defaults to None.

    Returns:
        The path written.

    Raises:
        ValueError: if the matrix is not (C, C) with C class names.
    """
    # A bare Figure draws with Agg and leaves pyplot's backend (a notebook's) alone.
    from matplotlib.figure import Figure

    confusion = np.asarray(confusion, np.float64)
    if confusion.ndim != 2 or confusion.shape != (len(class_names), len(class_names)):
        raise ValueError(
            f"confusion must be (C, C) with C = {len(class_names)} class names. Received: shape {confusion.shape}"
        )
    rows = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)
    size = max(4.0, 0.45 * len(class_names) + 2.0)
    figure = Figure(figsize=(size + 1.0, size))
    axes = figure.add_subplot()
    shown = axes.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04)
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, labels=class_names, rotation=90)
    axes.set_yticks(ticks, labels=class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("label")
    if len(class_names) <= 20:
        for i in range(len(class_names)):
            for j in range(len(class_names)):
                if normalised[i, j] >= 0.005:
                    axes.text(j, i, f"{normalised[i, j]:.2f}", ha="center", va="center", fontsize=6,
                              color="white" if normalised[i, j] > 0.5 else "black")
    axes.set_title(title or "Confusion matrix (rows normalised)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())
    return os.fspath(path)
