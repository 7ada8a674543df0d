"""Segmentation metrics that skip the ignored label. Mean IoU is Keras' own `MeanIoU`."""

import keras
from keras import ops


def mean_iou(num_classes, ignore_label, name="mean_iou"):
    """Keras' `MeanIoU` on logits, over the real classes, the ignored label excluded.

    Classes absent from both the labels and the predictions do not count in the mean.

    Args:
        num_classes: int. Number of real classes.
        ignore_label: int. Label to skip.
        name: str. Defaults to `"mean_iou"`.

    Returns:
        A `keras.metrics.MeanIoU`.
    """
    return keras.metrics.MeanIoU(
        num_classes=num_classes, ignore_class=ignore_label, sparse_y_pred=False, name=name
    )


@keras.saving.register_keras_serializable(package="enet_keras")
class PixelAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Fraction of non-ignored pixels whose argmax is the label.

    Args:
        ignore_label: int. Label to skip. Defaults to 255.
        name: str. Defaults to `"pixel_accuracy"`.
    """

    def __init__(self, ignore_label=255, name="pixel_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.ignore_label = int(ignore_label)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        valid = ops.not_equal(y_true, self.ignore_label)
        weight = ops.cast(valid, "float32")
        if sample_weight is not None:
            weight = weight * ops.cast(sample_weight, "float32")
        return super().update_state(ops.where(valid, y_true, 0), y_pred, weight)

    def get_config(self):
        return {**super().get_config(), "ignore_label": self.ignore_label}
