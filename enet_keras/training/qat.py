"""Quantization-aware training (QAT) of ENet with tensorflow-model-optimization.

tfmot 0.8 quantizes tf_keras (Keras 2) models only, and our ENet is a Keras 3 model. The design:

1. `tf_keras_twin` rebuilds the trained Keras 3 model layer by layer in tf_keras, walking the
   functional graph of its int8 export form (`enet_keras.rewrite.int8_export_form`: the
   initial block's normalization folded into its branches, every PReLU as `max(x, alpha * x)`,
   exact for slopes <= 1, or as `leaky_relu(x, slope)` with one slope per layer): standard
   layers from their configs, our custom layers from tf_keras twins below. Layer names and
   weights are the same, so weights copy by name.
2. `quantize_model` annotates the twin for tfmot's default 8-bit scheme: convolutions,
   Conv+BatchNormalization pairs, Add, Concatenate and pooling take tfmot's own configs; a
   BatchNormalization that follows no convolution quantizes its output; the PReLU twin
   quantizes its slopes and output, the LeakyPReLU twin its output; the index pooling,
   unpooling and channel padding only move values, so they get no fake-quantization (their
   output keeps the scale of their input, as in TFLite).
3. `fine_tune` trains the quantized model with `model.fit` on the same `tf.data` pipeline and
   loss as float training (the Keras 3 loss runs on TensorFlow tensors).
4. `convert_int8` converts it to a full-integer TFLite model (uint8 in, int8 out), taking the
   ranges QAT learned and calibrating the few tensors it has none for on training images.

tfmot picks tf_keras only when `TF_USE_LEGACY_KERAS=1` is set before it is imported; this module
sets it (if unset) before importing tfmot. Our own code uses Keras 3 through `import keras`,
which the variable does not affect.
"""

import os
import warnings

import keras
import tensorflow as tf

from enet_keras import _internals, layers as enet_layers
from enet_keras.export.tflite import check_export_size, convert_builtin_only, set_full_integer
from enet_keras.rewrite import int8_export_form, rebuild_graph

_SKIPPED_CONFIG_KEYS = ("dtype",)
_INITIALIZER_SUFFIXES = ("_initializer", "_regularizer", "_constraint")


def _tf_keras():
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    try:
        import tf_keras
        import tensorflow_model_optimization as tfmot
    except ImportError as error:
        raise ImportError(
            "Quantization-aware training needs tf_keras and tensorflow-model-optimization: "
            'pip install "enet_keras[qat]"'
        ) from error
    if os.environ.get("TF_USE_LEGACY_KERAS") not in ("1", "true", "True"):
        raise ValueError(
            "tfmot only quantizes tf_keras models; set TF_USE_LEGACY_KERAS=1 (it is set to "
            f"{os.environ['TF_USE_LEGACY_KERAS']!r})"
        )
    return tf_keras, tfmot


def _twin_classes():
    """The tf_keras twins of our custom layers (defined lazily: tf_keras is an optional extra)."""
    tf_keras, tfmot = _tf_keras()
    if hasattr(_twin_classes, "cache"):
        return _twin_classes.cache

    class MaxPoolingWithArgmax2D(tf_keras.layers.Layer):
        """tf_keras twin of `enet_keras.layers.MaxPoolingWithArgmax2D` (the same ops)."""

        def call(self, inputs):
            return enet_layers.MaxPoolingWithArgmax2D.call(self, inputs)

    class MaxUnpooling2D(tf_keras.layers.Layer):
        """tf_keras twin of `enet_keras.layers.MaxUnpooling2D`."""

        def call(self, inputs):
            return enet_layers.MaxUnpooling2D.call(self, inputs)

    class ChannelPadding(tf_keras.layers.Layer):
        """tf_keras twin of `enet_keras.layers.ChannelPadding`."""

        def __init__(self, channels, **kwargs):
            super().__init__(**kwargs)
            self.channels = channels

        def call(self, inputs):
            return tf.pad(inputs, [[0, 0], [0, 0], [0, 0], [0, self.channels]])

        def get_config(self):
            return {**super().get_config(), "channels": self.channels}

    class MaximumPReLU(tf_keras.layers.Layer):
        """tf_keras twin of `enet_keras.layers.MaximumPReLU`: `max(x, alpha * x)`, split for
        slopes above 1."""

        def __init__(self, slopes_above_one=False, **kwargs):
            super().__init__(**kwargs)
            self.slopes_above_one = slopes_above_one

        def build(self, input_shape):
            self.alpha = self.add_weight(name="alpha", shape=(1, 1, input_shape[-1]), initializer="zeros")

        def call(self, inputs):
            if not self.slopes_above_one:
                return tf.maximum(inputs, inputs * self.alpha)
            below = tf.minimum(self.alpha, 1.0)
            return tf.maximum(inputs, inputs * below) + (self.alpha - below) * tf.minimum(inputs, 0.0)

        def get_config(self):
            return {**super().get_config(), "slopes_above_one": self.slopes_above_one}

    class LeakyPReLU(tf_keras.layers.Layer):
        """tf_keras twin of `enet_keras.layers.LeakyPReLU`: `leaky_relu(x, slope)`, the slope a
        constant (one LEAKY_RELU op in int8)."""

        def __init__(self, slope, **kwargs):
            super().__init__(**kwargs)
            self.slope = float(slope)

        def call(self, inputs):
            return tf.nn.leaky_relu(inputs, alpha=self.slope)

        def get_config(self):
            return {**super().get_config(), "slope": self.slope}

    quantizers = tfmot.quantization.keras.quantizers

    class NoQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        """For layers that only move values (pooling indices, unpooling, padding, rescaling)."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    class OutputQuantizeConfig(NoQuantizeConfig):
        """The output to 8 bits (a BatchNormalization that follows no convolution)."""

        def get_output_quantizers(self, layer):
            return [quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    class PReLUQuantizeConfig(OutputQuantizeConfig):
        """The slopes to 8 bits (per tensor, as TFLite's MUL takes them) and the output to 8 bits."""

        def get_weights_and_quantizers(self, layer):
            return [(layer.alpha, quantizers.LastValueQuantizer(num_bits=8, symmetric=True, narrow_range=False, per_axis=False))]

        def set_quantize_weights(self, layer, quantize_weights):
            layer.alpha = quantize_weights[0]

    _twin_classes.cache = {
        "MaxPoolingWithArgmax2D": MaxPoolingWithArgmax2D, "MaxUnpooling2D": MaxUnpooling2D,
        "ChannelPadding": ChannelPadding, "MaximumPReLU": MaximumPReLU, "LeakyPReLU": LeakyPReLU,
        "NoQuantizeConfig": NoQuantizeConfig, "OutputQuantizeConfig": OutputQuantizeConfig,
        "PReLUQuantizeConfig": PReLUQuantizeConfig,
    }
    return _twin_classes.cache


def _standard_config(layer):
    config = {k: v for k, v in layer.get_config().items() if k not in _SKIPPED_CONFIG_KEYS}
    # Weights are copied afterwards; Keras 3's serialized initializers need not load in tf_keras.
    return {k: v for k, v in config.items() if not k.endswith(_INITIALIZER_SUFFIXES)}


def tf_keras_twin(model):
    """Rebuilds a functional Keras 3 ENet in tf_keras, in its int8 export form, with the same
    weights.

    The twin is built from `enet_keras.rewrite.int8_export_form(model)`: the initial
    block's normalization is folded into its two branches and every PReLU is `max(x, alpha * x)`.
    It computes the same function as `model`, and converts to the same int8 graph as post-training
    quantization does.

    Args:
        model: a functional Keras 3 `keras.Model`, such as a trained `ENet(num_classes)`.

    Returns:
        A `tf_keras.Model` computing the same function, with the export form's layer names.

    Raises:
        ValueError: if a PReLU is not shared over height and width (it has no int8 export
            form), or the model holds a layer with no tf_keras twin.

    Example:

    >>> from enet_keras import ENet
    >>> twin = tf_keras_twin(ENet(num_classes=3))
    >>> twin.get_layer("bottleneck2_1_expand_conv").kernel.shape
    TensorShape([1, 1, 32, 128])
    """
    tf_keras, _ = _tf_keras()
    twins = _twin_classes()
    with warnings.catch_warnings():  # a PReLU left as it is gets its own error below
        warnings.simplefilter("ignore", UserWarning)
        model = int8_export_form(model)

    def make_input(layer, tensor):
        return tf_keras.Input(batch_shape=tensor.shape, name=layer.name)

    inputs, outputs = rebuild_graph(model, lambda layer, x: _twin_layer(layer, tf_keras, twins)(x), make_input)
    twin_model = tf_keras.Model(inputs, outputs, name=model.name)
    for layer in model.layers:
        if layer.weights:
            twin_model.get_layer(layer.name).set_weights(layer.get_weights())
    return twin_model


def _twin_layer(layer, tf_keras, twins):
    name = type(layer).__name__
    if isinstance(layer, keras.layers.PReLU):
        raise ValueError(
            f"QAT writes PReLU as max(x, alpha*x), which needs slopes shared over height and width; "
            f"layer {layer.name!r} has shared_axes={layer.shared_axes}"
        )
    if name in twins:  # our layers: the name, ChannelPadding's channels, MaximumPReLU's split, LeakyPReLU's slope
        config = {k: v for k, v in layer.get_config().items() if k in ("name", "channels", "slopes_above_one", "slope")}
        return twins[name](**config)
    try:
        return tf_keras.layers.deserialize({"class_name": name, "config": _standard_config(layer)})
    except (ValueError, TypeError) as error:
        raise ValueError(f"Layer {layer.name!r} ({name}) has no tf_keras twin for QAT: {error}") from error


def quantize_model(model):
    """A quantization-aware tf_keras copy of `model` (tfmot's default 8-bit scheme).

    Args:
        model: a functional Keras 3 ENet, usually trained in float.

    Returns:
        A `tf_keras.Model` with fake-quantization, starting from `model`'s weights.

    Example:

    >>> from enet_keras import ENet
    >>> qat = quantize_model(ENet(num_classes=3))
    >>> any("quant" in layer.name for layer in qat.layers)
    True
    """
    tf_keras, tfmot = _tf_keras()
    twins = _twin_classes()
    twin = tf_keras_twin(model)
    after_conv = {
        layer.name for layer in twin.layers
        if isinstance(layer, tf_keras.layers.BatchNormalization)
        and isinstance(_internals.inbound_nodes(layer)[0].inbound_layers, tf_keras.layers.Conv2D)
    }
    annotate = tfmot.quantization.keras.quantize_annotate_layer

    def annotated(layer):
        if isinstance(layer, twins["MaximumPReLU"]):
            return annotate(layer, twins["PReLUQuantizeConfig"]())
        if isinstance(layer, (twins["MaxPoolingWithArgmax2D"], twins["MaxUnpooling2D"], twins["ChannelPadding"],
                              tf_keras.layers.Rescaling)):
            return annotate(layer, twins["NoQuantizeConfig"]())
        if isinstance(layer, twins["LeakyPReLU"]) or (
                isinstance(layer, tf_keras.layers.BatchNormalization) and layer.name not in after_conv):
            return annotate(layer, twins["OutputQuantizeConfig"]())
        if isinstance(layer, tf_keras.layers.InputLayer):
            return layer
        return annotate(layer)

    annotated_model = tf_keras.models.clone_model(twin, clone_function=annotated)
    annotated_model.set_weights(twin.get_weights())
    with tfmot.quantization.keras.quantize_scope(twins):
        return tfmot.quantization.keras.quantize_apply(annotated_model)


def convert_int8(qat_model, height, width, representative_images, num_calibration_images=100):
    """Converts a quantization-aware model to a full-integer TFLite flatbuffer.

    The model takes uint8 images (raw pixels, scale 1) and returns int8 logits, like
    `enet_keras.export.tflite.convert(..., precision="int8")`.

    Args:
        qat_model: a model from `quantize_model` (fine-tuned or not).
        height: int. Input height of the exported model (a multiple of 8).
        width: int. Input width.
        representative_images: iterable of (height, width, 3) images in [0, 255] from the
            training data; they calibrate the few tensors QAT left without ranges.
        num_calibration_images: int. Defaults to 100.

    Returns:
        The `.tflite` flatbuffer as bytes.
    """
    check_export_size(height, width)
    function = tf.function(lambda images: qat_model(images, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec((1, height, width, 3), tf.float32, name="image"))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], qat_model)
    set_full_integer(converter, height, width, representative_images, num_calibration_images)
    return convert_builtin_only(converter)


def fine_tune(qat_model, train_dataset, epochs=4, learning_rate=1e-4, class_weights=None, ignore_label=255,
              steps_per_epoch=None, validation_dataset=None, verbose=2):
    """Fine-tunes a quantization-aware model with `model.fit`, with the float training's loss.

    Args:
        qat_model: a model from `quantize_model`.
        train_dataset: `tf.data.Dataset` of (image, label) batches (`enet_keras.data.make_pipeline`).
        epochs: int. Defaults to 4.
        learning_rate: float. Adam's initial rate, decayed to 0 (power 0.9) over the run; QAT
            starts from trained weights, so it is small. Defaults to 1e-4.
        class_weights: list of floats or None. As in float training (`enet_keras.data.class_weights`).
        ignore_label: int. Defaults to 255.
        steps_per_epoch: int. Steps per epoch, which the learning rate decays over (see
            `enet_keras.training.trainer.training_steps`; a TFRecord dataset does not know its
            length).
        validation_dataset: `tf.data.Dataset` or None, for the loss on held-out data.
        verbose: int. `fit` verbosity. Defaults to 2.

    Returns:
        The `History.history` dict.
    """
    from enet_keras.losses import WeightedSparseCategoricalCrossentropy
    from enet_keras.training.trainer import poly_decay

    tf_keras, _ = _tf_keras()
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1. Received: epochs={epochs}")
    num_classes = int(qat_model.output_shape[-1])
    loss = WeightedSparseCategoricalCrossentropy(class_weights, ignore_label=ignore_label, num_classes=num_classes)
    if not steps_per_epoch:
        raise ValueError("fine_tune needs steps_per_epoch (from training_steps): the learning rate decays over "
                         "epochs * steps_per_epoch steps")
    train_dataset = train_dataset.repeat()
    schedule = poly_decay(learning_rate, epochs, steps_per_epoch, tf_keras.optimizers.schedules)
    # The Keras 3 loss is written with keras.ops, which run on TensorFlow tensors in tf_keras' graph.
    qat_model.compile(tf_keras.optimizers.Adam(schedule), loss=lambda y_true, y_pred: loss(y_true, y_pred))
    history = qat_model.fit(
        train_dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, validation_data=validation_dataset,
        verbose=verbose,
    )
    return history.history


def quantization_aware_training(model, dataset, output_path, data_dir=None, dataset_options=None, crop_size=(240, 320),
                                export_size=(360, 480), epochs=4, batch_size=10, learning_rate=1e-4,
                                steps_per_epoch=None, class_weighting="enet", c=1.02,
                                num_calibration_images=100, seed=0, verbose=2):
    """Fine-tunes a trained float ENet with QAT and writes its full-integer TFLite model.

    Args:
        model: a trained Keras 3 ENet, or the path of its `.keras` file.
        dataset: str. Data source name (`enet_keras.data.get_source`); its train split trains,
            and calibrates the tensors QAT has no ranges for.
        output_path: str. The `.tflite` file to write (atomically).
        data_dir: str or None. Folder of the dataset.
        dataset_options: dict or None. Options of the data source.
        crop_size: (height, width) of the training crops. Defaults to (240, 320).
        export_size: (height, width) of the exported model. Defaults to (360, 480).
        epochs, batch_size, learning_rate, steps_per_epoch: of the fine-tuning.
        class_weighting: `"enet"`, `"median"` or `"none"`, with `c` for `"enet"`; as in float training.
        num_calibration_images: int. Defaults to 100.
        seed: int. Shuffle and augmentation seed. Defaults to 0.
        verbose: int. Defaults to 2.

    Returns:
        A dict with the output path, the training history, the settings and `qat_model`, the
        fine-tuned quantization-aware tf_keras model.

    Raises:
        ValueError: if the model's class count differs from the dataset's.

    Example:

    >>> quantization_aware_training("runs/camvid/best.keras", "camvid", "runs/camvid/qat/enet_int8_qat.tflite",
    ...                             data_dir="../shared/data/camvid")  # doctest: +SKIP
    """
    from enet_keras import data
    from enet_keras.data import calibration_images
    from enet_keras.files import atomic_write_bytes
    from enet_keras.training.trainer import training_steps

    if isinstance(model, (str, os.PathLike)):
        from enet_keras.model import load_model

        model = load_model(model)
    keras.utils.set_random_seed(seed)
    source = data.get_source(dataset, "train", data_dir, **(dataset_options or {}))
    num_classes = int(model.output_shape[-1])
    if source.num_classes != num_classes:
        raise ValueError(
            f"The model predicts {num_classes} classes but the {dataset} data has {source.num_classes}"
        )
    weights = None
    if class_weighting != "none":
        weights = data.class_weights(source, method=class_weighting, c=c, cache_dir=os.path.dirname(os.fspath(output_path)) or None)
    train_dataset = data.make_pipeline(source, batch_size, tuple(crop_size), training=True, seed=seed)
    qat_model = quantize_model(model)
    steps = training_steps(source.num_examples, batch_size, steps_per_epoch, drop_remainder=True)
    history = fine_tune(qat_model, train_dataset, epochs, learning_rate, weights, source.ignore_label,
                        steps, verbose=verbose)
    images = calibration_images(source, export_size[0], export_size[1], num_calibration_images)
    flatbuffer = convert_int8(qat_model, export_size[0], export_size[1], images, num_calibration_images)
    atomic_write_bytes(output_path, flatbuffer)
    return {"path": os.fspath(output_path), "history": history, "epochs": epochs, "crop_size": list(crop_size),
            "export_size": list(export_size), "learning_rate": learning_rate, "calibration_images": len(images),
            "qat_model": qat_model}
