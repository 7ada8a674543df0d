"""ENet's building blocks (Paszke et al. 2016, arXiv 1606.02147, Fig. 2 and Table 1).

Each block is a function `(x, ..., name) -> y` that applies freshly created layers, all named
from `name` (for example `bottleneck2_3_conv1`). Layer names are API: encoder weights are moved
into the full network by name, so they must not change.

Every bottleneck has a *main branch* (identity, max pooling with indices, or unpooling) and an
*extension branch*: 1x1 projection (2x2 stride 2 when downsampling), main convolution, 1x1
expansion, each followed by batch normalization, activations after the first two, then spatial
dropout; the branches are added and activated. Convolutions have no biases (the paper: "we did
not use bias terms in any of the projections"; batch normalization follows each one anyway).
"""

import keras

from enet_keras.layers import BatchNormalization, ChannelPadding, MaxPoolingWithArgmax2D, MaxUnpooling2D

# The authors' Torch code uses eps=1e-3 in every SpatialBatchNormalization (also Keras' default)
# and Torch's momentum 0.1, which is Keras' momentum 0.9 (Keras' default 0.99 makes the moving
# statistics lag ten times longer, which shows in short runs and in picking the best epoch).
_BN_EPSILON = 1e-3
_BN_MOMENTUM = 0.9
# Torch's and PyTorch's PReLU start every slope at 0.25 (Keras' default is 0, a ReLU).
_PRELU_INIT = 0.25
# ENet's bottlenecks reduce to output_channels / 4 inside the extension branch, as in the
# authors' code (`internal = output / internal_scale`).
INTERNAL_RATIO = 4


def _activation(activation, name):
    if activation in ("prelu", "prelu_layer"):
        # "prelu": one slope per channel, shared across space, as in the paper. "prelu_layer":
        # one slope per layer, which int8 exports as LEAKY_RELU (one op that XNNPACK runs).
        shared_axes = [1, 2] if activation == "prelu" else [1, 2, 3]
        return keras.layers.PReLU(
            alpha_initializer=keras.initializers.Constant(_PRELU_INIT), shared_axes=shared_axes, name=name
        )
    return keras.layers.ReLU(name=name)


def _batch_norm(name):
    return BatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=name)


def _conv_bn_act(x, filters, kernel_size, name, strides=1, dilation_rate=1, activation=None):
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        dilation_rate=dilation_rate,
        use_bias=False,
        name=f"{name}_conv",
    )(x)
    x = _batch_norm(f"{name}_bn")(x)
    if activation is not None:
        x = _activation(activation, f"{name}_act")(x)
    return x


def InitialBlock(x, filters=16, activation="prelu", name="initial"):
    """ENet's initial block: a 3x3 stride-2 convolution (13 filters) beside a 2x2 max pooling of
    the 3 input channels, concatenated to 16 channels, then batch normalization and activation.

    Args:
        x: tensor (B, H, W, 3).
        filters: int. Output channels; the convolution gets `filters - 3`. Defaults to 16.
        activation: str. `"prelu"`, `"prelu_layer"` or `"relu"`. Defaults to `"prelu"`.
        name: str. Prefix of every layer name. Defaults to `"initial"`.

    Returns:
        A tensor (B, H/2, W/2, filters).
    """
    conv = keras.layers.Conv2D(
        filters - x.shape[-1], 3, strides=2, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    pool = keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    x = keras.layers.Concatenate(name=f"{name}_concat")([conv, pool])
    x = _batch_norm(f"{name}_bn")(x)
    return _activation(activation, f"{name}_act")(x)


def _extension_end(x, filters, dropout_rate, name):
    x = _conv_bn_act(x, filters, 1, f"{name}_expand")
    if dropout_rate > 0:
        x = keras.layers.SpatialDropout2D(dropout_rate, name=f"{name}_dropout")(x)
    return x


def _merge(main, extension, activation, name):
    x = keras.layers.Add(name=f"{name}_add")([main, extension])
    return _activation(activation, f"{name}_act")(x)


def RegularBottleneck(
    x, kind="regular", dilation_rate=1, dropout_rate=0.1, activation="prelu", name="bottleneck"
):
    """ENet's regular bottleneck: identity main branch; the extension branch's main convolution
    is a 3x3 (`"regular"`), a 3x3 with `dilation_rate` (`"dilated"`) or a 5x1 then 1x5
    (`"asymmetric"`, as in the authors' code, with no normalization between the two).

    Args:
        x: tensor (B, H, W, C).
        kind: str. `"regular"`, `"dilated"` or `"asymmetric"`. Defaults to `"regular"`.
        dilation_rate: int. Dilation of the `"dilated"` convolution. Defaults to 1.
        dropout_rate: float. Spatial dropout on the extension branch. Defaults to 0.1.
        activation: str. `"prelu"`, `"prelu_layer"` or `"relu"`. Defaults to `"prelu"`.
        name: str. Prefix of every layer name.

    Returns:
        A tensor of the same shape as `x`.
    """
    channels = x.shape[-1]
    internal = channels // INTERNAL_RATIO
    ext = _conv_bn_act(x, internal, 1, f"{name}_project", activation=activation)
    if kind == "asymmetric":
        ext = keras.layers.Conv2D(internal, (5, 1), padding="same", use_bias=False, name=f"{name}_conv_5x1")(ext)
        ext = _conv_bn_act(ext, internal, (1, 5), f"{name}_main", activation=activation)
    elif kind in ("regular", "dilated"):
        ext = _conv_bn_act(ext, internal, 3, f"{name}_main", dilation_rate=dilation_rate, activation=activation)
    else:
        raise ValueError(f"kind must be 'regular', 'dilated' or 'asymmetric'. Received: kind={kind!r}")
    ext = _extension_end(ext, channels, dropout_rate, name)
    return _merge(x, ext, activation, name)


def DownsamplingBottleneck(x, filters, dropout_rate=0.1, activation="prelu", name="bottleneck"):
    """ENet's downsampling bottleneck: the main branch max-pools (keeping the indices) and pads
    the channels with zeros up to `filters`; the extension branch starts with a 2x2 stride-2
    projection in place of the 1x1.

    Args:
        x: tensor (B, H, W, C) with even H and W.
        filters: int. Output channels.
        dropout_rate: float. Spatial dropout on the extension branch. Defaults to 0.1.
        activation: str. `"prelu"`, `"prelu_layer"` or `"relu"`. Defaults to `"prelu"`.
        name: str. Prefix of every layer name.

    Returns:
        A tuple `(y, indices)`: `y` is (B, H/2, W/2, filters); `indices` are the pooling's
        window-local argmax positions, for the matching `UpsamplingBottleneck`.
    """
    channels = x.shape[-1]
    internal = filters // INTERNAL_RATIO
    main, indices = MaxPoolingWithArgmax2D(name=f"{name}_pool")(x)
    if filters > channels:
        main = ChannelPadding(filters - channels, name=f"{name}_pad")(main)
    ext = _conv_bn_act(x, internal, 2, f"{name}_project", strides=2, activation=activation)
    ext = _conv_bn_act(ext, internal, 3, f"{name}_main", activation=activation)
    ext = _extension_end(ext, filters, dropout_rate, name)
    return _merge(main, ext, activation, name), indices


def UpsamplingBottleneck(x, indices, filters, dropout_rate=0.1, activation="prelu", name="bottleneck"):
    """ENet's upsampling bottleneck: the main branch is a 1x1 convolution with batch
    normalization, then max unpooling with the indices of the matching downsampling
    bottleneck; the extension branch's main convolution is a 3x3 stride-2 transposed one.

    Args:
        x: tensor (B, h, w, C).
        indices: tensor (B, h, w, filters) from the matching `DownsamplingBottleneck`.
        filters: int. Output channels.
        dropout_rate: float. Spatial dropout on the extension branch. Defaults to 0.1.
        activation: str. `"prelu"`, `"prelu_layer"` or `"relu"`. Defaults to `"prelu"`.
        name: str. Prefix of every layer name.

    Returns:
        A tensor (B, 2h, 2w, filters).
    """
    internal = filters // INTERNAL_RATIO
    main = _conv_bn_act(x, filters, 1, f"{name}_shortcut")
    main = MaxUnpooling2D(name=f"{name}_unpool")([main, indices])
    ext = _conv_bn_act(x, internal, 1, f"{name}_project", activation=activation)
    ext = keras.layers.Conv2DTranspose(
        internal, 3, strides=2, padding="same", use_bias=False, name=f"{name}_main_conv"
    )(ext)
    ext = _batch_norm(f"{name}_main_bn")(ext)
    ext = _activation(activation, f"{name}_main_act")(ext)
    ext = _extension_end(ext, filters, dropout_rate, name)
    return _merge(main, ext, activation, name)
