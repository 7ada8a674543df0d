"""Images that calibrate int8 exports (and TF-TRT INT8, and TF-Serving warm-up): a seeded
sample of a data source at the export size."""

import numpy as np
import tensorflow as tf

_CALIBRATION_SEED = 0


def calibration_images(source, height, width, num_images=100):
    """`num_images` images of a data source, resized and centre-cropped to the export size:
    representative data for int8 calibration (and TF-TRT INT8, and serving warm-up).

    From a data source they are a seeded random sample, the same on every call: the first
    images of a split in file order come from few scenes (CamVid's first 100 training images
    hold two of its three training drives), so ranges calibrated on them may not fit the rest.
    From a plain iterable they are its first `num_images`.

    Each image is scaled (keeping its aspect ratio, bilinear with antialiasing) so that it
    covers `height` x `width`, then cropped at its centre.

    Args:
        source: an `enet_keras.data` source (`data.get_source(name, "train", ...)`), or any
            iterable of (H, W, 3) images or (image, label) pairs.
        height: int. Export height.
        width: int. Export width.
        num_images: int. How many images to take. Defaults to 100.

    Returns:
        A list of uint8 arrays of shape (height, width, 3).

    Raises:
        ValueError: if the source yields no images or images without 3 channels.

    Example:

    >>> images = [np.zeros((100, 200, 3), np.uint8)]
    >>> calibration_images(images, 64, 64)[0].shape
    (64, 64, 3)
    """
    # Shuffled by file name before decoding, so sampling costs no more than reading in order.
    examples = source.dataset(shuffle_seed=_CALIBRATION_SEED) if hasattr(source, "dataset") else source
    images = []
    for example in examples:
        image = example[0] if isinstance(example, (tuple, list)) else example
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(
                f"calibration images must be RGB (H, W, 3). Received: an image of shape {image.shape} "
                f"from {getattr(source, 'name', type(source).__name__)}"
            )
        images.append(_cover_and_crop(image, height, width))
        if len(images) >= num_images:
            break
    if not images:
        raise ValueError(f"The data source {getattr(source, 'name', source)!r} yielded no images for calibration")
    return images


def _cover_and_crop(image, height, width):
    h, w = image.shape[:2]
    if (h, w) != (height, width):
        scale = max(height / h, width / w)
        size = (max(height, round(h * scale)), max(width, round(w * scale)))
        image = tf.image.resize(tf.cast(image, tf.float32), size, antialias=True).numpy()
        top, left = (size[0] - height) // 2, (size[1] - width) // 2
        image = image[top : top + height, left : left + width]
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def take_calibration_images(images, limit, argument, shape=None, dtype=None):
    """The first `limit` of `images` as arrays, each checked, for a converter to calibrate on.

    Args:
        images: iterable of (H, W, 3) images.
        limit: int. How many to take.
        argument: str. The argument's name, for the errors.
        shape: tuple or None. The shape every image must have (the export size), or None for any
            (H, W, 3).
        dtype: numpy dtype or None. The dtype every image must have, or None for any.

    Returns:
        A list of at most `limit` arrays.

    Raises:
        ValueError: for an image of another shape or dtype, or no images.
    """
    taken = []
    for image in images:
        image = np.asarray(image)
        good_shape = image.shape == tuple(shape) if shape else image.ndim == 3 and image.shape[-1] == 3
        if not good_shape or (dtype is not None and image.dtype != dtype):
            expected = f"{np.dtype(dtype).name + ' ' if dtype is not None else ''}images of shape {shape or '(H, W, 3)'}"
            raise ValueError(f"{argument} must be {expected}. Received: an image of shape {image.shape}, "
                             f"dtype {image.dtype}")
        taken.append(image)
        if len(taken) >= limit:
            break
    if not taken:
        raise ValueError(f"{argument} is empty: calibration needs at least one image")
    return taken
