"""TensorFlow Lite export: fp32, fp16 and full-integer int8, on builtin ops only.

We convert with `TFLiteConverter.from_keras_model` on a copy of the model with a fixed input
size: it folds batch normalization into the convolutions, drops dropout and keeps dilated
convolutions whole. (`model.export(format="litert")` goes through a SavedModel, leaves batch
normalization unfolded and silently allows Flex ops, which the pip LiteRT cannot run.)
"""

import os
import warnings

import numpy as np
import keras
import tensorflow as tf

from enet_keras import _internals, _tf_logs
from enet_keras.data.calibration import take_calibration_images
from enet_keras.files import atomic_write_bytes
from enet_keras.rewrite import clip_logits, int8_export_form

PRECISIONS = ("fp32", "fp16", "int8")


def check_export_size(height, width):
    """Raises `ValueError` unless height and width are positive multiples of 8 (ENet's three
    downsamplings)."""
    for size, what in ((height, "height"), (width, "width")):
        if not isinstance(size, (int, np.integer)) or size <= 0 or size % 8:
            raise ValueError(f"ENet needs an input {what} that is a positive multiple of 8. Received: {what}={size}")


def fixed_size_model(model, height, width, batch_size=1):
    """A copy of a functional `model` whose input is fixed to (batch_size, height, width, 3),
    sharing its weights. Mobile runtimes want static shapes.

    Args:
        model: a functional `keras.Model` (such as `ENet(...)`) taking (B, H, W, 3) images.
        height: int. Input height, a multiple of 8.
        width: int. Input width, a multiple of 8.
        batch_size: int. Defaults to 1.

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: if height or width is not a positive multiple of 8.
    """
    check_export_size(height, width)
    inputs = keras.Input(batch_shape=(batch_size, height, width, 3), name="image")
    return keras.Model(inputs, model(inputs), name=model.name)


def convert(model, height, width, precision="fp32", representative_images=None, num_calibration_images=100,
            export_form=True):
    """Converts a Keras ENet to a TensorFlow Lite flatbuffer with builtin ops only.

    fp32 and fp16 models take float32 images in [0, 255] and return float32 logits. int8 models
    are full-integer: they take uint8 images (raw pixels, quantized exactly with scale 1) and
    return int8 logits; every weight and activation is int8. Their logits are clipped to the
    range `logit_range` finds on the calibration images, which keeps every calibration pixel's
    argmax and gives the int8 logits a step several times finer (fewer ties between classes).

    Args:
        model: `keras.Model`, e.g. `ENet(num_classes)`.
        height: int. Input height of the exported model (a multiple of 8).
        width: int. Input width (a multiple of 8).
        precision: str. `"fp32"`, `"fp16"` (fp16 weights, fp32 compute) or `"int8"`. Defaults to
            `"fp32"`.
        representative_images: iterable of uint8 or float (H, W, 3) images in [0, 255], of the
            export size, drawn from the training data; required for int8.
        num_calibration_images: int. How many of them calibrate int8. Defaults to 100.
        export_form: bool. int8 only: convert `int8_export_form(model)` (same function, fast
            int8 ops) with its logits clipped (`clip_logits`). False converts the model as it
            is (for comparisons). Defaults to True.

    Returns:
        The `.tflite` flatbuffer as bytes.

    Raises:
        ValueError: for an unknown precision, int8 without representative images, or a
            converted model that holds a Flex or custom op.

    Example:

    >>> from enet_keras import ENet
    >>> flatbuffer = convert(ENet(num_classes=3), 64, 64)
    >>> "CONV_2D" in op_names(flatbuffer)
    True
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}. Received: precision={precision!r}")
    if precision == "int8" and representative_images is None:
        raise ValueError("int8 export needs representative_images (images from the training data)")
    if precision == "int8":
        representative_images = _take(representative_images, height, width, num_calibration_images)
        if export_form:
            model = clip_logits(int8_export_form(model), *logit_range(model, representative_images))
    converter = tf.lite.TFLiteConverter.from_keras_model(fixed_size_model(model, height, width))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        set_full_integer(converter, height, width, representative_images, num_calibration_images)
        return quantize_with_measured_ranges(converter, representative_images)
    return convert_builtin_only(converter)


def set_full_integer(converter, height, width, representative_images, num_calibration_images):
    """Sets a `TFLiteConverter` up for full-integer int8: uint8 images in (raw pixels, scale 1),
    int8 logits out, calibrated on `representative_images` of shape (height, width, 3)."""
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.int8
    converter.representative_dataset = _representative_dataset(
        _take(representative_images, height, width, num_calibration_images)
    )


def quantize_with_measured_ranges(converter, images):
    """Post-training full-integer conversion with activation ranges measured on `images`.

    Two things in the converter's own calibration cost ENet int8 accuracy (docs/int8.md):

    - Its calibrator reads a tensor's range after the op that consumes it has run, and LiteRT
      runs ADD and MUL in place. A tensor overwritten that way gets its consumer's output range:
      each bottleneck's expansion got the range of its sum with the shortcut (6x wider in
      stages 2 and 3), and the unpooling's 0/1 masks that of the unpooled values.
    - Quantized MAXIMUM has one scale for its inputs and output, and the quantizer takes the
      output's range. For PReLU as `maximum(x, alpha * x)` that range starts at `alpha * min(x)`,
      so every pre-activation below it saturates before the slope is applied.

    So the converter calibrates on one image only (for a flatbuffer with a range per tensor),
    each range becomes the mean over `images` of each image's min and max (`measured_ranges`),
    `widen_maximum_ranges` fixes the PReLUs, and `quantize_calibrated` quantizes. The mean
    spends fewer int8 steps on values that only a few images reach (it agrees with fp32 on more
    pixels than the overall min and max; docs/int8.md has the table). The outputs of a clip
    (a MAXIMUM or MINIMUM with a constant: `clip_logits`) keep their overall range, so that the
    int8 logits span the clip's bounds. The input's range is [0, 255] (raw uint8 pixels).

    Args:
        converter: a `TFLiteConverter` set up by `set_full_integer`.
        images: list of (H, W, 3) images in [0, 255] of the export size.

    Returns:
        The int8 `.tflite` flatbuffer as bytes.
    """
    calibrated = calibrate_only(converter, images[:1])
    per_image = measured_ranges(calibrated, images)
    ranges = {index: (low.mean(), high.mean()) for index, (low, high) in per_image.items()}
    for index in clip_outputs(calibrated):
        low, high = per_image[index]
        ranges[index] = (low.min(), high.max())
    # The input takes raw pixels (scale 1, zero point 0) whatever the calibration images span:
    # MediaPipe and other uint8 callers feed them as they are.
    _, flatbuffer_utils = _internals.tflite_schema()
    for index in flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated)).subgraphs[0].inputs:
        ranges[int(index)] = (0.0, 255.0)
    calibrated = widen_maximum_ranges(set_ranges(calibrated, ranges))
    return quantize_calibrated(calibrated, converter.inference_input_type, converter.inference_output_type)


def calibrate_only(converter, images):
    """The float flatbuffer with the converter's calibrated (min, max) per activation tensor:
    the input of `quantize_calibrated`.

    Args:
        converter: a `TFLiteConverter` set up by `set_full_integer`.
        images: list of (H, W, 3) images in [0, 255] of the export size.
    """
    converter.representative_dataset = _representative_dataset(images)
    _internals.set_calibrate_only(converter)
    return convert_builtin_only(converter)


def measured_ranges(calibrated, images):
    """Every activation's min and max on each of `images`, read from an interpreter that keeps
    all tensors (no in-place reuse). It holds one image's activations: ENet's take 0.4 GB at
    360x480, 4.7 GB at 1024x2048.

    Args:
        calibrated: flatbuffer from `calibrate_only`.
        images: list of (H, W, 3) images in [0, 255] of the model's input size.

    Returns:
        {tensor index: (array of the per-image minima, array of the maxima)}.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=calibrated,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )
    interpreter.allocate_tensors()
    _, flatbuffer_utils = _internals.tflite_schema()
    tensors = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated)).subgraphs[0].tensors
    activations = [index for index, tensor in enumerate(tensors) if _has_range(tensor)]  # not the weights
    input_index = interpreter.get_input_details()[0]["index"]
    minima, maxima = np.zeros((2, len(activations), len(images)))
    progress = keras.utils.Progbar(len(images), unit_name="calibration image")
    for column, image in enumerate(images):
        interpreter.set_tensor(input_index, np.asarray(image, "float32")[None])
        interpreter.invoke()
        for row, index in enumerate(activations):
            values = interpreter.get_tensor(index)
            minima[row, column], maxima[row, column] = values.min(), values.max()
        _show_progress(progress, column + 1)
    return {index: (minima[row], maxima[row]) for row, index in enumerate(activations)}


def set_ranges(calibrated, ranges):
    """`calibrated` with the (min, max) of each tensor in `ranges` (tensor index: (min, max))
    that has a calibrated range."""
    _, flatbuffer_utils = _internals.tflite_schema()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    tensors = model.subgraphs[0].tensors
    for index, (low, high) in ranges.items():
        if _has_range(tensors[index]):
            tensors[index].quantization.min = np.array([low], "float32")
            tensors[index].quantization.max = np.array([high], "float32")
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def widen_maximum_ranges(calibrated):
    """`calibrated` with each MAXIMUM of two activations (PReLU's `maximum(x, alpha * x)`) given
    the union of its inputs' and output's ranges as its output range, which the quantizer then
    shares with the inputs. A MAXIMUM with a constant (the logit clip) keeps its range."""
    _, flatbuffer_utils = _internals.tflite_schema()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    for op, operands in _min_max_ops(model, "MAXIMUM"):
        if all(_has_range(t) for t in operands):
            output = model.subgraphs[0].tensors[op.outputs[0]].quantization
            output.min = np.array([min(t.quantization.min[0] for t in operands)], "float32")
            output.max = np.array([max(t.quantization.max[0] for t in operands)], "float32")
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def clip_outputs(calibrated):
    """Indices of the tensors that a MAXIMUM or MINIMUM with a constant operand (a clip, such
    as `clip_logits`) produces."""
    _, flatbuffer_utils = _internals.tflite_schema()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    return [index for name in ("MAXIMUM", "MINIMUM") for op, operands in _min_max_ops(model, name)
            if not all(_has_range(t) for t in operands) for index in op.outputs]


def _min_max_ops(model, name):
    """(op, its input and output tensors) for each op of builtin `name` in `model`'s graph."""
    schema, _ = _internals.tflite_schema()
    tensors = model.subgraphs[0].tensors
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) == getattr(schema.BuiltinOperator, name):
            yield op, [tensors[i] for i in [*op.inputs, *op.outputs]]


def _has_range(tensor):
    """Whether a calibrated tensor has one (min, max): activations do, constants do not."""
    quantization = tensor.quantization
    return quantization is not None and quantization.min is not None and len(quantization.min) == 1


def quantize_calibrated(calibrated, input_type=tf.uint8, output_type=tf.int8):
    """Quantizes a calibrated flatbuffer with the converter's own quantizer (the
    `mlir_quantize` that `tf.lite.experimental.QuantizationDebugger` calls too).

    Args:
        calibrated: flatbuffer from `calibrate_only`, its ranges possibly edited.
        input_type: `tf.DType` of the model's input. Defaults to `tf.uint8`.
        output_type: `tf.DType` of its output. Defaults to `tf.int8`.

    Returns:
        The int8 `.tflite` flatbuffer as bytes.
    """
    with _tf_logs.filtered_stderr(drop=(r"fully_quantize: ",)):
        flatbuffer = _internals.mlir_quantize(calibrated, input_type, output_type)
    check_builtin_only(flatbuffer)
    return flatbuffer


def logit_range(model, images, margin=0.1, batch_size=4):
    """Bounds for `clip_logits` that keep the argmax of every pixel of `images`.

    A logit below the smallest winning logit, or above the largest runner-up, never decides
    an argmax; the bounds are those two values, widened by `margin` times their distance.

    Args:
        model: `keras.Model` returning logits (B, H, W, classes), at least 2 classes.
        images: list of (H, W, 3) images in [0, 255], e.g. the calibration images.
        margin: float. Extra room on each side, as a fraction of the range. Defaults to 0.1.
        batch_size: int. Images per forward pass. Defaults to 4.

    Returns:
        A tuple `(lower, upper)` of floats.

    Example:

    >>> from enet_keras import ENet
    >>> lower, upper = logit_range(ENet(num_classes=3), [np.zeros((64, 64, 3))])
    >>> lower < upper
    True
    """
    lowest_winner, highest_runner_up = np.inf, -np.inf
    for start in range(0, len(images), batch_size):
        batch = np.stack([np.asarray(image, "float32") for image in images[start:start + batch_size]])
        top = np.sort(keras.ops.convert_to_numpy(model(batch, training=False)), axis=-1)
        lowest_winner = min(lowest_winner, float(top[..., -1].min()))
        highest_runner_up = max(highest_runner_up, float(top[..., -2].max()))
    lower, upper = sorted((lowest_winner, highest_runner_up))
    room = margin * (upper - lower) + 1e-3
    return lower - room, upper + room


def convert_builtin_only(converter):
    """Runs `converter` and returns the flatbuffer; raises `ValueError` if it holds a Flex or
    custom op (`check_builtin_only`)."""
    # The converter writes the Keras model out with `ExportArchive.write_out`, which prints
    # every captured variable (hundreds of lines); route Keras' messages to absl logging meanwhile.
    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        # int8: the converter warns that input statistics are missing, though post-training
        # calibration provides them, and its quantizer prints a debug line of its flags.
        with warnings.catch_warnings(), _tf_logs.filtered_stderr(drop=(r"fully_quantize: ",)):
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
            flatbuffer = converter.convert()
    finally:
        if interactive:
            keras.config.enable_interactive_logging()
    check_builtin_only(flatbuffer)
    return flatbuffer


def _take(images, height, width, limit):
    return take_calibration_images(images, limit, "representative_images", shape=(height, width, 3))


def _representative_dataset(images):
    def generate():
        progress = keras.utils.Progbar(len(images), unit_name="calibration image")
        for count, image in enumerate(images, 1):
            yield [np.asarray(image, dtype="float32")[None]]
            _show_progress(progress, count)

    return generate


def _show_progress(progress, count):
    # The converter runs with Keras' interactive logging off (see convert_builtin_only);
    # calibration's progress bar is meant to be seen.
    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.enable_interactive_logging()
    try:
        progress.update(count)
    finally:
        if not interactive:
            keras.config.disable_interactive_logging()


def op_names(flatbuffer):
    """The sorted set of operator names in a `.tflite` flatbuffer (no delegate applied).

    Args:
        flatbuffer: bytes of a `.tflite` model.

    Returns:
        A sorted list of op names such as `["ADD", "CONV_2D", ...]`.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=flatbuffer,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    return sorted({op["op_name"] for op in _internals.ops_details(interpreter)})


def check_builtin_only(flatbuffer):
    """Raises `ValueError` if the model holds a Flex (SELECT_TF_OPS) or custom op.

    Reads the operator codes of the flatbuffer itself: Flex ops are stored as custom ops.
    """
    schema, flatbuffer_utils = _internals.tflite_schema()

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    custom = sorted(
        code.customCode.decode() if code.customCode else "CUSTOM"
        for code in model.operatorCodes
        if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.CUSTOM
    )
    if custom:
        raise ValueError(f"The TFLite model holds non-builtin ops {custom}; only TFLITE_BUILTINS are allowed")


def export(model, path, height, width, precision="fp32", representative_images=None, num_calibration_images=100,
           metadata=None):
    """Converts with `convert` and writes the file atomically (never a half-written model).

    Args:
        model: `keras.Model`.
        path: str. Output `.tflite` path.
        height, width, precision, representative_images, num_calibration_images: as in
            `convert`.
        metadata: dict or None. Keyword arguments of `enet_keras.export.metadata.add_metadata`
            (`class_names`, `name`, `version`, `license`): the TFLite metadata MediaPipe's
            ImageSegmenter needs. None writes none. Defaults to None.

    Returns:
        The path written.
    """
    flatbuffer = convert(model, height, width, precision, representative_images, num_calibration_images)
    if metadata is not None:
        from enet_keras.export.metadata import add_metadata

        flatbuffer = add_metadata(flatbuffer, **metadata)
    atomic_write_bytes(path, flatbuffer)
    return os.fspath(path)
