"""Image/label file pairs: listing, pairing, eager checks, and decoding in `tf.data`.

Shared by the CamVid, Cityscapes and folder sources. How bad input is reported:

- At `get_source()` time (eager, in Python, naming the files): a missing or empty folder, an
  image without a label or a label without an image, a file that is not an image, a truncated
  PNG (no IEND chunk) or JPEG (no end-of-image marker), a PNG whose chunk checksums are wrong (a
  corrupt body), a JPEG label (lossy: its class ids are wrong along edges), an image and label of
  different sizes, and a label of an unexpected kind (e.g. 16-bit, or colour without a palette).
  Files are read but not decoded: about a millisecond per CamVid file.
- In the `tf.data` map function (tf ops, decoded in parallel): label values outside
  `[0, num_classes)` other than `ignore_label` raise `InvalidArgumentError` whose message holds
  the label file and the bad values (`tf.debugging.Assert`), or become `ignore_label` with
  `invalid_labels="ignore"`. Sizes are checked again there, naming both files.
- Not named: a JPEG whose header and end are fine but whose body is corrupt fails inside
  `tf.io.decode_jpeg` with TensorFlow's own message. Decoding with tf ops is what keeps the
  pipeline fast (it runs in parallel, outside the GIL).
"""

import os

import numpy as np
import tensorflow as tf
from PIL import Image

# What tf.io.decode_image reads (tools/predict.py reads more, through Pillow).
DECODABLE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
INVALID_LABELS = ("error", "ignore")
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_END = b"\xff\xd9"
# PIL mode of a label file -> how its pixels become class ids.
ID_MODES = {"L": "ids", "P": "indexed"}
COLOR_MODES = {"RGB": "colors", "RGBA": "colors"}


def require_data_dir(data_dir, name, layout):
    """Checks that `data_dir` is an existing folder.

    Args:
        data_dir: str or None. The folder given with `data_dir=` / `--data_dir`.
        name: str. The source name, for the message.
        layout: str. What the folder should hold, for the message.

    Returns:
        `data_dir` as a str.

    Raises:
        ValueError: naming `--data_dir` and the path, if it is None or not a folder.
    """
    if data_dir is None:
        raise ValueError(f"Source {name!r} needs data_dir (--data_dir): a folder holding {layout}")
    data_dir = os.fspath(data_dir)
    if not tf.io.gfile.isdir(data_dir):
        raise ValueError(
            f"Source {name!r}: data_dir (--data_dir) {data_dir} does not exist or is not a "
            f"folder; expected a folder holding {layout}"
        )
    return data_dir


def check_invalid_labels(invalid_labels):
    """Raises ValueError unless `invalid_labels` is "error" or "ignore"."""
    if invalid_labels not in INVALID_LABELS:
        raise ValueError(
            f"invalid_labels must be one of {INVALID_LABELS}. Received: "
            f"invalid_labels={invalid_labels!r}"
        )


def list_files(folder, suffixes, what, subfolders=False):
    """The files in `folder` whose names end with one of `suffixes`, by key.

    Args:
        folder: str. The folder to list (local or any `tf.io.gfile` path).
        suffixes: sequence of str. Accepted name endings, compared case-insensitively.
        what: str. What the files are ("image", "label"), for messages.
        subfolders: bool. Whether the files sit one level down (`folder/<city>/<file>`).
            Defaults to False.

    Returns:
        A dict from key (the path relative to `folder` without the suffix) to path, sorted by key.

    Raises:
        ValueError: naming the folder if it is missing or holds no such file, or naming both
            files if two files share a key.
    """
    if not tf.io.gfile.isdir(folder):
        raise ValueError(f"{what} folder {folder} does not exist")
    if subfolders:
        subs = [n.rstrip("/") for n in sorted(tf.io.gfile.listdir(folder))]
        subs = [n for n in subs if tf.io.gfile.isdir(os.path.join(folder, n))]
    else:
        subs = [""]
    found = {}
    for sub in subs:
        for name in sorted(tf.io.gfile.listdir(os.path.join(folder, sub))):
            suffix = next((s for s in suffixes if name.lower().endswith(s.lower())), None)
            if suffix is None or name.startswith("."):
                continue
            key = os.path.join(sub, name[:len(name) - len(suffix)])
            path = os.path.join(folder, sub, name)
            if key in found:
                raise ValueError(f"two {what} files for the same example: {found[key]} and {path}")
            found[key] = path
    if not found:
        where = f"{folder}/*/" if subfolders else f"{folder}/"
        raise ValueError(f"no {what} files (*{', *'.join(suffixes)}) in folder {where}")
    return dict(sorted(found.items()))


def pair_files(images, labels, image_dir, label_dir, label_name=None):
    """Pairs images and labels by key.

    Args:
        images: dict. Key -> image path, from `list_files`.
        labels: dict. Key -> label path, from `list_files`.
        image_dir: str. The image folder, for messages.
        label_dir: str. The label folder, for messages.
        label_name: callable or None. Key -> expected label file name, for messages.

    Returns:
        A list of `(image_path, label_path)` sorted by key.

    Raises:
        ValueError: naming the first files without a partner (and how many there are).
    """
    no_label = [k for k in images if k not in labels]
    no_image = [k for k in labels if k not in images]
    if no_label:
        hint = f" (expected {os.path.join(label_dir, label_name(no_label[0]))})" if label_name else ""
        raise ValueError(
            f"{len(no_label)} image(s) have no label in {label_dir}: "
            f"{', '.join(images[k] for k in no_label[:5])}{hint}"
        )
    if no_image:
        raise ValueError(
            f"{len(no_image)} label(s) have no image in {image_dir}: "
            f"{', '.join(labels[k] for k in no_image[:5])}"
        )
    return [(images[k], labels[k]) for k in images]


def _open(path):
    return open(path, "rb") if "://" not in path else tf.io.gfile.GFile(path, "rb")


def probe_image(path, role):
    """Reads the header and the last bytes of an image file.

    Args:
        path: str. The file.
        role: str. "image" or "label", for messages.

    Returns:
        `(height, width, pil_mode)`.

    Raises:
        ValueError: naming the file if it is not a readable image or is truncated.
    """
    try:
        with _open(path) as f:
            with Image.open(f) as im:
                width, height = im.size
                mode, fmt = im.mode, im.format
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 1024))
            tail = f.read()
    except (OSError, tf.errors.OpError) as e:  # PIL.UnidentifiedImageError is an OSError.
        raise ValueError(f"cannot read {role} file {path}: {e}") from None
    if fmt == "PNG" and not tail.endswith(_PNG_END):
        raise ValueError(f"{role} file {path} is truncated: a PNG file must end with an IEND chunk")
    if fmt == "JPEG" and role == "label":
        raise ValueError(f"label file {path} is a JPEG: its lossy compression changes class ids along "
                         "every edge; labels must be PNG (or another lossless format)")
    if fmt == "JPEG" and _JPEG_END not in tail:
        raise ValueError(f"{role} file {path} is truncated: no JPEG end-of-image marker")
    return height, width, mode


def verify_png(path, role):
    """Reads a whole PNG file and checks every chunk's checksum (no decoding), so a corrupt
    body is found up front with the file named, not as TensorFlow's "Invalid PNG data" an
    epoch later. Other formats are left to the decoder.

    Raises:
        ValueError: naming the file, if a checksum or the chunk structure is wrong.
    """
    try:
        with _open(path) as f, Image.open(f) as im:
            if im.format == "PNG":
                im.verify()
    except (OSError, SyntaxError, tf.errors.OpError) as e:
        raise ValueError(f"{role} file {path} is corrupt: {e}") from None


def check_pairs(pairs, label_kinds):
    """Checks every pair's headers eagerly: readable, complete, same size, same label kind.

    Args:
        pairs: list of `(image_path, label_path)`.
        label_kinds: dict. Accepted PIL modes of label files -> label kind
            ("ids", "indexed" or "colors").

    Returns:
        The label kind shared by all label files.

    Raises:
        ValueError: naming the file(s) at fault.
    """
    kind = first = None
    for image_path, label_path in pairs:
        ih, iw, _ = probe_image(image_path, "image")
        lh, lw, mode = probe_image(label_path, "label")
        verify_png(image_path, "image")
        verify_png(label_path, "label")
        if (ih, iw) != (lh, lw):
            raise ValueError(
                f"image {image_path} is {ih}x{iw} (HxW) but its label {label_path} is {lh}x{lw}"
            )
        if mode not in label_kinds:
            raise ValueError(
                f"label file {label_path} has PIL mode {mode!r}; expected one of "
                f"{sorted(label_kinds)} (8-bit class ids: 'L' greyscale or 'P' indexed"
                + (", or colours mapped through palette_file)" if "RGB" in label_kinds else ")")
            )
        if kind is None:
            kind, first = label_kinds[mode], label_path
        elif label_kinds[mode] != kind:
            raise ValueError(
                f"label file {label_path} holds {label_kinds[mode]} but {first} holds {kind}; "
                f"all labels of a split must be of one kind"
            )
    return kind


def label_kind_of(label_path, label_kinds):
    """The label kind of one file (used when the full check is switched off)."""
    _, _, mode = probe_image(label_path, "label")
    if mode not in label_kinds:
        raise ValueError(
            f"label file {label_path} has PIL mode {mode!r}; expected one of {sorted(label_kinds)}"
        )
    return label_kinds[mode]


def _read_indexed(path):
    path = path.decode() if isinstance(path, bytes) else path
    try:
        with _open(path) as f, Image.open(f) as im:
            return np.asarray(im, dtype=np.uint8)
    except (OSError, tf.errors.OpError) as e:
        raise ValueError(f"cannot decode label file {path}: {e}") from None


def decode_image(path):
    """Decodes an RGB image file (PNG, JPEG, BMP) to uint8 [H, W, 3] with tf ops."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def color_lookup(palette):
    """Sorted colour keys and their class ids, for `colors_to_ids`.

    Args:
        palette: sequence of (r, g, b). Colour of class id i at index i.

    Returns:
        `(keys int32 [K], ids int32 [K])`, keys sorted.
    """
    keys = np.array([r * 65536 + g * 256 + b for r, g, b in palette], np.int64)
    order = np.argsort(keys, kind="stable")
    return tf.constant(keys[order], tf.int32), tf.constant(order, tf.int32)


def colors_to_ids(rgb, lookup):
    """Maps a colour label uint8 [H, W, 3] to int32 ids, -1 where the colour is not in the palette."""
    keys, ids = lookup
    rgb = tf.cast(rgb, tf.int32)
    key = rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]
    pos = tf.minimum(tf.searchsorted(keys, tf.reshape(key, [-1])), tf.size(keys) - 1)
    found = tf.gather(keys, pos) == tf.reshape(key, [-1])
    out = tf.where(found, tf.gather(ids, pos), -1)
    return tf.reshape(out, tf.shape(key))


def finish_label(label, where, num_classes, ignore_label, invalid_labels, colors=None):
    """Checks or repairs label values, and returns the label as uint8.

    Args:
        label: int32 [H, W] tensor of class ids; -1 marks a colour not in the palette.
        where: string tensor or str. The file (or record) the label came from, for messages.
        num_classes: int. Valid ids are `0 .. num_classes - 1`.
        ignore_label: int. Also valid.
        invalid_labels: str. "error" raises, "ignore" maps invalid values to `ignore_label`.
        colors: int32 [H, W] tensor of colour keys, or None. If given, unknown colours are
            reported as (r, g, b) instead of -1.

    Returns:
        uint8 [H, W] tensor.
    """
    bad = tf.logical_and(
        tf.not_equal(label, ignore_label),
        tf.logical_or(label < 0, label >= num_classes),
    )
    if invalid_labels == "ignore":
        return tf.cast(tf.where(bad, ignore_label, label), tf.uint8)

    def fail():
        if colors is not None:
            key = tf.unique(tf.boolean_mask(colors, bad))[0]
            shown = tf.stack([key // 65536, key // 256 % 256, key % 256], axis=1)
            what = "has colours (r, g, b) that are not the colour of a class:"
        else:
            shown = tf.unique(tf.boolean_mask(label, bad))[0]
            what = (f"has values outside [0, {num_classes}) other than "
                    f"ignore_label={ignore_label}:")
        hint = ("(to map them to the ignore label, pass --dataset_option invalid_labels=ignore to the "
                "tools, or invalid_labels='ignore' to get_source)")
        check = tf.debugging.Assert(False, ["label file", where, what, shown, hint], summarize=64)
        with tf.control_dependencies([check]):
            return tf.identity(label)

    label = tf.cond(tf.reduce_any(bad), fail, lambda: label)
    return tf.cast(label, tf.uint8)


def check_same_size(image, label, image_where, label_where):
    """Returns `label` after asserting it has the image's height and width (names both files)."""
    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.shape(label)[:2]))
    check = tf.debugging.Assert(
        same,
        ["image file", image_where, "has shape", tf.shape(image), "but its label file",
         label_where, "has shape", tf.shape(label)],
    )
    with tf.control_dependencies([check]):
        return tf.identity(label)


def pairs_dataset(pairs, label_kind, num_classes, ignore_label, invalid_labels="error",
                  shuffle_seed=None, id_map=None, palette=None):
    """A `tf.data.Dataset` of decoded `(image, label)` from file pairs.

    Args:
        pairs: list of `(image_path, label_path)`.
        label_kind: str. "ids" (8-bit greyscale PNG of class ids, decoded with tf ops),
            "indexed" (palette PNG whose indices are the ids, decoded with PIL) or "colors"
            (RGB PNG mapped through `palette`).
        num_classes: int. Number of classes.
        ignore_label: int. Label of ignored pixels.
        invalid_labels: str. "error" or "ignore", see `finish_label`. Defaults to "error".
        shuffle_seed: int or None. Shuffle the file order each epoch from this seed (before
            decoding). Defaults to None (order of `pairs`).
        id_map: sequence of 256 ints or None. Maps raw label values to class ids (e.g.
            Cityscapes labelIds to trainIds). Defaults to None.
        palette: sequence of (r, g, b) or None. Needed for `label_kind="colors"`: colour of id i
            at index i. Defaults to None.

    Returns:
        A `tf.data.Dataset` of `(image uint8 [H, W, 3], label uint8 [H, W])`.
    """
    image_paths = [p[0] for p in pairs]
    label_paths = [p[1] for p in pairs]
    ds = tf.data.Dataset.from_tensor_slices((image_paths, label_paths))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(pairs), seed=shuffle_seed, reshuffle_each_iteration=True)
    lut = None if id_map is None else tf.constant(np.asarray(id_map, np.int32))
    lookup = color_lookup(palette) if label_kind == "colors" else None

    def load(image_path, label_path):
        image = decode_image(image_path)
        colors = None
        if label_kind == "ids":
            label = tf.cast(tf.io.decode_png(tf.io.read_file(label_path), channels=1)[..., 0],
                            tf.int32)
        elif label_kind == "indexed":
            label = tf.numpy_function(_read_indexed, [label_path], tf.uint8, stateful=False)
            label = tf.cast(tf.ensure_shape(label, [None, None]), tf.int32)
        elif label_kind == "colors":
            rgb = tf.cast(tf.io.decode_png(tf.io.read_file(label_path), channels=3), tf.int32)
            colors = rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]
            label = colors_to_ids(rgb, lookup)
        else:
            raise ValueError(f"unknown label kind {label_kind!r}")
        if lut is not None:
            label = tf.gather(lut, label)
        label = check_same_size(image, label, image_path, label_path)
        label = finish_label(label, label_path, num_classes, ignore_label, invalid_labels, colors)
        return image, label

    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
