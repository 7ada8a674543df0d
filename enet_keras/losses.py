"""Segmentation losses: class-weighted cross-entropy and Lovász-Softmax, each with an ignored label."""

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


@keras.saving.register_keras_serializable(package="enet_keras")
class LovaszSoftmax(keras.losses.Loss):
    """The Lovász-Softmax loss: a convex surrogate of 1 - IoU, averaged over the classes present
    in the batch's labels (Berman, Rannen Triki and Blaschko, CVPR 2018).

    Cross-entropy scores pixels; mIoU scores classes, and counts a rare class's false positives
    as much as its misses. For each class this loss sorts the pixels by their error
    `|[y = c] - softmax_c|` and weighs them by the gain in the class's Jaccard loss (the Lovász
    extension), over the whole batch (IoU is taken over a dataset, not per image). Its authors
    fine-tuned ENet with it on Cityscapes (test mIoU 58.3 -> 63.1). With probabilities of 0 and 1
    it equals the mean of 1 - IoU of the present classes exactly.

    The sort is the cost: 11 classes x 1.7M pixels (a batch of ten 360x480 frames) take seconds
    on 2 CPU cores, so by default the loss is taken on a random sample of the batch's pixels,
    whose IoU estimates the batch's.

    Args:
        num_classes: int. Number of classes (the logits' channels).
        ignore_label: int. Label that contributes nothing (any label >= num_classes, too).
            Defaults to 255.
        num_pixels: int or None. Pixels sampled (with replacement) from the batch per step; None
            takes them all. Defaults to 262144 (1/6.6 of ten 360x480 frames).
        seed: int or None. Seed of the sampling.
        name: str. Defaults to `"lovasz_softmax"`.

    Example:

    >>> loss = LovaszSoftmax(num_classes=2, num_pixels=None)
    >>> round(float(loss([[0, 1, 1]], [[[9.0, -9.0], [9.0, -9.0], [-9.0, 9.0]]])), 3)  # IoU 1/2 and 1/2
    0.5
    """

    def __init__(self, num_classes, ignore_label=255, num_pixels=262144, seed=None, name="lovasz_softmax", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.num_pixels = None if num_pixels is None else int(num_pixels)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if self.num_pixels else None

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "int32")
        if len(y_true.shape) == len(y_pred.shape):
            y_true = ops.squeeze(y_true, axis=-1)
        probs = ops.reshape(ops.softmax(y_pred, axis=-1), (-1, self.num_classes))
        labels = ops.reshape(y_true, (-1,))
        if self.num_pixels:
            index = keras.random.randint((self.num_pixels,), 0, ops.shape(labels)[0], seed=self.seed_generator)
            probs, labels = ops.take(probs, index, axis=0), ops.take(labels, index)
        valid = ops.logical_and(ops.greater_equal(labels, 0), ops.less(labels, self.num_classes))
        valid = ops.cast(ops.logical_and(valid, ops.not_equal(labels, self.ignore_label)), "float32")[:, None]
        # Ignored pixels get error 0 and no foreground: sorted last, they change no class's loss.
        foreground = ops.one_hot(ops.where(valid[:, 0] > 0, labels, 0), self.num_classes) * valid
        errors = ops.transpose(ops.abs(foreground - probs) * valid)  # (classes, pixels)
        foreground = ops.transpose(foreground)
        order = ops.argsort(-errors, axis=-1)
        errors = ops.take_along_axis(errors, order, axis=-1)
        foreground = ops.take_along_axis(foreground, order, axis=-1)
        # The Lovász extension's gradient: the Jaccard loss gained at each pixel in error order.
        total = ops.sum(foreground, axis=-1, keepdims=True)
        intersection = total - ops.cumsum(foreground, axis=-1)
        union = total + ops.cumsum(1.0 - foreground, axis=-1)
        jaccard = 1.0 - intersection / union
        gain = ops.concatenate([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=-1)
        per_class = ops.sum(errors * ops.stop_gradient(gain), axis=-1)
        present = ops.cast(total[:, 0] > 0, "float32")
        return ops.divide_no_nan(ops.sum(per_class * present), ops.sum(present))

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "ignore_label": self.ignore_label,
                       "num_pixels": self.num_pixels, "seed": self.seed})
        return config
