"""The private Keras, TensorFlow and LiteRT APIs that enet_keras needs, reached from here only.

Each is used because no public API gives the same: the functional graph's nodes (to rebuild a
model layer by layer), the list of ops of a LiteRT interpreter (to name the ops of an export and
count XNNPACK's share), freezing a concrete function (to count FLOPs), the flatbuffer schema (to
find Flex ops and edit calibrated ranges), the TFLite converter's calibrate-only mode and
quantizer (to quantize with ranges we measure) and TensorRT's availability.
`tests/test_internals.py` is the canary: it fails loudly when a Keras, TensorFlow or LiteRT
release changes one of them.
"""


def inbound_nodes(layer):
    """The nodes where `layer` is called (Keras 3 or tf_keras)."""
    return layer._inbound_nodes


def outbound_nodes(layer):
    """The nodes that consume `layer`'s outputs (Keras 3)."""
    return layer._outbound_nodes


def history(tensor):
    """`(layer, node_index, tensor_index)` of a Keras 3 symbolic tensor: where it comes from."""
    operation, node_index, tensor_index = tensor._keras_history
    return operation, node_index, tensor_index


def is_functional(model):
    """Whether `model` is a functional (graph) Keras 3 model, not a subclassed one."""
    import keras

    return isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth")


def ops_details(interpreter):
    """The op list of a LiteRT `Interpreter`: dicts with `op_name`, `inputs`, `outputs`, where
    a delegated partition shows as one `DELEGATE` op."""
    return interpreter._get_ops_details()


def set_calibrate_only(converter):
    """Makes `converter.convert()` stop after post-training calibration and return the float
    flatbuffer with each activation's calibrated (min, max), as `QuantizationDebugger` does."""
    converter._experimental_calibrate_only = True


def mlir_quantize(calibrated, input_type, output_type):
    """Quantizes a calibrated flatbuffer with the TFLite converter's quantizer (full integer,
    per-channel weights), with `input_type` and `output_type` (`tf.DType`) at its ends."""
    from tensorflow.lite.python import convert

    return convert.mlir_quantize(calibrated, input_data_type=input_type, output_data_type=output_type)


def freeze(concrete_function):
    """A concrete function with its variables turned into constants (for graph-level counting)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    return convert_variables_to_constants_v2(concrete_function)


def tflite_schema():
    """`(schema, flatbuffer_utils)`: TFLite's generated flatbuffer schema and its reader."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    return schema, flatbuffer_utils


def tensorrt_enabled():
    """Whether TensorFlow's TF-TRT can load TensorRT (False when the module is missing)."""
    try:
        from tensorflow.python.compiler.tensorrt import trt_convert
    except ImportError:
        return False
    return bool(trt_convert._pywrap_py_utils.is_tensorrt_enabled())


def backup_files(callback):
    """`(weights, metadata)`: the files a `keras.callbacks.BackupAndRestore` writes; with
    `double_checkpoint` each has its previous version at the same path plus `.bkp`. Keras
    writes the metadata JSON in place, so a kill or a full disk can leave it empty."""
    return callback._weights_path, callback._training_metadata_path
