"""The private Keras, TensorFlow and LiteRT APIs that enet_keras needs, reached from here only.

Each is used because no public API gives the same: the functional graph's nodes (to rebuild a
model layer by layer), the list of ops of a LiteRT interpreter (to name the ops of an export and
count XNNPACK's share), freezing a concrete function (to count FLOPs), the flatbuffer schema (to
find Flex ops and edit calibrated ranges), the TFLite converter's calibrate-only mode and
quantizer (to quantize with ranges we measure), TensorRT's availability, and two mends that let
`model.fit` run under `MultiWorkerMirroredStrategy`.
`tests/test_internals.py` is the canary: it fails loudly when a Keras, TensorFlow or LiteRT
release changes one of them.
"""

import contextlib


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


@contextlib.contextmanager
def fit_under_multi_worker(model):
    """Lets Keras 3's `model.fit` run under `tf.distribute.MultiWorkerMirroredStrategy`
    (keras-team/keras#20585), within this block, by mending the two places that fail:

    - `Model._maybe_symbolic_build` averages a distributed input batch across workers with
      `strategy.reduce` just to learn its shapes, which a collective strategy cannot do eagerly
      on a `PerReplica`: this model takes the first local replica's batch instead;
    - the TensorFlow trainer's `reduce_per_replica` averages each step's logs with
      `strategy.reduce("MEAN", v, axis=0)`, which fails on the scalar losses and metrics:
      scalars are averaged with `axis=None`. Metrics are already global (their variables are
      all-reduced on every update), so every worker logs the same values.
    """
    import tensorflow as tf
    from keras import tree
    from keras.src.backend.tensorflow import trainer

    strategy = model.distribute_strategy
    original_reduce = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None) if trainer._is_per_replica_instance(v) else v,
                values,
            )
        return original_reduce(values, strategy, reduction)

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tree.map_structure(
                    lambda x: strategy.experimental_local_results(x)[0]
                    if isinstance(x, tf.distribute.DistributedValues) else x,
                    next(it),
                )
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    trainer.reduce_per_replica = reduce_per_replica
    model._maybe_symbolic_build = maybe_symbolic_build
    try:
        yield
    finally:
        trainer.reduce_per_replica = original_reduce
        del model._maybe_symbolic_build
