"""Class colours: the PASCAL VOC colour map, and palette files (the one reader the runtime,
`enet_keras.visualize` and the `folder` data source share)."""

import json
import numbers
import os

import numpy as np


def default_palette(num_classes=256):
    """The PASCAL VOC colour map: distinct, deterministic colours for any number of classes
    (the bits of a class id spread over r, g and b).

    Args:
        num_classes: int. Number of colours. Defaults to 256.

    Returns:
        A list of `num_classes` (r, g, b) tuples.

    Example:

    >>> default_palette(3)
    [(0, 0, 0), (128, 0, 0), (0, 128, 0)]
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


def parse_palette(text, source="palette"):
    """Reads the text of a palette file: the colour of class id i on entry i.

    Two formats: JSON, either a list of `[r, g, b]` or `{"palette": [[r, g, b], ...],
    "class_names": [...]}` (the `palette.json` that `tools/export.py` writes); or text, one
    class per line as `r g b` or `r,g,b`, optionally followed by the class name (blank lines
    and `#` comments skipped).

    Args:
        text: str. The file's content.
        source: str. What to call the file in messages. Defaults to `"palette"`.

    Returns:
        `(palette, class_names)`: a list of (r, g, b) int tuples, and a list of names or None.

    Raises:
        ValueError: naming `source` and the bad entry.

    Example:

    >>> parse_palette("0 0 0 background\\n255,0,0 car\\n")
    ([(0, 0, 0), (255, 0, 0)], ['background', 'car'])
    """
    names = None
    if text.lstrip().startswith(("[", "{")):
        try:
            content = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{source} is not valid JSON ({error}); expected a list of [r, g, b] per class") from None
        if isinstance(content, dict):
            names = content.get("class_names")
            content = content.get("palette")
        entries = content if isinstance(content, list) else [content]
    else:
        entries, names = [], []
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                parts = line.replace(",", " ").split(None, 3)
                entries.append(parts[:3])
                names.append(parts[3].strip() if len(parts) > 3 else None)
        names = None if not entries or None in names else names
    palette = check_palette(entries, 0, source)
    if names is not None and len(names) != len(palette):
        raise ValueError(f"{source} has {len(palette)} colours but {len(names)} class_names")
    return palette, None if names is None else [str(n) for n in names]


def read_palette(path):
    """`parse_palette` of a file.

    Raises:
        FileNotFoundError: if `path` is not a file.
        ValueError: for a file that is not a palette, naming it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No palette file at {path}; expected a JSON list of [r, g, b] per class")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not a text palette file ({error})") from None
    return parse_palette(text, path)


def load_palette(path, num_classes=None):
    """The colours of a palette file (see `parse_palette`), as `--palette` takes them.

    Args:
        path: str. The file.
        num_classes: int or None. The model's classes; the palette needs at least as many
            colours. None skips that check (`Segmenter.overlay` makes it). Defaults to None.

    Returns:
        A list of (r, g, b) int tuples.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file is not a palette or has too few colours.
    """
    path = os.fspath(path)
    try:
        palette, _ = read_palette(path)
    except (OSError, ValueError) as error:
        raise type(error)(str(error).replace(path, f"{path} (--palette)", 1)) from None
    return check_palette(palette, num_classes or 0, f"{path} (--palette)")


def check_palette(palette, num_classes, source="palette"):
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
        if isinstance(color, (list, tuple)) and all(isinstance(v, str) for v in color):
            color = [_number(v) for v in color]  # a line of a text palette
        if not (
            isinstance(color, (list, tuple, np.ndarray))
            and len(color) == 3
            and all(_is_channel(v) for v in color)
        ):
            raise ValueError(f"{source}: entry {index} is not [r, g, b]; {expected}. Received: {color!r}")
        colors.append(tuple(int(v) for v in color))
    if not colors:
        raise ValueError(f"{source} holds no colours; {expected}")
    if len(colors) < num_classes:
        raise ValueError(
            f"{source} has {len(colors)} colour(s) but the model has {num_classes} classes; expected "
            f"at least {num_classes} [r, g, b] entries"
        )
    return colors


def _number(text):
    try:
        return int(text)
    except ValueError:
        return text


def _is_channel(value):
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and float(value).is_integer()
        and 0 <= value <= 255
    )
