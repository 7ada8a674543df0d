"""Cityscapes through TensorFlow Datasets (`cityscapes/semantic_segmentation`), 19 trainIds.

`tensorflow_datasets` is an optional extra (`pip install enet_keras[tfds]`) and is imported only
when this source is used.
"""

import os

import numpy as np
import tensorflow as tf

from enet_keras.data import image_files
from enet_keras.data.cityscapes import (
    CITYSCAPES_CLASSES, CITYSCAPES_IGNORE_LABEL, CITYSCAPES_PALETTE, LABEL_ID_TO_TRAIN_ID,
)
from enet_keras.data.source import SPLITS, Source

TFDS_NAME = "cityscapes/semantic_segmentation"
ARCHIVES = ("leftImg8bit_trainvaltest.zip", "gtFine_trainvaltest.zip")
_TFDS_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def tfds_source(split, data_dir=None, tfds_data_dir=None, shuffle_buffer=256):
    """Cityscapes fine annotations from TFDS, with the archives as its manual download.

    TFDS builds `cityscapes/semantic_segmentation` once from `leftImg8bit_trainvaltest.zip` and
    `gtFine_trainvaltest.zip` (downloaded by hand from https://www.cityscapes-dataset.com after
    registering) into `tfds_data_dir`; later calls read the built records. Its
    `segmentation_label` holds labelIds, mapped here to the 19 trainIds (other ids -> 255).

    Args:
        split: str. "train", "val" or "test" (TFDS "train", "validation", "test").
        data_dir: str or None. The manual download folder holding the two archives
            (`--data_dir`). Needed only until the dataset is built.
        tfds_data_dir: str or None. Where TFDS keeps built datasets. Defaults to None (the TFDS
            default, `~/tensorflow_datasets`).
        shuffle_buffer: int. Records (still encoded) shuffled together when the source is read
            with a shuffle seed. Defaults to 256.

    Returns:
        A `Source` with 19 classes and `ignore_label=255`.

    Raises:
        ImportError: if tensorflow_datasets is not installed.
        ValueError: on a bad split, or if the dataset is not built and the archives are not in
            `data_dir` (naming the files and the folder).

    Example:

    >>> src = tfds_source("val", "/data/cityscapes_zips")  # doctest: +SKIP
    >>> src.num_examples  # doctest: +SKIP
    500
    """
    if split not in SPLITS:
        raise ValueError(f"tfds split must be one of {SPLITS}. Received: split={split!r}")
    try:
        import tensorflow_datasets as tfds_lib
    except ImportError as e:
        raise ImportError(
            'the "tfds" source needs tensorflow-datasets: pip install "enet_keras[tfds]"'
        ) from e
    builder = tfds_lib.builder(TFDS_NAME, data_dir=tfds_data_dir)
    if not builder.is_prepared():
        put = " and ".join(ARCHIVES)
        if data_dir is None:
            raise ValueError(
                f"TFDS {TFDS_NAME} is not built in {builder.data_dir}: pass data_dir "
                f"(--data_dir), a folder holding {put} from https://www.cityscapes-dataset.com"
            )
        data_dir = os.fspath(data_dir)
        missing = [a for a in ARCHIVES if not tf.io.gfile.exists(os.path.join(data_dir, a))]
        if missing:
            raise ValueError(
                f"TFDS {TFDS_NAME} needs the Cityscapes archives {put} in data_dir "
                f"(--data_dir) {data_dir}; missing: "
                + ", ".join(os.path.join(data_dir, a) for a in missing)
                + ". Download them from https://www.cityscapes-dataset.com/downloads/ "
                "(registration needed) and put them there."
            )
        builder.download_and_prepare(
            download_config=tfds_lib.download.DownloadConfig(manual_dir=data_dir))
    tfds_split = _TFDS_SPLITS[split]
    num_examples = builder.info.splits[tfds_split].num_examples
    lut = tf.constant(np.asarray(LABEL_ID_TO_TRAIN_ID, np.int32))

    def decode(example):
        image = tf.io.decode_png(example["image_left"], channels=3)
        label = tf.io.decode_png(example["segmentation_label"], channels=1)[..., 0]
        label = tf.gather(lut, tf.cast(label, tf.int32))
        label = image_files.check_same_size(image, label, example["image_id"], example["image_id"])
        label = image_files.finish_label(label, example["image_id"], len(CITYSCAPES_CLASSES),
                                   CITYSCAPES_IGNORE_LABEL, "error")
        return image, label

    def make_dataset(shuffle_seed):
        skip = tfds_lib.decode.SkipDecoding()
        read_config = tfds_lib.ReadConfig(shuffle_seed=shuffle_seed)
        ds = builder.as_dataset(
            split=tfds_split, shuffle_files=shuffle_seed is not None, read_config=read_config,
            decoders={"image_left": skip, "segmentation_label": skip},
        )
        if shuffle_seed is not None:
            ds = ds.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
        return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    return Source(
        name="tfds", split=split, num_classes=len(CITYSCAPES_CLASSES),
        ignore_label=CITYSCAPES_IGNORE_LABEL, class_names=CITYSCAPES_CLASSES,
        palette=CITYSCAPES_PALETTE, num_examples=num_examples, make_dataset=make_dataset,
        data_dir=None if data_dir is None else os.fspath(data_dir),
        options={"tfds_data_dir": tfds_data_dir, "tfds_name": TFDS_NAME},
    )
