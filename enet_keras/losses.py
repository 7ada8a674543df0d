"""The segmentation loss: class-weighted cross-entropy with an ignored label."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="enet_keras")
class WeightedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Per-pixel cross-entropy from logits, weighted per class, with one label ignored.

    The loss of a batch is `sum(w[y] * ce) / sum(w[y])` over its non-ignored pixels: the
    weighted mean that Torch's `SpatialCrossEntropyCriterion` (the authors' code) and PyTorch's
    `CrossEntropyLoss(weight=...)` compute. A batch with only ignored pixels has loss 0 (no NaN).

    Args:
        class_weights: list of floats, one per class, or None for equal weights.
        ignore_label: int. Label that contributes nothing (any label >= num_classes, too).
            Defaults to 255.
        num_classes: int. Needed when `class_weights` is None.
        name: str. Defaults to `"weighted_crossentropy"`.

    Example:

    >>> loss = WeightedSparseCategoricalCrossentropy([1.0, 2.0], ignore_label=255)
    >>> float(loss([[0, 255]], [[[0.0, 0.0], [5.0, 0.0]]]))  # ln(2) on the one valid pixel
    0.6931...
    """

    def __init__(self, class_weights=None, ignore_label=255, num_classes=None, name="weighted_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        if class_weights is None and num_classes is None:
            raise ValueError("Pass class_weights or num_classes")
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.num_classes = len(self.class_weights) if class_weights is not None else int(num_classes)
        self.ignore_label = int(ignore_label)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "int32")
        if len(y_true.shape) == len(y_pred.shape):
            y_true = ops.squeeze(y_true, axis=-1)
        valid = ops.logical_and(ops.not_equal(y_true, self.ignore_label), ops.less(y_true, self.num_classes))
        valid = ops.logical_and(valid, ops.greater_equal(y_true, 0))
        safe = ops.where(valid, y_true, 0)
        ce = ops.sparse_categorical_crossentropy(safe, y_pred, from_logits=True)
        weights = ops.cast(valid, "float32")
        if self.class_weights is not None:
            weights = weights * ops.take(ops.convert_to_tensor(self.class_weights, "float32"), safe)
        return ops.divide_no_nan(ops.sum(ce * weights), ops.sum(weights))

    def get_config(self):
        config = super().get_config()
        config.update(
            {"class_weights": self.class_weights, "ignore_label": self.ignore_label, "num_classes": self.num_classes}
        )
        return config
