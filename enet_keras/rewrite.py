"""Model rewrites: a Keras model in, a model computing the same function out, in the form a
runtime wants. All are built on one graph walker, `rebuild_graph`, with one copy of the batch-
normalization arithmetic, `bn_scale_shift`.

- `fold_batch_norm`: the inference-optimised ENet (the paper, Sec. 4: "we merge batch
  normalization and dropout layers into the convolutional filters"). A BatchNormalization that
  directly follows a Conv2D or Conv2DTranspose (whose output feeds nothing else) becomes part of
  it: `kernel' = kernel * scale` per output channel, `bias' = bias * scale + shift`, with
  `scale = gamma / sqrt(moving_variance + epsilon)` and `shift = beta - moving_mean * scale`;
  the folded BatchNormalization and every (Spatial)Dropout become `Identity` layers of the same
  name. The initial block's BatchNormalization follows a Concatenate of the convolution (13
  channels) and the pooling (3 channels) and stays: folding its first 13 channels would still
  leave an affine op on the pooled ones.
- `int8_export_form`: the form that quantizes well and runs fast in int8 (see its docstring).
- `dynamic_size_model`: the same model with a (None, None, 3) input, for serving.
- `clip_logits`: logits clipped to a range that keeps the calibration images' argmax (int8).
- `shift_logits`: per-class offsets added to the logits, in the last layer's bias (the logit
  adjustment that `enet_keras.evaluation.fit_logit_adjustment` fits).

The QAT twin (`enet_keras.training.qat`) walks the graph with `rebuild_graph` too.
"""

import warnings

import numpy as np
import keras

from enet_keras import _internals
from enet_keras.layers import ClipLogits, LeakyPReLU, MaximumPReLU

_CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.Conv2DTranspose)
_DROPOUTS = (keras.layers.Dropout, keras.layers.SpatialDropout1D, keras.layers.SpatialDropout2D,
             keras.layers.SpatialDropout3D)


def rebuild_graph(model, call_layer, make_input):
    """Rebuilds the graph of a functional model layer by layer, with other layers or functions.

    Args:
        model: a functional `keras.Model` (no shared layers).
        call_layer: function `(layer, inputs) -> outputs`, called once per layer in topological
            order; `inputs` is a tensor, or a list for layers with several inputs.
        make_input: function `(input_layer, keras_tensor) -> tensor` for each model input.

    Returns:
        A tuple `(inputs, outputs)` of the new tensors, each a list in the model's order or the
        tensor itself when there is one (what `Model(inputs, outputs)` takes).

    Raises:
        ValueError: if `model` is not functional, or has a shared layer.

    Example:

    >>> from enet_keras import ENet
    >>> model = ENet(num_classes=3)
    >>> inputs, outputs = rebuild_graph(model, copy_layer, lambda layer, t: keras.Input(batch_shape=t.shape))
    >>> keras.Model(inputs, outputs).count_params() == model.count_params()
    True
    """
    if not _internals.is_functional(model):
        raise ValueError(f"Rewrites need a functional keras.Model. Received: {type(model).__name__}")
    tensors = {}  # id of a symbolic tensor of `model` -> new tensor
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            (output,) = keras.tree.flatten(layer.output)
            tensors[id(output)] = make_input(layer, output)
            continue
        nodes = [n for n in _internals.inbound_nodes(layer)
                 if all(id(t) in tensors for t in keras.tree.flatten(n.input_tensors))]
        if len(nodes) != 1:
            raise ValueError(f"Layer {layer.name!r} of {model.name!r} is called {len(nodes)} times in the model; "
                             "rewrites need each layer called once")
        (node,) = nodes
        inputs = [tensors[id(t)] for t in keras.tree.flatten(node.input_tensors)]
        outputs = call_layer(layer, inputs if len(inputs) > 1 else inputs[0])
        for symbolic, tensor in zip(keras.tree.flatten(node.output_tensors), keras.tree.flatten(outputs)):
            tensors[id(symbolic)] = tensor
    inputs, outputs = ([tensors[id(t)] for t in ts] for ts in (model.inputs, model.outputs))
    return (inputs[0] if len(inputs) == 1 else inputs), (outputs[0] if len(outputs) == 1 else outputs)


def copy_layer(layer, inputs, **config):
    """Calls a fresh copy of `layer` (its config updated by `config`) on `inputs` and gives it
    `layer`'s weights; returns its outputs. The `call_layer` of a plain copy."""
    copy = layer.__class__.from_config({**layer.get_config(), **config})
    outputs = copy(inputs)  # builds it, so the weights can be set
    if layer.weights:
        copy.set_weights(layer.get_weights())
    return outputs


def _rebuilt(model, call_layer, input_shape=None):
    def make_input(layer, tensor):
        shape = tensor.shape if input_shape is None else (None, *input_shape)
        return keras.Input(batch_shape=shape, dtype=tensor.dtype, name=layer.name)

    inputs, outputs = rebuild_graph(model, call_layer, make_input)
    return keras.Model(inputs, outputs, name=model.name)


def bn_scale_shift(bn):
    """`(scale, shift)` (float64, per channel) of a BatchNormalization at inference:
    `bn(x) = x * scale + shift`."""
    gamma = np.asarray(bn.gamma, np.float64) if bn.scale else 1.0
    beta = np.asarray(bn.beta, np.float64) if bn.center else 0.0
    mean = np.asarray(bn.moving_mean, np.float64)
    scale = gamma / np.sqrt(np.asarray(bn.moving_variance, np.float64) + bn.epsilon)
    return scale * np.ones_like(mean), beta - mean * scale


def _producer(layer):
    """The layer whose output is `layer`'s only input, or None."""
    nodes = _internals.inbound_nodes(layer)
    if len(nodes) != 1 or len(keras.tree.flatten(nodes[0].input_tensors)) != 1:
        return None
    return _internals.history(keras.tree.flatten(nodes[0].input_tensors)[0])[0]


def _foldable_pairs(model):
    """{conv name: bn layer} for each BatchNormalization that directly follows a convolution
    used once, whose output goes nowhere else."""
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        conv = _producer(layer)
        if (isinstance(conv, _CONVOLUTIONS) and len(_internals.inbound_nodes(conv)) == 1
                and len(_internals.outbound_nodes(conv)) == 1 and layer.axis in (-1, len(layer.input.shape) - 1)):
            pairs[conv.name] = layer
    return pairs


def _folded_weights(conv, bn):
    scale, shift = bn_scale_shift(bn)
    kernel = np.asarray(conv.kernel, np.float64)
    bias = np.asarray(conv.bias, np.float64) if conv.use_bias else 0.0
    if isinstance(conv, keras.layers.Conv2DTranspose):
        kernel = kernel * scale[None, None, :, None]  # (kh, kw, out, in)
    else:
        kernel = kernel * scale  # (kh, kw, in, out)
    return [kernel.astype(np.float32), (bias * scale + shift).astype(np.float32)]


def fold_batch_norm(model):
    """The inference-optimised copy of a functional model: BN folded into convolutions, no dropout.

    See the module docstring for what is folded (all of ENet's BatchNormalization layers but the
    initial block's). Layer names are kept, so weights still match by name; the folded BN and
    the dropout layers become `Identity` layers. The original model is not changed.

    Args:
        model: a functional `keras.Model`, e.g. a trained `ENet(num_classes)`.

    Returns:
        A `keras.Model` whose outputs equal the original's in inference mode (up to float
        rounding, about 1e-5).

    Raises:
        ValueError: if `model` is not a functional model.

    Example:

    >>> from enet_keras import ENet
    >>> folded = fold_batch_norm(ENet(num_classes=3))
    >>> sum(isinstance(l, keras.layers.BatchNormalization) for l in folded.layers)
    1
    """
    pairs = _foldable_pairs(model) if _internals.is_functional(model) else {}
    folded_bns = {bn.name for bn in pairs.values()}

    def call_layer(layer, inputs):
        if layer.name in folded_bns or isinstance(layer, _DROPOUTS):
            return keras.layers.Identity(name=layer.name)(inputs)
        if layer.name not in pairs:
            return copy_layer(layer, inputs)
        conv = layer.__class__.from_config({**layer.get_config(), "use_bias": True, "bias_initializer": "zeros"})
        outputs = conv(inputs)
        conv.set_weights(_folded_weights(layer, pairs[layer.name]))
        return outputs

    return _rebuilt(model, call_layer)


def dynamic_size_model(model):
    """`model` with a (None, None, 3) input (same weights, copied), or `model` itself if its
    input size is already dynamic. Serving takes any image size.

    Raises:
        ValueError: if `model` does not take (batch, height, width, 3) images.
    """
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"model must take (batch, height, width, 3) images. Received: input_shape={shape}")
    if shape[1] is None and shape[2] is None:
        return model
    return _rebuilt(model, copy_layer, input_shape=(None, None, 3))


def int8_export_form(model, form=MaximumPReLU):
    """A copy of ENet computing the same function in a form that quantizes well and runs fast in
    int8. Two rewrites:

    - **Initial block.** `rescaling` and `initial_bn` are folded into `initial_conv` (scaled
      kernel plus a bias) and into a 1x1 depthwise convolution `initial_pool_bn` after
      `initial_pool`. In int8, CONCATENATION and MAX_POOL_2D keep their input's scale, so the
      unfolded block forced one scale on the image and on the normalized activations: the
      image kept ~10 grey levels and post-training int8 lost 11 mIoU on CamVid.
    - **PReLU.** Every `PReLU(shared_axes=[1, 2])` becomes `form` (`MaximumPReLU`: MUL +
      MAXIMUM, ~7x faster than int8 PRELU on x86 CPUs), or, if one of its slopes is above 1,
      `MaximumPReLU(slopes_above_one=True)`, so the result stays exact. A PReLU with one slope in all
      (`ENet(activation="prelu_layer")`) becomes `LeakyPReLU` with that slope: one LEAKY_RELU
      op, which XNNPACK runs in int8 (a ReLU if the slope is under 2**-8 in magnitude, which
      changes the int8 output by less than one step). Other PReLUs stay, with a warning.

    Args:
        model: a functional `keras.Model`, such as `ENet(num_classes)`. A model without ENet's
            initial block gets only the PReLU rewrite.
        form: the layer class that replaces PReLU: it takes `name` and holds `alpha` of
            PReLU's shape. Defaults to `MaximumPReLU`.

    Returns:
        A `keras.Model` with its own copies of the weights and the same layer names, except
        the folded `rescaling` and `initial_bn` (gone) and the new `initial_pool_bn`.

    Example:

    >>> from enet_keras import ENet
    >>> form = int8_export_form(ENet(num_classes=3))
    >>> form.get_layer("initial_conv").use_bias, "initial_bn" in [l.name for l in form.layers]
    (True, False)
    """
    def convertible(layer):
        return isinstance(layer, keras.layers.PReLU) and list(layer.shared_axes or []) == [1, 2]

    leaky = {layer.name: float(keras.ops.convert_to_numpy(layer.alpha).reshape(())) for layer in model.layers
             if isinstance(layer, keras.layers.PReLU) and tuple(layer.alpha.shape) == (1, 1, 1)}
    swap = {layer.name for layer in model.layers if convertible(layer) and layer.name not in leaky}
    steep = {name for name in swap if (keras.ops.convert_to_numpy(model.get_layer(name).alpha) > 1).any()}
    kept = [l.name for l in model.layers if isinstance(l, keras.layers.PReLU) and l.name not in swap | set(leaky)]
    if kept:
        warnings.warn(f"PReLU layers {kept} have neither one slope per channel shared over height and width nor "
                      "one slope in all, and stay PRELU ops (slow in int8)")
    folded = _fold_initial_block(model)

    def call_layer(layer, inputs):
        if layer.name in folded:
            return folded[layer.name](inputs)
        if layer.name in leaky:
            # XNNPACK refuses an int8 LEAKY_RELU whose slope (times the input/output scale ratio,
            # about 1) is under 2**-8; over the whole int8 input range its negative branch then
            # moves the output by less than one int8 step, so a ReLU stands in for it.
            if abs(leaky[layer.name]) < 2**-8:
                return keras.layers.ReLU(name=layer.name)(inputs)
            return LeakyPReLU(leaky[layer.name], name=layer.name)(inputs)
        if layer.name in swap:
            copy = MaximumPReLU(name=layer.name, slopes_above_one=True) if layer.name in steep else form(name=layer.name)
            outputs = copy(inputs)
            copy.set_weights(layer.get_weights())
            return outputs
        return copy_layer(layer, inputs)

    return _rebuilt(model, call_layer)


def clip_logits(model, lower, upper):
    """`model` with its logits clipped to `[lower, upper]` by a last `ClipLogits` layer named
    `logits_clip` (the int8 export; `enet_keras.export.tflite.logit_range` picks the bounds).

    Args:
        model: a `keras.Model` with one output of logits.
        lower: float. The lower bound.
        upper: float. The upper bound.

    Returns:
        A `keras.Model` sharing `model`'s layers and weights.

    Example:

    >>> from enet_keras import ENet
    >>> clip_logits(ENet(num_classes=3), -2.0, 12.0).layers[-1].name
    'logits_clip'
    """
    outputs = ClipLogits(lower, upper, name="logits_clip")(model.outputs[0])
    return keras.Model(model.input, outputs, name=model.name)


def shift_logits(model, offsets):
    """A copy of `model` whose logits are `offsets` higher, class by class: the offsets are added
    to the bias of the layer that outputs the logits (ENet's `fullconv`), so the model keeps its
    layers, runtime cost and export forms.

    Args:
        model: a functional `keras.Model` with one output of logits, whose last layer has a bias
            with one value per class.
        offsets: sequence of floats, one per class.

    Returns:
        A `keras.Model` with its own copies of the weights.

    Raises:
        ValueError: if the last layer has no bias, or `offsets` does not have one value per class.

    Example:

    >>> from enet_keras import ENet
    >>> model = ENet(num_classes=3)
    >>> shifted = shift_logits(model, [0.0, -1.0, 0.5])
    >>> [float(v) for v in shifted.get_layer("fullconv").bias - model.get_layer("fullconv").bias]
    [0.0, -1.0, 0.5]
    """
    (last,) = [layer for layer in model.layers if layer.output is model.outputs[0]]
    bias = getattr(last, "bias", None)
    if bias is None:
        raise ValueError(f"The last layer of {model.name}, {last.name!r}, has no bias to hold per-class logit offsets")
    offsets = np.asarray(offsets, np.float32).reshape(-1)
    if offsets.shape != tuple(bias.shape):
        raise ValueError(f"offsets must have one value per class ({bias.shape[0]} for {model.name}). "
                         f"Received: {offsets.shape[0]} values")
    copy = _rebuilt(model, copy_layer)
    copy.get_layer(last.name).bias.assign(keras.ops.convert_to_numpy(bias) + offsets)
    return copy


def _fold_initial_block(model):
    """Replacements (layer name -> function of its inputs) that fold ENet's `rescaling` and
    `initial_bn` into the two branches of the initial block; {} for other models."""
    names = {layer.name: layer for layer in model.layers}
    conv, pool, bn = names.get("initial_conv"), names.get("initial_pool"), names.get("initial_bn")
    rescaling = names.get("rescaling")
    if not (isinstance(conv, keras.layers.Conv2D) and not conv.use_bias and conv.activation is keras.activations.linear
            and isinstance(pool, keras.layers.MaxPooling2D) and isinstance(bn, keras.layers.BatchNormalization)
            and isinstance(names.get("initial_concat"), keras.layers.Concatenate)):
        return {}
    scale, shift = bn_scale_shift(bn)
    pixel_scale = 1.0
    folded = {"initial_bn": lambda x: x}
    config = rescaling.get_config() if isinstance(rescaling, keras.layers.Rescaling) else None
    if config is not None and np.ndim(config["scale"]) == 0 and config["offset"] == 0:
        pixel_scale = float(config["scale"])
        folded["rescaling"] = lambda x: x
    kernel = conv.get_weights()[0]
    filters = kernel.shape[-1]

    def initial_conv(x):
        layer = keras.layers.Conv2D.from_config({**conv.get_config(), "use_bias": True})
        y = layer(x)
        layer.set_weights([(kernel * pixel_scale * scale[:filters]).astype(np.float32),
                           shift[:filters].astype(np.float32)])
        return y

    def initial_pool(x):
        # An affine map commutes with max pooling only for positive scales, so it goes after.
        affine = keras.layers.DepthwiseConv2D(1, name="initial_pool_bn")
        y = affine(keras.layers.MaxPooling2D.from_config(pool.get_config())(x))
        affine.set_weights([(pixel_scale * scale[filters:]).reshape(1, 1, -1, 1).astype(np.float32),
                            shift[filters:].astype(np.float32)])
        return y

    folded.update(initial_conv=initial_conv, initial_pool=initial_pool)
    return folded
