"""Custom layers of ENet: max pooling that remembers where each maximum was, and the unpooling
that puts values back there (SegNet-style), plus zero-padding of channels.

Index form. `tf.nn.max_pool_with_argmax` returns flat indices into the input tensor; it needs
Flex ops in TensorFlow Lite and has no XLA kernel. We instead return, for every output
element, the position of its maximum *inside its 2x2 window*:

    0 = top-left, 1 = top-right, 2 = bottom-left, 3 = bottom-right.

Ties go to the first maximum in that (row-major) order, which is also what
`tf.nn.max_pool_with_argmax` picks, so both give exactly the same unpooled tensor.
Everything is built from max pooling, reshapes, transposes, slices, comparisons, integer
arithmetic, multiplications and concatenation, which lower to TensorFlow Lite builtins (run by
XNNPACK where it can) and compile under XLA, with dynamic batch and size.
"""

import keras
from keras import ops


def _check_even(shape, layer_name):
    height, width = shape[1], shape[2]
    for size, what in ((height, "height"), (width, "width")):
        if size is not None and size % 2:
            raise ValueError(
                f"{layer_name} needs an even {what} (2x2 windows, stride 2). "
                f"Received: input shape {tuple(shape)}"
            )


def _windows_on_channels(x):
    """Space-to-depth of 2x2 windows: (B, H, W, C) -> (B, H/2, W/2, 4C), the four corners of each
    window concatenated on channels in index order (top-left, top-right, bottom-left, bottom-right)."""
    shape = ops.shape(x)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    # A reshape-transpose-reshape, not strided slices: LiteRT runs stride-2 slices in its slow
    # reference kernel, outside XNNPACK, and they made up most of the pooling's cost in int8.
    x = ops.reshape(x, (batch, height // 2, 2, width // 2, 2, channels))
    return ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (batch, height // 2, width // 2, 4 * channels))


def _interleave_corners(corners):
    """Four (B, h, w, C) corner tensors in index order -> one (B, 2h, 2w, C): the inverse of
    `_windows_on_channels` followed by a 4-way channel split."""
    top_left, top_right, bottom_left, bottom_right = corners
    shape = ops.shape(top_left)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    # Concatenating on channels then reshaping interleaves along the width (a depth-to-space
    # that stays 4-D, which every runtime supports).
    top = ops.reshape(ops.concatenate([top_left, top_right], axis=-1), (batch, height, 2 * width, channels))
    bottom = ops.reshape(
        ops.concatenate([bottom_left, bottom_right], axis=-1), (batch, height, 2 * width, channels)
    )
    rows = ops.concatenate([top, bottom], axis=2)
    return ops.reshape(rows, (batch, 2 * height, 2 * width, channels))


@keras.saving.register_keras_serializable(package="enet_keras")
class MaxPoolingWithArgmax2D(keras.layers.Layer):
    """2x2, stride-2 max pooling that also returns where each maximum was.

    Used on the main branch of ENet's downsampling bottlenecks; the indices are consumed by
    `MaxUnpooling2D` in the matching upsampling bottleneck (Paszke et al. 2016, Sec. 3;
    Badrinarayanan et al., SegNet).

    Args:
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Returns:
        A tuple `(pooled, indices)`: `pooled` has shape (B, H/2, W/2, C) and the input's dtype;
        `indices` is int32 of the same shape, the maximum's position inside its 2x2 window
        (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right; ties go to the lowest).

    Raises:
        ValueError: if a known height or width is odd.

    Example:

    >>> x = keras.ops.convert_to_tensor([[[[1.0], [4.0]], [[3.0], [2.0]]]])
    >>> pooled, indices = MaxPoolingWithArgmax2D()(x)
    >>> float(pooled[0, 0, 0, 0]), int(indices[0, 0, 0, 0])
    (4.0, 1)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def build(self, input_shape):
        _check_even(input_shape, self.name)
        self.built = True

    def call(self, inputs):
        _check_even(inputs.shape, self.name)
        pooled = ops.max_pool(inputs, 2, 2)
        windows, channels = _windows_on_channels(inputs), ops.shape(inputs)[-1]
        # "Corner p is not the maximum" flags for the first three corners, from channel slices.
        # Not a SPLIT: converting quantization-aware models to int8 sometimes failed on it
        # ("same scale constraint"); with slices the same models convert, as fast.
        above = [
            ops.cast(ops.not_equal(windows[..., p * channels:(p + 1) * channels], pooled), "int32") for p in range(3)
        ]
        # First maximum in window order: 0 if corner 0 is a maximum, else 1 if corner 1 is, else
        # 2 if corner 2 is, else 3. (No `where` with scalar branches: TFLite runs that in a slow
        # broadcasting kernel, which made int8 ENet slower than fp32.)
        return pooled, above[0] * (1 + above[1] * (1 + above[2]))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        height = None if height is None else height // 2
        width = None if width is None else width // 2
        shape = (batch, height, width, channels)
        return shape, shape

    def compute_output_spec(self, inputs):
        shape, _ = self.compute_output_shape(inputs.shape)
        return (
            keras.KerasTensor(shape, dtype=inputs.dtype),
            keras.KerasTensor(shape, dtype="int32"),
        )

    def get_config(self):
        return super().get_config()


@keras.saving.register_keras_serializable(package="enet_keras")
class MaxUnpooling2D(keras.layers.Layer):
    """Inverse of `MaxPoolingWithArgmax2D`: each value goes back to where its maximum was.

    The output is twice the input's height and width; every 2x2 window holds the value at
    the position given by `indices` and zeros elsewhere (SegNet/ENet unpooling). Gradients flow
    to the values only; the integer indices get none.

    Args:
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: a list `[values, indices]` of equal shape (B, h, w, C); `indices` as returned by
            `MaxPoolingWithArgmax2D` (window-local, 0..3).

    Returns:
        A tensor of shape (B, 2h, 2w, C) with the dtype of `values`.

    Example:

    >>> x = keras.random.uniform((1, 4, 4, 2))
    >>> pooled, indices = MaxPoolingWithArgmax2D()(x)
    >>> MaxUnpooling2D()([pooled, indices]).shape
    (1, 4, 4, 2)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def build(self, input_shape):
        values_shape, indices_shape = input_shape
        if len(values_shape) != 4 or tuple(values_shape[1:]) != tuple(indices_shape[1:]):
            raise ValueError(
                f"{self.name} needs values and indices of the same 4-D shape. "
                f"Received: values {tuple(values_shape)}, indices {tuple(indices_shape)}"
            )
        self.built = True

    def call(self, inputs):
        values, indices = inputs
        indices = ops.cast(indices, "int32")
        # Multiplying by 0/1 masks rather than `where(..., values, 0)`: the same values, but
        # quantized TFLite runs MUL in XNNPACK and SELECT_V2 with a scalar in a slow kernel.
        corners = [values * ops.cast(ops.equal(indices, position), values.dtype) for position in range(4)]
        return _interleave_corners(corners)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape[0]
        height = None if height is None else 2 * height
        width = None if width is None else 2 * width
        return (batch, height, width, channels)

    def get_config(self):
        return super().get_config()


@keras.saving.register_keras_serializable(package="enet_keras")
class ChannelPadding(keras.layers.Layer):
    """Appends zero channels: the main branch of a bottleneck that widens its input.

    Args:
        channels: int. Number of zero channels appended on the last axis.
        **kwargs: standard `keras.layers.Layer` arguments.

    Returns:
        A tensor of shape (..., C + channels).

    Example:

    >>> ChannelPadding(48)(keras.ops.ones((1, 8, 8, 16))).shape
    (1, 8, 8, 64)
    """

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        channels = int(channels)
        if channels < 0:
            raise ValueError(f"channels must be >= 0. Received: channels={channels}")
        self.channels = channels

    def call(self, inputs):
        return ops.pad(inputs, [[0, 0]] * (len(inputs.shape) - 1) + [[0, self.channels]])

    def compute_output_shape(self, input_shape):
        channels = None if input_shape[-1] is None else input_shape[-1] + self.channels
        return (*input_shape[:-1], channels)

    def get_config(self):
        config = super().get_config()
        config.update({"channels": self.channels})
        return config


@keras.saving.register_keras_serializable(package="enet_keras")
class MaximumPReLU(keras.layers.Layer):
    """PReLU computed as `maximum(x, alpha * x)`: the export form of PReLU for int8 models.

    For slopes `alpha <= 1` (negative ones included) this equals `PReLU` exactly: for x >= 0,
    x >= alpha*x; for x < 0, alpha*x >= x. Quantized TFLite runs it as MUL (in XNNPACK) and
    MAXIMUM (LiteRT's own fast kernel); int8 PRELU has neither an XNNPACK kernel nor a fast
    LiteRT one and made ENet's int8 model ~7x slower than this form
    (`benchmarks/bench_int8_forms.py`). `enet_keras.export.tflite` swaps it in for int8 exports.

    Trained slopes can end above 1 (the shipped CamVid weights have one, 1.03). With
    `slopes_above_one=True` the layer splits each slope into `min(alpha, 1)`, for the maximum
    form, and the rest, which multiplies `minimum(x, 0)`: exact for any slope, for one MINIMUM,
    MUL and ADD more.

    Args:
        slopes_above_one: bool. Compute the split form, exact for slopes above 1 too. Defaults
            to False.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> layer = MaximumPReLU()
    >>> layer.build((None, 1, 1, 2))
    >>> layer.alpha.assign([[[0.1, 0.5]]])
    >>> [float(v) for v in layer(keras.ops.convert_to_tensor([[[[-2.0, -2.0]]]]))[0, 0, 0]]
    [-0.2, -1.0]
    """

    def __init__(self, slopes_above_one=False, **kwargs):
        super().__init__(**kwargs)
        self.slopes_above_one = bool(slopes_above_one)

    def build(self, input_shape):
        # Same weight shape as `PReLU(shared_axes=[1, 2])`, so weights copy across.
        self.alpha = self.add_weight(shape=(1, 1, input_shape[-1]), initializer="zeros", name="alpha")
        self.built = True

    def call(self, inputs):
        if not self.slopes_above_one:
            return ops.maximum(inputs, inputs * self.alpha)
        below = ops.minimum(self.alpha, 1.0)
        return ops.maximum(inputs, inputs * below) + (self.alpha - below) * ops.minimum(inputs, 0.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "slopes_above_one": self.slopes_above_one}


@keras.saving.register_keras_serializable(package="enet_keras")
class LeakyPReLU(keras.layers.Layer):
    """A PReLU with one slope for the whole layer, held as a constant: `leaky_relu(x, slope)`.

    The int8 export form of `ENet(activation="prelu_layer")`'s activations. TFLite writes it as
    one LEAKY_RELU op, which XNNPACK runs in int8 (it runs neither int8 PRELU nor MAXIMUM).
    Unlike `keras.layers.LeakyReLU` it takes negative slopes, which training can reach.

    Args:
        slope: float. The slope for negative inputs.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> [float(v) for v in LeakyPReLU(-0.25)(keras.ops.convert_to_tensor([-2.0, 3.0]))]
    [0.5, 3.0]
    """

    def __init__(self, slope, **kwargs):
        super().__init__(**kwargs)
        self.slope = float(slope)

    def call(self, inputs):
        return ops.leaky_relu(inputs, negative_slope=self.slope)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "slope": self.slope}


@keras.saving.register_keras_serializable(package="enet_keras")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training step runs TensorFlow's fused kernel.

    Keras 3 normalizes with separate ops (`moments`, then `batch_normalization`), so a training
    step spends its time in reductions and elementwise ops, forward and backward. On TensorFlow
    this layer computes the same thing with one `FusedBatchNormV3` (oneDNN on CPUs, cuDNN on
    GPUs), which makes ENet's whole training step 1.4x faster on a 2-core Xeon
    (docs/benchmarks.md). The variables, configuration, moving-statistics update and inference
    are Keras' own, so weights move freely between the two. It falls back to Keras' ops on other
    backends and where the fused kernel does not apply (synchronized statistics, renorm, masks,
    no scale or centre, an axis other than the last of a 4-D input).

    Args:
        **kwargs: the arguments of `keras.layers.BatchNormalization`.

    Example:

    >>> bn = BatchNormalization(momentum=0.9)
    >>> x = keras.random.normal((2, 4, 4, 3))
    >>> bool(ops.all(ops.abs(bn(x, training=True) - keras.layers.BatchNormalization()(x, training=True)) < 1e-4))
    True
    """

    def _fused(self, inputs, training, mask):
        return (
            keras.backend.backend() == "tensorflow" and training and self.trainable and mask is None
            and not self.synchronized and not self.renorm and self.scale and self.center
            and len(inputs.shape) == 4 and self.axis in (-1, 3)
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        # float32 throughout, as Keras computes batch normalization under mixed precision.
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            ops.cast(inputs, "float32"), ops.cast(self.gamma, "float32"), ops.cast(self.beta, "float32"),
            epsilon=self.epsilon, is_training=True,
        )[:3]
        # The fused kernel returns the unbiased batch variance; Keras averages the biased one.
        count = ops.cast(ops.size(inputs) // ops.shape(inputs)[-1], "float32")
        variance = variance * (count - 1.0) / ops.maximum(count, 2.0)
        moving_mean, moving_variance = (ops.cast(v, "float32") for v in (self.moving_mean, self.moving_variance))
        self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return ops.cast(outputs, self.compute_dtype)


@keras.saving.register_keras_serializable(package="enet_keras")
class ClipLogits(keras.layers.Layer):
    """Clips logits to `[lower, upper]`: the last layer of ENet's int8 export.

    int8 logits have 256 levels over the range calibration saw, which for trained ENet is
    about +-30, so two classes closer than one step (0.2) tie and `argmax` picks the lower id.
    Logits below the smallest winning logit or above the largest runner-up never decide an
    `argmax`, so clipping them away keeps every decision on the calibration images while the
    int8 step becomes several times finer. `enet_keras.export.tflite` picks the bounds.

    Args:
        lower: float. Logits below become `lower`.
        upper: float. Logits above become `upper`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> keras.ops.convert_to_numpy(ClipLogits(-1.0, 2.0)(keras.ops.convert_to_tensor([[-5.0, 0.5, 9.0]]))).tolist()
    [[-1.0, 0.5, 2.0]]
    """

    def __init__(self, lower, upper, **kwargs):
        super().__init__(**kwargs)
        self.lower, self.upper = float(lower), float(upper)
        if not self.lower < self.upper:
            raise ValueError(f"ClipLogits needs lower < upper. Received: lower={lower}, upper={upper}")

    def call(self, inputs):
        return ops.clip(inputs, self.lower, self.upper)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"lower": self.lower, "upper": self.upper})
        return config
