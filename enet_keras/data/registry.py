"""`get_source`: a `Source` by name."""

import inspect

from enet_keras.data.camvid import camvid_source
from enet_keras.data.cityscapes import cityscapes_source
from enet_keras.data.folder import folder_source
from enet_keras.data.synthetic import synthetic_source
from enet_keras.data.tfds import tfds_source
from enet_keras.data.tfrecord import tfrecord_source

_FACTORIES = {
    "synthetic": synthetic_source,
    "camvid": camvid_source,
    "cityscapes": cityscapes_source,
    "tfds": tfds_source,
    "folder": folder_source,
    "tfrecord": tfrecord_source,
}
SOURCE_NAMES = tuple(_FACTORIES)


def get_source(name, split, data_dir=None, **options):
    """One split of a dataset, by source name.

    | name | data_dir | options |
    |---|---|---|
    | "synthetic" | not used | num_examples, height=360, width=480, seed=0 |
    | "camvid" | SegNet CamVid folder | invalid_labels="error", check_files=True, holdout_drive=None, trainval=False |
    | "cityscapes" | folder with leftImg8bit/ and gtFine/ | check_files=True |
    | "tfds" | manual download folder with the 2 zips | tfds_data_dir=None, shuffle_buffer=256 |
    | "folder" | folder with <split>/images/, <split>/masks/ | num_classes, ignore_label=255, palette_file, class_names, invalid_labels, check_files |
    | "tfrecord" | folder of shards + metadata.json | invalid_labels="error", shuffle_buffer=256 |

    Args:
        name: str. One of `SOURCE_NAMES`.
        split: str. "train", "val" or "test".
        data_dir: str or None. The dataset folder (`--data_dir`). Defaults to None.
        **options: Options of the source (see the table and each `*_source` function).

    Returns:
        A `Source`.

    Raises:
        ValueError: on an unknown name (listing the valid ones), an unknown option (listing the
            valid ones), a bad split, or a missing `data_dir` (naming the path and
            `--data_dir`); and the source's own errors on bad files.

    Example:

    >>> from enet_keras import data
    >>> src = data.get_source("synthetic", "train", num_examples=8, height=64, width=96)
    >>> src.name, src.num_classes, src.class_names[:3]
    ('synthetic', 8, ('sky', 'building', 'road'))
    """
    if name not in _FACTORIES:
        raise ValueError(f"Unknown data source {name!r}; valid names: {', '.join(SOURCE_NAMES)}")
    factory = _FACTORIES[name]
    valid = [p for p in inspect.signature(factory).parameters if p not in ("split", "data_dir")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} for source {name!r}; valid options: "
                         f"{valid}")
    return factory(split, data_dir=data_dir, **options)
