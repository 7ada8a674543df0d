"""Any dataset laid out as `<data_dir>/<split>/images/` and `<data_dir>/<split>/masks/`."""

import os

import tensorflow as tf

from enet_tflite.palettes import default_palette, parse_palette

from enet_keras.data import image_files
from enet_keras.data.source import SPLITS, Source, int_option

_LAYOUT = ("<split>/images/ (RGB .png/.jpg/.jpeg/.bmp) and <split>/masks/ (.png, same base "
           "names)")


def read_palette_file(path):
    """Reads a palette file (JSON or text, `enet_tflite.parse_palette`) through `tf.io.gfile`:
    the colour of class id i on entry i. Colour masks map a colour to a class, so no two classes
    may share one.

    Returns:
        `(palette, class_names)`: a tuple of (r, g, b) tuples, and a tuple of names or None.

    Raises:
        ValueError: naming the file and the bad entry.

    Example:

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "palette.txt")
    >>> _ = open(p, "w").write("0 0 0 background\\n255,0,0 car\\n")
    >>> read_palette_file(p)
    (((0, 0, 0), (255, 0, 0)), ('background', 'car'))
    """
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            text = f.read()
    except (tf.errors.OpError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read palette_file {path}: {e}") from None
    palette, names = parse_palette(text, f"palette_file {path}")
    if len(set(palette)) != len(palette):
        raise ValueError(f"palette_file {path} gives one colour to two classes")
    return tuple(palette), None if names is None else tuple(names)


def folder_source(split, data_dir=None, num_classes=None, ignore_label=255, palette_file=None,
                  class_names=None, invalid_labels="error", check_files=True):
    """A dataset in plain folders: `<data_dir>/<split>/images/` and `<data_dir>/<split>/masks/`.

    Images (RGB or greyscale PNG, JPEG or BMP) and masks (PNG) are paired by base name
    (`images/a.jpg` with `masks/a.png`). A mask holds class ids, either as an 8-bit greyscale
    PNG or as the indices of an indexed ("P") PNG, or it holds colours (RGB PNG) which are mapped
    to ids through `palette_file` (colour of id i on line/entry i).

    Args:
        split: str. "train", "val" or "test".
        data_dir: str. The dataset folder (`--data_dir`).
        num_classes: int or None. Number of classes. Defaults to None: the number of colours in
            `palette_file`, which is then required.
        ignore_label: int. Id of ignored pixels, in `[num_classes, 255]`. With a palette, its
            colour may sit at entry `ignore_label`. Defaults to 255.
        palette_file: str or None. JSON or text palette (see `read_palette_file`); needed for
            colour masks, else used for drawing. Defaults to None.
        class_names: sequence of str or None. Defaults to None: names from the palette file, else
            "class_0", "class_1", ...
        invalid_labels: str. "error" raises on ids outside `[0, num_classes)` other than
            `ignore_label` (or colours not in the palette), naming the file; "ignore" maps them
            to `ignore_label`. Defaults to "error".
        check_files: bool. Check every file's header and end at once (see `files`). Defaults
            to True.

    Returns:
        A `Source`.

    Raises:
        ValueError: on a bad split or option, a missing or empty folder, or files that are
            unpaired, unreadable, truncated or of different sizes (naming them).

    Example:

    >>> src = folder_source("train", "/data/my_dataset", num_classes=5)  # doctest: +SKIP
    """
    if split not in SPLITS:
        raise ValueError(f"folder split must be one of {SPLITS}. Received: split={split!r}")
    image_files.check_invalid_labels(invalid_labels)
    palette = names = None
    if palette_file is not None:
        palette, names = read_palette_file(os.fspath(palette_file))
    if num_classes is None:
        if palette is None:
            raise ValueError("the 'folder' source needs num_classes= (or a palette_file= with "
                             "one colour per class)")
        # A palette may list the ignored colour last, at entry ignore_label (CamVid's void).
        num_classes = min(len(palette), int_option("folder", "ignore_label", ignore_label))
    num_classes = int_option("folder", "num_classes", num_classes, least=1)
    ignore_label = int_option("folder", "ignore_label", ignore_label)
    if palette is not None and len(palette) < num_classes:
        raise ValueError(f"palette_file {palette_file} has {len(palette)} colours but "
                         f"num_classes={num_classes}")
    if class_names is None:
        class_names = names[:num_classes] if names else tuple(f"class_{i}" for i in range(num_classes))
    data_dir = image_files.require_data_dir(data_dir, "folder", _LAYOUT)
    image_dir = os.path.join(data_dir, split, "images")
    label_dir = os.path.join(data_dir, split, "masks")
    images = image_files.list_files(image_dir, image_files.DECODABLE_EXTENSIONS, "image")
    labels = image_files.list_files(label_dir, (".png",), "mask")
    pairs = image_files.pair_files(images, labels, image_dir, label_dir, lambda k: k + ".png")
    kinds = dict(image_files.ID_MODES, **(image_files.COLOR_MODES if palette is not None else {}))
    if check_files:
        kind = image_files.check_pairs(pairs, kinds)
    else:
        kind = image_files.label_kind_of(pairs[0][1], kinds)

    def make_dataset(shuffle_seed):
        return image_files.pairs_dataset(pairs, kind, num_classes, ignore_label, invalid_labels,
                                   shuffle_seed, palette=palette)

    shown = palette[:num_classes] if palette is not None else default_palette(num_classes)
    return Source(
        name="folder", split=split, num_classes=num_classes, ignore_label=int(ignore_label),
        class_names=tuple(class_names), palette=tuple(shown), num_examples=len(pairs),
        make_dataset=make_dataset, data_dir=data_dir,
        options={"num_classes": num_classes, "ignore_label": int(ignore_label),
                 "palette_file": None if palette_file is None else os.fspath(palette_file),
                 "invalid_labels": invalid_labels},
    )
