"""`make_pipeline`: batches of augmented (training) or centred (evaluation) examples for Keras."""

import glob
import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from enet_keras.data.source import Source

_BRIGHTNESS_DELTA = 32.0  # in 0..255 units
CACHE_MODES = ("auto", "memory", "disk", "none")
_CONTRAST_RANGE = (0.75, 1.25)


def _check_args(source, batch_size, crop_size, label_downsample, scale_range):
    if not isinstance(source, Source):
        raise ValueError(f"source must be an enet_keras.data.Source (from data.get_source). "
                         f"Received: source={source!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1. Received: batch_size={batch_size!r}")
    if isinstance(label_downsample, bool) or not isinstance(label_downsample, int) \
            or label_downsample < 1:
        raise ValueError(f"label_downsample must be an int >= 1 (8 for the encoder stage). "
                         f"Received: label_downsample={label_downsample!r}")
    if crop_size is not None:
        ok = (isinstance(crop_size, (tuple, list)) and len(crop_size) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in crop_size))
        if not ok:
            raise ValueError(f"crop_size must be (height, width) of positive ints, or None. "
                             f"Received: crop_size={crop_size!r}")
        if any(v % label_downsample for v in crop_size):
            raise ValueError(
                f"crop_size must be a multiple of label_downsample={label_downsample} in both "
                f"dimensions. Received: crop_size={tuple(crop_size)}"
            )
    lo, hi = scale_range
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range must be (low, high) with 0 < low <= high. Received: "
                         f"scale_range={scale_range!r}")


def memory_budget():
    """The default budget of an in-memory cache: half of the memory available now (Linux
    `MemAvailable`), or half of the physical memory where that is not known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def decoded_size(source):
    """Estimated bytes of a split decoded (uint8 image and label), from its first example."""
    image, label = next(iter(source.dataset()))
    return (int(np.prod(image.shape)) + int(np.prod(label.shape))) * (source.num_examples or 1)


def choose_cache(source, cache="auto", cache_dir=None, budget=None):
    """Where the decoded examples of `source` are kept between epochs.

    Args:
        source: `Source`.
        cache: str or bool. "memory", "disk" (under `cache_dir`), "none", or "auto": memory
            when the decoded split fits `budget`, else disk when `cache_dir` is given, else
            none. True and False mean "memory" and "none". Defaults to "auto".
        cache_dir: str or None. Folder of disk caches. Defaults to None.
        budget: int or None. Bytes an in-memory cache may take. Defaults to None:
            `memory_budget()`.

    Returns:
        "memory", "disk" or "none".

    Raises:
        ValueError: for an unknown mode, or "disk" without `cache_dir`.
    """
    return _choose_cache(source, cache, cache_dir, budget)[0]


def _choose_cache(source, cache, cache_dir, budget):
    """(mode, decoded size in bytes or None where it was not needed) for `choose_cache` and
    `make_pipeline`, which sizes a disk cache's shuffle buffer with it: one decode, not two."""
    cache = {True: "memory", False: "none"}.get(cache, cache)
    if cache not in CACHE_MODES:
        raise ValueError(f"cache must be one of {CACHE_MODES}. Received: cache={cache!r}")
    if cache == "disk" and cache_dir is None:
        raise ValueError("cache='disk' needs cache_dir, the folder of the cache files")
    if cache in ("memory", "none"):
        return cache, None
    size = decoded_size(source)
    if cache == "disk":
        return cache, size
    if size <= (memory_budget() if budget is None else budget):
        return "memory", size
    return ("disk" if cache_dir is not None else "none"), size


def _disk_cache(source, cache_dir):
    """`source.dataset()` cached in files under `cache_dir`, named by the source's key. A cache
    left half written by a killed process (its lock file is still there) is removed first: the
    caller holds the run folder's lock, so no other process is writing it."""
    key = hashlib.sha256(json.dumps(source.key(), sort_keys=True, default=str).encode()).hexdigest()[:16]
    os.makedirs(cache_dir, exist_ok=True)
    prefix = os.path.join(cache_dir, f"{source.name}_{source.split}_{key}")
    if glob.glob(glob.escape(prefix) + "*.lockfile") or not os.path.exists(prefix + ".index"):
        for path in glob.glob(glob.escape(prefix) + "*"):
            os.remove(path)
    return source.dataset().cache(prefix)


def _center_crop_or_pad(x, height, width, pad_value):
    """Crops or pads `x` [H, W, ...] around its centre to [height, width, ...]."""
    shape = tf.shape(x)
    h, w = shape[0], shape[1]
    top, left = tf.maximum(h - height, 0) // 2, tf.maximum(w - width, 0) // 2
    x = x[top:top + tf.minimum(h, height), left:left + tf.minimum(w, width)]
    ph, pw = tf.maximum(height - h, 0), tf.maximum(width - w, 0)
    pads = [[ph // 2, ph - ph // 2], [pw // 2, pw - pw // 2]] + [[0, 0]] * (x.shape.rank - 2)
    x = tf.pad(x, pads, constant_values=tf.cast(pad_value, x.dtype))
    return tf.ensure_shape(x, [height, width] + x.shape[2:].as_list())


def _downsample_label(label, factor):
    """Nearest-neighbour downsampling by `factor`: the centre pixel of each factor x factor cell.

    This equals `tf.image.resize(..., method="nearest")` to `(H // factor, W // factor)`, and it
    is how the encoder stage's targets are made (the authors' Torch code scales labels by 1/8
    with "simple", i.e. nearest, interpolation).
    """
    if factor == 1:
        return label
    h, w = tf.shape(label)[0] // factor, tf.shape(label)[1] // factor
    return label[factor // 2::factor, factor // 2::factor][:h, :w]


def _augment(image, label, seed, crop_size, ignore_label, scale_range, flip, color_jitter):
    """Random flip, random scale, random crop/pad, colour jitter; labels stay nearest-neighbour.

    At a fixed scale of 1 the crop and pad are slices and pads. Otherwise scale, crop and pad
    happen in one `tf.image.crop_and_resize` per tensor: the crop window is
    chosen in the scaled image and mapped back to source coordinates (align-corners mapping, so
    scale 1 samples exact pixels), and samples that fall outside the image take the pad value
    (0 for the image, `ignore_label` for the label). Only `crop_size` pixels are computed.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=6)
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    if crop_size is None:
        ch, cw = h, w
    else:
        ch, cw = crop_size
    if scale_range[0] == scale_range[1] == 1.0:
        image, label = _crop_or_pad_at_random(image, label, seeds, h, w, ch, cw, ignore_label, flip)
    else:
        image, label = _scale_crop(image, label, seeds, h, w, ch, cw, ignore_label, scale_range, flip)
    if crop_size is not None:
        image, label = tf.ensure_shape(image, [ch, cw, 3]), tf.ensure_shape(label, [ch, cw])
    if color_jitter:  # image only
        image = tf.image.stateless_random_brightness(image, _BRIGHTNESS_DELTA, seeds[4])
        image = tf.image.stateless_random_contrast(image, *_CONTRAST_RANGE, seed=seeds[5])
        image = tf.clip_by_value(image, 0.0, 255.0)
    return image, tf.cast(label, tf.int32)


def _offset(size, crop, seed):
    """A crop start drawn uniformly from the valid integers; negative = pad before."""
    lo, hi = tf.minimum(0.0, size - crop), tf.maximum(0.0, size - crop)
    return tf.floor(tf.random.stateless_uniform([], seed, lo, hi + 1.0 - 1e-4))


def _crop_or_pad_at_random(image, label, seeds, h, w, ch, cw, ignore_label, flip):
    """Scale 1 (full frames, the authors' setting): slices and pads only, no resampling."""
    label = tf.cast(label, tf.int32)
    h, w, ch, cw = (tf.cast(v, tf.float32) for v in (h, w, ch, cw))
    oy = tf.cast(_offset(h, ch, seeds[1]), tf.int32)
    ox = tf.cast(_offset(w, cw, seeds[2]), tf.int32)
    ch, cw = tf.cast(ch, tf.int32), tf.cast(cw, tf.int32)
    top, left = tf.maximum(oy, 0), tf.maximum(ox, 0)
    image = image[top:top + ch, left:left + cw]
    label = label[top:top + ch, left:left + cw]
    pad_top, pad_left = tf.maximum(-oy, 0), tf.maximum(-ox, 0)
    pad_bottom = ch - pad_top - tf.shape(image)[0]
    pad_right = cw - pad_left - tf.shape(image)[1]
    image = tf.pad(image, [[pad_top, pad_bottom], [pad_left, pad_right], [0, 0]])
    label = tf.pad(label, [[pad_top, pad_bottom], [pad_left, pad_right]], constant_values=ignore_label)
    if flip:
        do_flip = tf.random.stateless_uniform([], seeds[3]) < 0.5
        image = tf.cond(do_flip, lambda: tf.reverse(image, [1]), lambda: image)
        label = tf.cond(do_flip, lambda: tf.reverse(label, [1]), lambda: label)
    return image, label


def _scale_crop(image, label, seeds, h, w, ch, cw, ignore_label, scale_range, flip):
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    chf, cwf = tf.cast(ch, tf.float32), tf.cast(cw, tf.float32)
    scale = tf.random.stateless_uniform([], seeds[0], scale_range[0], scale_range[1])
    sh = tf.maximum(tf.round(hf * scale), 2.0)  # scaled image size
    sw = tf.maximum(tf.round(wf * scale), 2.0)

    oy, ox = _offset(sh, chf, seeds[1]), _offset(sw, cwf, seeds[2])  # in the scaled image
    # crop_and_resize samples y_i = y1 * (H - 1) + i * (y2 - y1) * (H - 1) / (ch - 1).
    # We want y_i = (oy + i) * (H - 1) / (sh - 1).
    step_y, step_x = 1.0 / (sh - 1.0), 1.0 / (sw - 1.0)
    y1, x1 = oy * step_y, ox * step_x
    y2 = y1 + (chf - 1.0) * step_y
    x2 = x1 + (cwf - 1.0) * step_x
    if flip:
        do_flip = tf.random.stateless_uniform([], seeds[3]) < 0.5
        x1, x2 = tf.where(do_flip, 1.0 - x1, x1), tf.where(do_flip, 1.0 - x2, x2)
    boxes = tf.reshape(tf.stack([y1, x1, y2, x2]), [1, 4])
    size = tf.stack([ch, cw])
    image = tf.image.crop_and_resize(image[None], boxes, [0], size, method="bilinear",
                                     extrapolation_value=0.0)[0]
    label = tf.image.crop_and_resize(label[None, :, :, None], boxes, [0], size, method="nearest",
                                     extrapolation_value=float(ignore_label))[0, :, :, 0]
    return image, label


def make_pipeline(source, batch_size, crop_size=(360, 480), training=True, label_downsample=1,
                  seed=0, cache=True, shuffle_buffer=None, drop_remainder=None, *,
                  scale_range=(0.5, 2.0), flip=True, color_jitter=True, pad_to_multiple=1,
                  cache_dir=None, cache_budget=None):
    """Batches of `(image, label)` from a `Source`, for `model.fit` or evaluation.

    Training: seeded shuffle, then per example a random horizontal flip, a random scale in
    `scale_range`, a random crop (or pad, if the scaled image is smaller) to `crop_size`, and
    brightness/contrast jitter of the image only. Padded label pixels are `ignore_label`; labels
    are only ever resampled with nearest neighbour. The augmentation draws its randomness from
    stateless ops seeded per example, so a pipeline with the same `seed` gives the same batches
    (each epoch differs). The dataset is not repeated: Keras `fit` runs the epochs.
    Evaluation: no augmentation, fixed order; images are centre-cropped or padded to
    `crop_size`; with `crop_size=None` images of different sizes are padded at the bottom and
    right (image 0, label `ignore_label`) to the largest of their batch, rounded up to
    `pad_to_multiple`.

    Args:
        source: `Source`. From `get_source`.
        batch_size: int. Examples per batch.
        crop_size: tuple (height, width) or None. Output size; both must be multiples of
            `label_downsample`. None keeps each image's own size (then batching needs equal
            sizes, or `batch_size=1`). Defaults to (360, 480).
        training: bool. Shuffle and augment. Defaults to True.
        label_downsample: int. Labels are downsampled by this factor with nearest neighbour
            after augmentation; 8 gives the targets of the encoder stage. Defaults to 1.
        seed: int. Seed of the shuffle and the augmentation. Defaults to 0.
        cache: str or bool. Where decoded examples (before augmentation) are kept after the
            first epoch: "memory", "disk" (files under `cache_dir`), "none", or "auto" (memory
            when the decoded split fits `cache_budget`, else disk; see `choose_cache`). Cityscapes
            train at 1024x2048 is about 25 GB decoded. True and False mean "memory" and "none".
            Defaults to True.
        shuffle_buffer: int or None. Shuffle buffer of examples. Defaults to None: the whole
            source when cached in memory; from a disk cache as many decoded examples as fit
            `cache_budget`; without a cache the source shuffles its file order (or encoded
            records) before decoding and no buffer of decoded examples is used.
        drop_remainder: bool or None. Drop the last short batch. Defaults to None: True when
            training, False otherwise.
        scale_range: tuple (low, high). Random scale range when training. Defaults to
            (0.5, 2.0).
        flip: bool. Random horizontal flips when training. Defaults to True.
        color_jitter: bool. Random brightness (+-32) and contrast (x0.75..1.25) when training.
            Defaults to True.
        pad_to_multiple: int. Evaluation with `crop_size=None`: pad images and labels to a
            multiple of this (8 for ENet's input). Defaults to 1.
        cache_dir: str or None. Folder of the disk cache. Defaults to None.
        cache_budget: int or None. Bytes of decoded examples that may stay in memory (the
            cache, or the shuffle buffer from a disk cache). Defaults to None: half of the
            available memory.

    Returns:
        A `tf.data.Dataset` of `(image float32 [B, h, w, 3] in 0..255,
        label int32 [B, h / label_downsample, w / label_downsample])`, prefetched.

    Raises:
        ValueError: if `crop_size` is not positive or not a multiple of `label_downsample`, or
            another argument is out of range.

    Example:

    >>> from enet_keras import data
    >>> src = data.get_source("synthetic", "train", num_examples=4, height=64, width=96)
    >>> ds = data.make_pipeline(src, 2, crop_size=(64, 96), label_downsample=8)
    >>> images, labels = next(iter(ds))
    >>> tuple(images.shape), tuple(labels.shape)
    ((2, 64, 96, 3), (2, 8, 12))
    """
    _check_args(source, batch_size, crop_size, label_downsample, scale_range)
    if crop_size is not None:
        crop_size = (int(crop_size[0]), int(crop_size[1]))
    if drop_remainder is None:
        drop_remainder = bool(training)
    if shuffle_buffer is not None and (not isinstance(shuffle_buffer, int) or shuffle_buffer < 1):
        raise ValueError(f"shuffle_buffer must be an int >= 1 or None. Received: "
                         f"shuffle_buffer={shuffle_buffer!r}")
    ignore = source.ignore_label
    autotune = tf.data.AUTOTUNE

    cache, size = _choose_cache(source, cache, cache_dir, cache_budget)
    if cache == "memory":
        ds = source.dataset().cache()
        if training:
            buffer = shuffle_buffer or source.num_examples or 1024
            ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    elif cache == "disk":
        ds = _disk_cache(source, cache_dir)
        if training:
            each = max(1, size // (source.num_examples or 1))
            budget = memory_budget() if cache_budget is None else cache_budget
            buffer = shuffle_buffer or max(1, min(source.num_examples or 1024, budget // each))
            ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    else:
        ds = source.dataset(shuffle_seed=seed if training else None)
        if training and shuffle_buffer:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)

    if training:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds))

        def prepare(example, element_seed):
            image, label = example
            image, label = _augment(tf.cast(image, tf.float32), label, element_seed, crop_size,
                                    ignore, scale_range, flip, color_jitter)
            return image, _downsample_label(label, label_downsample)
    else:
        def prepare(image, label):
            image, label = tf.cast(image, tf.float32), tf.cast(label, tf.int32)
            if crop_size is not None:
                image = _center_crop_or_pad(image, *crop_size, 0.0)
                label = _center_crop_or_pad(label, *crop_size, ignore)
            elif pad_to_multiple > 1:
                image, label = _pad_to_multiple(image, label, pad_to_multiple, ignore)
            return image, _downsample_label(label, label_downsample)

    ds = ds.map(prepare, num_parallel_calls=autotune, deterministic=True)
    if training or crop_size is not None:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=autotune,
                      deterministic=True)
    else:  # images of the split may differ in size: pad each batch to its largest
        ds = ds.padded_batch(batch_size, drop_remainder=drop_remainder,
                             padding_values=(0.0, tf.constant(ignore, tf.int32)))
    return ds.prefetch(autotune)


def _pad_to_multiple(image, label, multiple, ignore_label):
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    ph, pw = -h % multiple, -w % multiple
    image = tf.pad(image, [[0, ph], [0, pw], [0, 0]])
    label = tf.pad(label, [[0, ph], [0, pw]], constant_values=ignore_label)
    return image, label
