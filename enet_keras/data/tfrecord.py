"""TFRecord shards of PNG-encoded examples: writing any `Source`, and reading them back.

Layout of an output folder (any `tf.io.gfile` path, so `gs://bucket/dir` works):

    <out_dir>/<split>-00000-of-00004.tfrecord ...   tf.train.Example records
    <out_dir>/metadata.json                          classes, palette, ignore label, per split:
                                                     shard files, example counts, the source

Each record holds `image/encoded` (RGB PNG), `label/encoded` (greyscale PNG of class ids),
`image/height`, `image/width` and `image/index` (position in the source). Example i goes to shard
`i % num_shards`, so reading the shards round-robin gives back the source order. Every file is
written under a temporary name and renamed when complete; `metadata.json` is written last, so a
split is listed only once all its shards exist.
"""

import json
import os
import struct
import uuid

import tensorflow as tf

from enet_keras.data import image_files
from enet_keras.files import atomic_write_bytes
from enet_keras.data.source import SPLITS, Source

METADATA_FILE = "metadata.json"
_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "label/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/index": tf.io.FixedLenFeature([], tf.int64),
}


def shard_name(split, index, num_shards):
    """The file name of shard `index` of `num_shards` of `split`."""
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def _tmp_path(path):
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.{uuid.uuid4().hex[:8]}.tmp")


def write_text_atomic(path, text):
    """Writes `text` to `path` (any `tf.io.gfile` path) whole or not at all: a local file
    through `files.atomic_write_bytes` (flushed to disk), a remote one by a gfile rename."""
    if "://" not in path:
        atomic_write_bytes(path, text.encode())
        return
    tmp = _tmp_path(path)
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def read_metadata(data_dir):
    """Reads `<data_dir>/metadata.json`.

    Raises:
        ValueError: naming the file if it is missing or not valid JSON.
    """
    path = os.path.join(data_dir, METADATA_FILE)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"no {METADATA_FILE} in {data_dir} (--data_dir): expected TFRecord "
                         f"shards written by tools/convert_tfrecord.py (missing file: {path})")
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            return json.loads(f.read())
    except (json.JSONDecodeError, tf.errors.OpError) as e:
        raise ValueError(f"cannot read TFRecord metadata {path}: {e}") from None


def _bytes(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def write_tfrecords(source, out_dir, num_shards=4, progress=True, config=None):
    """Writes one split of a `Source` as PNG-encoded TFRecord shards plus `metadata.json`.

    Splits of one dataset can be written one after the other into the same `out_dir`; the
    metadata of each is added to `metadata.json`. Rewriting a split replaces its entry.

    Args:
        source: `Source`. The split to write, read in its fixed order.
        out_dir: str. Output folder, local or any `tf.io.gfile` path; created if needed.
        num_shards: int. Number of shard files (fewer if the source has fewer examples).
            Defaults to 4.
        progress: bool. Show a progress bar. Defaults to True.
        config: dict or None. Extra information (e.g. the converter's resolved flags) stored
            with the split in `metadata.json`. Defaults to None.

    Returns:
        A dict: `split`, `num_examples`, `files` (full paths of the shards) and `metadata`
        (path of `metadata.json`).

    Raises:
        ValueError: if `num_shards < 1`, or if `out_dir` already holds a dataset with other
            classes.

    Example:

    >>> import tempfile
    >>> from enet_keras import data
    >>> src = data.get_source("synthetic", "val", num_examples=3, height=32, width=48)
    >>> out = data.write_tfrecords(src, tempfile.mkdtemp(), num_shards=2, progress=False)
    >>> out["num_examples"], len(out["files"])
    (3, 2)
    """
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"num_shards must be an int >= 1. Received: num_shards={num_shards!r}")
    out_dir = os.fspath(out_dir)
    tf.io.gfile.makedirs(out_dir)
    classes = {
        "num_classes": source.num_classes, "ignore_label": source.ignore_label,
        "class_names": list(source.class_names), "palette": [list(c) for c in source.palette],
    }
    meta_path = os.path.join(out_dir, METADATA_FILE)
    meta = read_metadata(out_dir) if tf.io.gfile.exists(meta_path) else dict(classes, splits={})
    for k, v in classes.items():
        if meta.get(k) != v:
            raise ValueError(f"{meta_path} describes another dataset ({k}={meta.get(k)!r}, "
                             f"this source has {v!r}); write to another out_dir")
    if source.num_examples is not None:
        num_shards = max(1, min(num_shards, source.num_examples))
    names = [shard_name(source.split, k, num_shards) for k in range(num_shards)]
    for stale in tf.io.gfile.glob(os.path.join(out_dir, f".{source.split}-*.tmp")):  # left by a killed write
        tf.io.gfile.remove(stale)
    paths = [os.path.join(out_dir, n) for n in names]
    tmps = [_tmp_path(p) for p in paths]

    def encode(image, label):
        return tf.io.encode_png(image), tf.io.encode_png(label[..., None]), tf.shape(image)[:2]

    encoded = source.dataset().map(encode, num_parallel_calls=tf.data.AUTOTUNE)
    bar = None
    if progress:
        import keras

        bar = keras.utils.Progbar(source.num_examples, unit_name="example")
    sizes = [0] * num_shards
    writers = [tf.io.TFRecordWriter(t) for t in tmps]
    try:
        for i, (image_png, label_png, hw) in enumerate(encoded.prefetch(8).as_numpy_iterator()):
            example = tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": _bytes(image_png), "label/encoded": _bytes(label_png),
                "image/height": _int(hw[0]), "image/width": _int(hw[1]), "image/index": _int(i),
            }))
            writers[i % num_shards].write(example.SerializeToString())
            sizes[i % num_shards] += 1
            if bar is not None:
                bar.update(i + 1)
        for w in writers:
            w.close()
        for tmp, path in zip(tmps, paths):
            tf.io.gfile.rename(tmp, path, overwrite=True)
    finally:
        for w in writers:
            w.close()
        for tmp in tmps:
            if tf.io.gfile.exists(tmp):
                tf.io.gfile.remove(tmp)
    meta = read_metadata(out_dir) if tf.io.gfile.exists(meta_path) else meta
    meta.setdefault("splits", {})[source.split] = {
        "num_examples": sum(sizes), "files": names, "shard_sizes": sizes,
        "source": {"name": source.name, "data_dir": source.data_dir,
                   "options": dict(source.options)},
        "config": config or {},
    }
    write_text_atomic(meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return {"split": source.split, "num_examples": sum(sizes), "files": paths,
            "metadata": meta_path}


def check_shard(path):
    """Checks a local TFRecord shard up front, naming it: the record framing runs exactly to the
    end of the file (reading only the 12-byte headers, so a truncated shard is found now, not
    as a `DataLossError` mid-epoch), and the first record holds our feature keys.

    Args:
        path: str. A local shard.

    Returns:
        The number of records.

    Raises:
        ValueError: naming the shard, if it is truncated, not a TFRecord file, or holds other
            features.
    """
    size = os.path.getsize(path)
    count, position, first = 0, 0, None
    with open(path, "rb") as f:
        while position < size:
            header = f.read(12)  # uint64 length, uint32 masked CRC of the length
            if len(header) < 12:
                break
            (length,) = struct.unpack("<Q", header[:8])
            if count == 0:
                first = f.read(length)
            position += 12 + length + 4
            f.seek(position)
            count += 1
    if position != size:
        raise ValueError(f"TFRecord shard {path} is truncated or not a TFRecord file: its records do not "
                         f"end at its last byte ({size} bytes); write it again (tools/convert_tfrecord.py)")
    if first is not None:
        try:
            keys = set(tf.train.Example.FromString(first).features.feature)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError: not an Example
            keys = set()
        missing = sorted(set(_FEATURES) - keys)
        if missing:
            raise ValueError(f"TFRecord shard {path} does not hold enet_keras examples: features {missing} "
                             f"are missing (it has {sorted(keys)}); write it with tools/convert_tfrecord.py")
    return count


def tfrecord_source(split, data_dir=None, invalid_labels="error", shuffle_buffer=256):
    """Reads a split written by `write_tfrecords` (or `tools/convert_tfrecord.py`).

    Args:
        split: str. "train", "val" or "test"; must be listed in `metadata.json`.
        data_dir: str. The folder of the shards and `metadata.json` (`--data_dir`), local or
            any `tf.io.gfile` path such as `gs://bucket/dir`.
        invalid_labels: str. "error" or "ignore" for label values outside the classes.
            Defaults to "error".
        shuffle_buffer: int. Encoded records shuffled together when read with a shuffle seed
            (after shuffling the shard order). Defaults to 256.

    Returns:
        A `Source` with the classes stored in `metadata.json`.

    Raises:
        ValueError: if the folder, metadata, split or a shard is missing, or a local shard is
            truncated or holds other features (naming it; see `check_shard`).

    Example:

    >>> src = tfrecord_source("train", "gs://my-bucket/camvid_tfrecord")  # doctest: +SKIP
    """
    if split not in SPLITS:
        raise ValueError(f"tfrecord split must be one of {SPLITS}. Received: split={split!r}")
    image_files.check_invalid_labels(invalid_labels)
    data_dir = image_files.require_data_dir(data_dir, "tfrecord",
                                      f"<split>-*.tfrecord shards and {METADATA_FILE}")
    meta = read_metadata(data_dir)
    splits = meta.get("splits", {})
    if split not in splits:
        raise ValueError(f"split {split!r} is not in {os.path.join(data_dir, METADATA_FILE)}; "
                         f"it holds {sorted(splits)}")
    entry = splits[split]
    paths = [os.path.join(data_dir, n) for n in entry["files"]]
    missing = [p for p in paths if not tf.io.gfile.exists(p)]
    if missing:
        raise ValueError(f"{len(missing)} TFRecord shard(s) listed in {METADATA_FILE} are "
                         f"missing: {', '.join(missing[:5])}")
    if all("://" not in p for p in paths):  # remote shards are read as they stream
        found = sum(check_shard(p) for p in paths)
        if found != int(entry["num_examples"]):
            raise ValueError(f"the {split} shards in {data_dir} hold {found} records but {METADATA_FILE} "
                             f"says {entry['num_examples']}; write the split again")
    num_classes, ignore = int(meta["num_classes"]), int(meta["ignore_label"])
    where_prefix = f"{os.path.join(data_dir, split)}-*.tfrecord example #"

    def decode(record):
        ex = tf.io.parse_single_example(record, _FEATURES)
        image = tf.io.decode_png(ex["image/encoded"], channels=3)
        label = tf.cast(tf.io.decode_png(ex["label/encoded"], channels=1)[..., 0], tf.int32)
        where = tf.strings.join([where_prefix, tf.strings.as_string(ex["image/index"])])
        label = image_files.check_same_size(image, label, where, where)
        label = image_files.finish_label(label, where, num_classes, ignore, invalid_labels)
        return image, label

    def make_dataset(shuffle_seed):
        ds = tf.data.Dataset.from_tensor_slices(paths)
        if shuffle_seed is not None:
            ds = ds.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=len(paths), block_length=1,
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if shuffle_seed is not None:
            ds = ds.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
        return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    return Source(
        name="tfrecord", split=split, num_classes=num_classes, ignore_label=ignore,
        class_names=tuple(meta["class_names"]), palette=tuple(tuple(c) for c in meta["palette"]),
        num_examples=int(entry["num_examples"]), make_dataset=make_dataset, data_dir=data_dir,
        options={"invalid_labels": invalid_labels, "source": entry.get("source", {})},
    )
