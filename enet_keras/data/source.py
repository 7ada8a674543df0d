"""`Source`: one split of one segmentation dataset, with its classes and decoded examples."""

import dataclasses
import os
from typing import Any, Callable, Mapping, Optional

SPLITS = ("train", "val", "test")


def int_option(source_name, name, value, least=None):
    """An integer option of a source (`--dataset_option NAME=VALUE`), checked: 3.5 or "3" is
    refused rather than truncated.

    Raises:
        ValueError: naming the source, the option and the value.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        if not (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):  # numpy ints
            raise ValueError(f"{source_name} option {name} must be an integer. Received: {name}={value!r}")
    value = int(value)
    if least is not None and value < least:
        raise ValueError(f"{source_name} option {name} must be >= {least}. Received: {name}={value}")
    return value


@dataclasses.dataclass(frozen=True, eq=False)
class Source:
    """One split of a semantic segmentation dataset.

    A `Source` knows the dataset's classes and builds a `tf.data.Dataset` of decoded, unbatched
    examples in a fixed order. Build one with `enet_keras.data.get_source`; feed it to
    `enet_keras.data.make_pipeline` for training or evaluation.

    Args:
        name: str. The source name passed to `get_source` (`"camvid"`, `"synthetic"`, ...).
        split: str. `"train"`, `"val"` or `"test"`.
        num_classes: int. Number of classes the labels may hold, ids `0 .. num_classes - 1`.
        ignore_label: int. The label id of pixels left out of the loss and the metrics. It is
            outside `[0, num_classes)` and at most 255 (labels are uint8).
        class_names: tuple of str. One name per class id.
        palette: tuple of (r, g, b). One colour per class id, for drawing labels.
        num_examples: int or None. Number of examples, when known without reading them all.
        make_dataset: callable. `make_dataset(shuffle_seed)` returns the `tf.data.Dataset`; use
            `dataset()` instead of calling it.
        data_dir: str or None. Where the data was read from, if anywhere.
        options: mapping. The resolved options of the source (kept for cache keys and reports).

    Raises:
        ValueError: if the classes, palette or ignore label do not agree.

    Example:

    >>> from enet_keras import data
    >>> src = data.get_source("synthetic", "val", num_examples=2, height=32, width=48)
    >>> src.num_classes, src.ignore_label, src.num_examples
    (8, 255, 2)
    >>> image, label = next(iter(src.dataset()))
    >>> tuple(image.shape), image.dtype.name, tuple(label.shape), label.dtype.name
    ((32, 48, 3), 'uint8', (32, 48), 'uint8')
    """

    name: str
    split: str
    num_classes: int
    ignore_label: int
    class_names: tuple
    palette: tuple
    num_examples: Optional[int]
    make_dataset: Callable[[Optional[int]], Any] = dataclasses.field(repr=False, compare=False)
    data_dir: Optional[str] = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not 1 <= self.num_classes <= 255:
            raise ValueError(
                f"Source {self.name!r}: num_classes must be in [1, 255] (labels are uint8). "
                f"Received: num_classes={self.num_classes}"
            )
        if not self.num_classes <= self.ignore_label <= 255:
            raise ValueError(
                f"Source {self.name!r}: ignore_label must be in [num_classes, 255] = "
                f"[{self.num_classes}, 255]. Received: ignore_label={self.ignore_label}"
            )
        if len(self.class_names) != self.num_classes or len(self.palette) != self.num_classes:
            raise ValueError(
                f"Source {self.name!r}: expected {self.num_classes} class names and palette "
                f"colours. Received: {len(self.class_names)} names, {len(self.palette)} colours"
            )

    def key(self):
        """What identifies this split's examples (for cache names): source, split, data folder
        and options."""
        data_dir = self.data_dir
        if data_dir is not None and "://" not in data_dir:
            data_dir = os.path.abspath(data_dir)
        return {"source": self.name, "split": self.split, "data_dir": data_dir,
                "options": {k: v for k, v in sorted(self.options.items())}}

    def dataset(self, shuffle_seed=None):
        """The examples as a `tf.data.Dataset` of `(image, label)`.

        Args:
            shuffle_seed: int or None. None gives the fixed order of the source. An int shuffles
                the order before decoding (file names or record bytes, so the shuffle is cheap),
                differently in each epoch but the same for the same seed. Defaults to None.

        Returns:
            A `tf.data.Dataset` of `(image uint8 [H, W, 3], label uint8 [H, W])`, decoded,
            not batched.
        """
        return self.make_dataset(shuffle_seed)
