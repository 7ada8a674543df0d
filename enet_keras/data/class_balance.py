"""`class_weights`: ENet's and median-frequency class weights, counted once and cached as JSON."""

import hashlib
import json
import os
import warnings

import numpy as np
import tensorflow as tf

from enet_keras.files import atomic_write_json

METHODS = ("enet", "median")


def count_pixels(source):
    """Counts label pixels per class, streaming one image at a time.

    Args:
        source: `Source`. Its `dataset()` is read once, in order.

    Returns:
        A dict of numpy int64 arrays of length `num_classes`: `"pixels"` (pixels of each class
        over all images) and `"image_pixels"` (the labelled, i.e. non-ignored, pixels of the
        images in which the class occurs), and the int `"num_images"`.
    """
    n = source.num_classes

    def per_image(image, label):
        del image
        counts = tf.math.bincount(tf.reshape(tf.cast(label, tf.int32), [-1]), minlength=256,
                                  maxlength=256, dtype=tf.int64)
        return counts

    pixels = np.zeros(n, np.int64)
    image_pixels = np.zeros(n, np.int64)
    num_images = 0
    counts_ds = source.dataset().map(per_image, num_parallel_calls=tf.data.AUTOTUNE)
    for counts in counts_ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
        classes = counts[:n]
        pixels += classes
        image_pixels += (classes > 0) * classes.sum()
        num_images += 1
    return {"pixels": pixels, "image_pixels": image_pixels, "num_images": num_images}


def weights_from_counts(pixels, image_pixels, method="enet", c=1.02):
    """Class weights from pixel counts (see `class_weights`).

    Args:
        pixels: array [num_classes]. Pixels of each class.
        image_pixels: array [num_classes]. Labelled pixels of the images containing the class.
        method: str. "enet" or "median". Defaults to "enet".
        c: float. ENet's constant. Defaults to 1.02.

    Returns:
        float32 array [num_classes]; 0 for classes with no pixels.

    Example:

    >>> weights_from_counts([3, 1], [4, 4], "median").tolist()
    [0.6666666865348816, 2.0]
    """
    pixels = np.asarray(pixels, np.float64)
    image_pixels = np.asarray(image_pixels, np.float64)
    present = pixels > 0
    weights = np.zeros(pixels.shape, np.float64)
    if not present.any():
        return weights.astype(np.float32)
    if method == "enet":
        p = pixels / pixels.sum()
        weights[present] = 1.0 / np.log(c + p[present])
    else:
        freq = pixels[present] / image_pixels[present]
        weights[present] = np.median(freq) / freq
    return weights.astype(np.float32)


def _cache_key(source, method, c):
    return {**source.key(), "method": method, "c": float(c), "num_classes": source.num_classes,
            "ignore_label": source.ignore_label}


def class_weights(source, method="enet", c=1.02, cache_dir=None):
    """Per-class loss weights that counter class imbalance.

    `"enet"` is the weighting of Paszke et al., "ENet: A Deep Neural Network Architecture for
    Real-Time Semantic Segmentation", 2016: `w_class = 1 / ln(c + p_class)`, with `p_class` the
    class's share of all labelled pixels. `"median"` is median frequency balancing (Eigen &
    Fergus, ICCV 2015, used by SegNet): `freq_c = pixels of c / labelled pixels of the images in
    which c occurs`, `w_c = median(freq) / freq_c`, the median taken over classes that occur.
    Pixels equal to `ignore_label` are not counted anywhere. Classes that never occur get weight
    0 and a warning.

    The labels are read once through `source.dataset()`, one image at a time (only a bincount
    per image is kept). With `cache_dir`, the counts and weights are stored in a JSON file
    whose name hashes the source, split, data_dir, options, method, `c` and num_classes; a later
    call with the same key reads it instead of counting again.

    Args:
        source: `Source`. From `get_source`, usually the training split.
        method: str. "enet" or "median". Defaults to "enet".
        c: float. ENet's constant, > 1 so that weights stay positive and bounded (at most
            1 / ln(c)). Defaults to 1.02.
        cache_dir: str or None. Folder for the JSON cache, created if needed. Defaults to None
            (no cache).

    Returns:
        float32 numpy array [num_classes].

    Raises:
        ValueError: on an unknown method or `c <= 1` with method "enet".

    Example:

    >>> from enet_keras import data
    >>> src = data.get_source("synthetic", "train", num_examples=2, height=32, width=48)
    >>> w = data.class_weights(src, method="median")
    >>> w.shape, w.dtype.name
    ((8,), 'float32')
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}. Received: method={method!r}")
    if method == "enet" and not c > 1.0:
        raise ValueError(f"c must be > 1 for method='enet'. Received: c={c}")
    key = _cache_key(source, method, c)
    path = None
    if cache_dir is not None:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        path = os.path.join(os.fspath(cache_dir), f"class_weights_{source.name}_"
                                                   f"{source.split}_{method}_{digest}.json")
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    cached = json.load(f)
            except (OSError, json.JSONDecodeError) as e:
                raise ValueError(f"class weights cache {path} is unreadable ({e}); delete it "
                                 f"to count again") from None
            if cached.get("key") == key:
                return np.asarray(cached["weights"], np.float32)
    counts = count_pixels(source)
    weights = weights_from_counts(counts["pixels"], counts["image_pixels"], method, c)
    absent = [source.class_names[i] for i in np.flatnonzero(counts["pixels"] == 0)]
    if absent:
        warnings.warn(
            f"class_weights: classes {absent} never occur in {source.name}/{source.split} "
            f"({counts['num_images']} images); their weight is 0", stacklevel=2)
    if path is not None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write_json(path, {
            "key": key, "weights": [float(w) for w in weights],
            "class_names": list(source.class_names), "pixels": counts["pixels"].tolist(),
            "image_pixels": counts["image_pixels"].tolist(), "num_images": counts["num_images"],
        })
    return weights
