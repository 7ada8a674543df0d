"""Cityscapes in its official layout, mapped from the 34 labelIds to the 19 trainIds."""

import os

from enet_keras.data import image_files
from enet_keras.data.source import SPLITS, Source

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
CITYSCAPES_IGNORE_LABEL = 255
# labelId -> trainId, from cityscapesScripts/helpers/labels.py. labelIds not listed (0-6
# unlabeled .. ground, 9 parking, 10 rail track, 14 guard rail, 15 bridge, 16 tunnel,
# 18 polegroup, 29 caravan, 30 trailer, license plate) and any other value become 255.
_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
LABEL_ID_TO_TRAIN_ID = tuple(_TRAIN_IDS.get(i, CITYSCAPES_IGNORE_LABEL) for i in range(256))
_LAYOUT = ("leftImg8bit/<split>/<city>/*_leftImg8bit.png and "
           "gtFine/<split>/<city>/*_gtFine_labelIds.png")


def cityscapes_source(split, data_dir=None, check_files=True):
    """Cityscapes fine annotations, read from the official folder layout.

    Cordts et al., "The Cityscapes Dataset for Semantic Urban Scene Understanding", CVPR 2016.
    `data_dir` holds `leftImg8bit/` and `gtFine/` as unzipped from `leftImg8bit_trainvaltest.zip`
    and `gtFine_trainvaltest.zip`. The `*_gtFine_labelIds.png` files are mapped to the 19
    trainIds of the benchmark; every other id becomes 255 (ignored), so no label value is
    invalid.

    Args:
        split: str. "train" (2975 images), "val" (500) or "test" (1525; its labels are all
            ignored).
        data_dir: str. The Cityscapes folder (`--data_dir`).
        check_files: bool. Check every file's header and end at once (see `files`). Defaults
            to True.

    Returns:
        A `Source` with 19 classes and `ignore_label=255`.

    Raises:
        ValueError: on a bad split, a missing folder, or files that are unpaired, unreadable,
            truncated or of different sizes (naming them).

    Example:

    >>> src = cityscapes_source("val", "/data/cityscapes")  # doctest: +SKIP
    >>> src.num_examples, src.class_names[0]  # doctest: +SKIP
    (500, 'road')
    """
    if split not in SPLITS:
        raise ValueError(f"cityscapes split must be one of {SPLITS}. Received: split={split!r}")
    data_dir = image_files.require_data_dir(data_dir, "cityscapes", _LAYOUT)
    image_dir = os.path.join(data_dir, "leftImg8bit", split)
    label_dir = os.path.join(data_dir, "gtFine", split)
    images = image_files.list_files(image_dir, ("_leftImg8bit.png",), "image", subfolders=True)
    labels = image_files.list_files(label_dir, ("_gtFine_labelIds.png",), "label", subfolders=True)
    pairs = image_files.pair_files(images, labels, image_dir, label_dir,
                             lambda k: k + "_gtFine_labelIds.png")
    if check_files:
        kind = image_files.check_pairs(pairs, image_files.ID_MODES)
    else:
        kind = image_files.label_kind_of(pairs[0][1], image_files.ID_MODES)

    def make_dataset(shuffle_seed):
        return image_files.pairs_dataset(pairs, kind, len(CITYSCAPES_CLASSES), CITYSCAPES_IGNORE_LABEL,
                                   "error", shuffle_seed, id_map=LABEL_ID_TO_TRAIN_ID)

    return Source(
        name="cityscapes", split=split, num_classes=len(CITYSCAPES_CLASSES),
        ignore_label=CITYSCAPES_IGNORE_LABEL, class_names=CITYSCAPES_CLASSES,
        palette=CITYSCAPES_PALETTE, num_examples=len(pairs), make_dataset=make_dataset,
        data_dir=data_dir, options={},
    )
