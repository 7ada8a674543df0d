"""ENet (Paszke, Chaurasia, Kim, Culurciello 2016, "ENet: A Deep Neural Network Architecture for
Real-Time Semantic Segmentation", arXiv 1606.02147), Table 1, as a Keras 3 functional model."""

import os
import zipfile

import keras
import numpy as np

from enet_keras.blocks import DownsamplingBottleneck, InitialBlock, RegularBottleneck, UpsamplingBottleneck

# Stages 2 and 3 (the paper's Table 1): stage 3 repeats stage 2 without bottleneck2.0.
_STAGE_2_3 = (
    ("regular", 1),
    ("dilated", 2),
    ("asymmetric", 1),
    ("dilated", 4),
    ("regular", 1),
    ("dilated", 8),
    ("asymmetric", 1),
    ("dilated", 16),
)
ACTIVATIONS = ("prelu", "prelu_layer", "relu")


def _check_arguments(num_classes, input_shape, activation, dropout_rates):
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2. Received: num_classes={num_classes!r}")
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(
            "input_shape must be (height, width, 3): RGB images, channels last. "
            f"Received: input_shape={tuple(input_shape)}"
        )
    for size, what in zip(input_shape[:2], ("height", "width")):
        if size is not None and (size <= 0 or size % 8):
            lower, upper = (size // 8) * 8, (size // 8 + 1) * 8
            sizes = f"{lower} or {upper}" if lower > 0 else f"{upper}"
            raise ValueError(
                f"ENet downsamples by 8, so the input {what} must be a multiple of 8 (e.g. {sizes}), "
                f"or None for any size. Received: input_shape={tuple(input_shape)}"
            )
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}. Received: activation={activation!r}")
    if len(dropout_rates) != 2 or not all(0 <= rate < 1 for rate in dropout_rates):
        raise ValueError(
            "dropout_rates must be two rates in [0, 1): before and after bottleneck2_0. "
            f"Received: dropout_rates={tuple(dropout_rates)}"
        )


def ENet(
    num_classes,
    input_shape=(None, None, 3),
    encoder_only=False,
    activation="prelu",
    dropout_rates=(0.01, 0.1),
    weights=None,
    name=None,
):
    """Builds ENet, the paper's network exactly (Table 1), as a functional `keras.Model`.

    The model takes RGB images with values in [0, 255] (uint8 or float; scaled to [0, 1] inside
    the model, so every export takes raw pixels) and returns per-pixel logits.

    Layer names follow the paper: `initial`, `bottleneck1_0` ... `bottleneck1_4`,
    `bottleneck2_0` ... `bottleneck2_8`, `bottleneck3_1` ... `bottleneck3_8` (stage 3 repeats
    stage 2 without bottleneck2_0, so its indices match stage 2's), `bottleneck4_0` ...
    `bottleneck4_2`, `bottleneck5_0`, `bottleneck5_1`, `fullconv`; each block's layers carry its
    name as a prefix.

    Args:
        num_classes: int. Number of classes (>= 2), the channels of the output logits.
        input_shape: tuple. `(height, width, 3)`; height and width are multiples of 8 or None
            (any multiple of 8 at run time). Defaults to `(None, None, 3)`.
        encoder_only: bool. Build the paper's first training stage instead: the encoder and a
            1x1 classifier (`encoder_classifier`) with logits at 1/8 of the input size. Its
            layers share the full model's names, so `transfer_weights` moves them across.
            Defaults to False.
        activation: str. `"prelu"` (the paper: one slope per channel), `"prelu_layer"` (one
            slope per layer: int8 exports it as LEAKY_RELU, which XNNPACK runs; on a 2-core
            Intel Xeon int8 then took 0.59x of fp32's time with 2 threads, against 0.8-0.9x;
            docs/int8.md) or `"relu"`. Defaults to `"prelu"`.
        dropout_rates: tuple of two floats. Spatial dropout in stage 1 and from bottleneck2_0
            on. Defaults to `(0.01, 0.1)`, the paper's.
        weights: None, `"camvid"` (weights trained on CamVid's 11 classes, shipped with the
            package for `activation="prelu"` and `"prelu_layer"`) or the path of a
            `.weights.h5` file. Defaults to None (random).
        name: str. Model name. Defaults to `"enet"` or `"enet_encoder"`.

    Returns:
        A `keras.Model` mapping (B, H, W, 3) images to (B, H, W, num_classes) logits, or
        (B, H/8, W/8, num_classes) with `encoder_only=True`.

    Raises:
        ValueError: for num_classes < 2, an input shape that is not (H, W, 3) with H and W
            multiples of 8, an unknown activation, bad dropout rates, or unknown weights.

    Example:

    >>> model = ENet(num_classes=19)
    >>> model.output_shape
    (None, None, None, 19)
    """
    input_shape = tuple(input_shape)
    _check_arguments(num_classes, input_shape, activation, dropout_rates)
    stage1_dropout, dropout = dropout_rates

    image = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescaling")(image)
    x = InitialBlock(x, activation=activation, name="initial")

    # Stage 1: 1/4 resolution, 64 channels.
    x, indices1 = DownsamplingBottleneck(x, 64, stage1_dropout, activation, name="bottleneck1_0")
    for index in range(1, 5):
        x = RegularBottleneck(x, dropout_rate=stage1_dropout, activation=activation, name=f"bottleneck1_{index}")

    # Stages 2 and 3: 1/8 resolution, 128 channels.
    x, indices2 = DownsamplingBottleneck(x, 128, dropout, activation, name="bottleneck2_0")
    for stage in (2, 3):
        for index, (kind, dilation_rate) in enumerate(_STAGE_2_3, start=1):
            x = RegularBottleneck(
                x, kind, dilation_rate, dropout, activation, name=f"bottleneck{stage}_{index}"
            )

    if encoder_only:
        logits = keras.layers.Conv2D(num_classes, 1, dtype="float32", name="encoder_classifier")(x)
        model = keras.Model(image, logits, name=name or "enet_encoder")
    else:
        # Stage 4 and 5: the decoder. The authors' Torch decoder has ReLUs and no dropout; we
        # follow the paper's text (PReLU, dropout 0.1 after bottleneck2_0), like PyTorch-ENet's
        # dropout.
        x = UpsamplingBottleneck(x, indices2, 64, dropout, activation, name="bottleneck4_0")
        for index in (1, 2):
            x = RegularBottleneck(x, dropout_rate=dropout, activation=activation, name=f"bottleneck4_{index}")
        x = UpsamplingBottleneck(x, indices1, 16, dropout, activation, name="bottleneck5_0")
        x = RegularBottleneck(x, dropout_rate=dropout, activation=activation, name="bottleneck5_1")
        # The authors' final layer: a 2x2 stride-2 full (transposed) convolution with bias.
        # PyTorch-ENet uses 3x3 instead; we keep the authors'.
        logits = keras.layers.Conv2DTranspose(
            num_classes, 2, strides=2, padding="same", dtype="float32", name="fullconv"
        )(x)
        model = keras.Model(image, logits, name=name or "enet")

    if weights is not None:
        _load_weights(model, weights, num_classes, encoder_only, activation)
    return model


def _load_weights(model, weights, num_classes, encoder_only, activation):
    from enet_keras import pretrained

    if weights in pretrained.WEIGHTS:
        path = pretrained.weights_path(weights, num_classes, encoder_only, activation)
    elif isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        path = weights
    else:
        raise ValueError(
            f"weights must be None, one of {sorted(pretrained.WEIGHTS)} or the path of an existing "
            f".weights.h5 file. Received: weights={weights!r}"
        )
    model.load_weights(path)


def transfer_weights(source, target, skip=()):
    """Copies weights from `source` to `target` layer by layer, matching layers by name.

    This is how the paper's stage-2 network starts from the trained encoder: the encoder model
    (`ENet(..., encoder_only=True)`) and the full model share their layer names. A PReLU with one
    slope per channel copied into one with a single slope (`activation="prelu_layer"`) gives
    it the mean of its slopes, so a per-layer model can be fine-tuned from a per-channel one.

    Args:
        source: `keras.Model` to copy from.
        target: `keras.Model` to copy into.
        skip: iterable of str. Layer names not to copy.

    Returns:
        The list of layer names copied.

    Raises:
        ValueError: if two layers of the same name hold weights of different shapes.

    Example:

    >>> encoder = ENet(num_classes=3, encoder_only=True)
    >>> full = ENet(num_classes=3)
    >>> "bottleneck3_8_expand_conv" in transfer_weights(encoder, full)
    True
    """
    target_layers = {layer.name: layer for layer in target.layers}
    copied = []
    for layer in source.layers:
        if layer.name in skip or not layer.weights or layer.name not in target_layers:
            continue
        destination = target_layers[layer.name]
        source_shapes = [tuple(w.shape) for w in layer.weights]
        target_shapes = [tuple(w.shape) for w in destination.weights]
        if isinstance(layer, keras.layers.PReLU) and target_shapes == [(1, 1, 1)] and len(source_shapes[0]) == 3:
            destination.alpha.assign(keras.ops.mean(layer.alpha) * keras.ops.ones((1, 1, 1)))
            copied.append(layer.name)
            continue
        if source_shapes != target_shapes:
            raise ValueError(
                f"Layer {layer.name!r} has weights of shapes {source_shapes} in {source.name!r} "
                f"but {target_shapes} in {target.name!r}"
            )
        destination.set_weights(layer.get_weights())
        copied.append(layer.name)
    return copied


def check_size(value, flag):
    """Raises ValueError naming `flag` unless `value` is a positive integer multiple of 8 (ENet
    downsamples by 8), suggesting the nearest sizes that are."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0 or value % 8:
        near = ""
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
            lower, upper = (value // 8) * 8, (value // 8 + 1) * 8
            near = f", e.g. {lower} or {upper}" if lower > 0 else f", e.g. {upper}"
        raise ValueError(f"{flag} must be a positive multiple of 8 (ENet downsamples by 8){near}. "
                         f"Received: {value!r}")


# Floats in all of ENet's layer outputs per input pixel (533 at 360x480, counted from the
# layers' output shapes), the activations a training step keeps for its gradients.
_FLOATS_PER_PIXEL = 533


def check_memory(height, width, batch_size=1, training=False, flag="size"):
    """Refuses an input size whose activations cannot fit this machine's memory, before work
    starts (instead of an out-of-memory kill or a segfault minutes later).

    The estimate is `batch * height * width * 533` float32 layer outputs, twice that when
    training (the gradients); the limit is the physical memory.

    Args:
        height, width: int. Input size.
        batch_size: int. Images per step. Defaults to 1.
        training: bool. Whether gradients are kept too. Defaults to False.
        flag: str. The flag that set the size, for the message. Defaults to "size".

    Raises:
        ValueError: naming `flag`, the size and both amounts in GB.
    """
    needed = batch_size * height * width * _FLOATS_PER_PIXEL * 4 * (2 if training else 1)
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if needed > available:
        raise ValueError(
            f"{flag}: {height}x{width} (batch {batch_size}) needs about {needed / 1e9:.0f} GB for ENet's "
            f"activations{' and gradients' if training else ''}; this machine has {available / 1e9:.0f} GB"
        )


def check_full_network(model, flag="--model"):
    """Raises ValueError naming `flag` if `model` is the encoder stage (`encoder_only=True`),
    whose logits are 1/8 of the input: evaluating, predicting or exporting wants the whole ENet."""
    if any(layer.name == "encoder_classifier" for layer in model.layers):
        raise ValueError(
            f"{flag}: {model.name} is an encoder-only ENet (the first training stage; its output is 1/8 "
            "of the input). Use the whole network: <run_dir>/best.keras or <run_dir>/decoder/best.keras"
        )


def check_model_file(path, flag="--model"):
    """Checks, without loading it, that `path` is a whole `.keras` file; returns the path as str.

    Raises:
        FileNotFoundError: if there is no file at `path`.
        ValueError: if it is a folder, empty, or not a zip archive (truncated or another format).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{flag}: no model file at {path}")
    if os.path.isdir(path):
        raise ValueError(f"{flag}: {path} is a folder; expected a .keras file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{flag}: {path} is empty; expected a .keras file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{flag}: {path} is not a .keras file (a .keras file is a zip archive; this one is "
                         "truncated or another format)")
    return path


def load_model(path, flag="--model", compile=False):
    """Loads a trained `.keras` ENet in Keras' safe mode (a file with a Lambda layer is refused
    without running its code), with errors that name the file and say what is wrong with it.

    Args:
        path: str or PathLike. A `.keras` file.
        flag: str. The command-line flag the path came from, named in errors. Defaults to
            `"--model"`.
        compile: bool. Restore the loss, metrics and optimizer too. Defaults to False.

    Returns:
        The `keras.Model`.

    Raises:
        FileNotFoundError: if there is no file at `path`.
        ValueError: if the file is not a complete `.keras` archive or Keras cannot load it.

    Example:

    >>> ENet(num_classes=3).save("/tmp/enet3.keras")
    >>> load_model("/tmp/enet3.keras").output_shape
    (None, None, None, 3)
    """
    import enet_keras  # noqa: F401  (registers the custom layers, loss and metrics)

    path = check_model_file(path, flag)
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - whatever Keras raises, name the file
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{flag}: cannot load {path} as an ENet .keras model: {first}") from error
