"""Canary of enet_keras._internals: each private Keras, TensorFlow or LiteRT API we rely on still
behaves as we use it. A failure here after an upgrade names the API that changed."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from enet_keras import _internals
from enet_keras.export import tflite
from helpers import small_segmenter


def test_functional_graph_nodes():
    inputs = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(4, 3, name="conv")
    bn = keras.layers.BatchNormalization(name="bn")
    model = keras.Model(inputs, bn(conv(inputs)))
    assert _internals.is_functional(model) and not _internals.is_functional(keras.layers.Dense(2))
    (node,) = _internals.inbound_nodes(bn)
    (tensor,) = keras.tree.flatten(node.input_tensors)
    assert _internals.history(tensor) == (conv, 0, 0)
    assert len(_internals.outbound_nodes(conv)) == 1 and len(_internals.inbound_nodes(conv)) == 1


def test_litert_ops_details_and_schema():
    flatbuffer = tflite.convert(small_segmenter(), 32, 32)
    from ai_edge_litert.interpreter import Interpreter

    details = _internals.ops_details(Interpreter(model_content=flatbuffer))
    assert {"op_name", "inputs", "outputs"} <= set(details[0]) and "CONV_2D" in {d["op_name"] for d in details}
    schema, flatbuffer_utils = _internals.tflite_schema()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    assert any(code.builtinCode == schema.BuiltinOperator.CONV_2D for code in model.operatorCodes)


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")  # the converter's, for calibrated inputs
def test_tflite_calibrate_only_and_mlir_quantize():
    schema, flatbuffer_utils = _internals.tflite_schema()
    converter = tf.lite.TFLiteConverter.from_keras_model(tflite.fixed_size_model(small_segmenter(), 32, 32))
    images = [np.full((32, 32, 3), 128, np.uint8)]
    tflite.set_full_integer(converter, 32, 32, images, 1)
    _internals.set_calibrate_only(converter)
    calibrated = converter.convert()
    tensors = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated)).subgraphs[0].tensors
    assert all(t.type == schema.TensorType.FLOAT32 for t in tensors)
    assert any(t.quantization is not None and t.quantization.min is not None for t in tensors)
    quantized = _internals.mlir_quantize(calibrated, tf.uint8, tf.int8)
    tensors = flatbuffer_utils.convert_bytearray_to_object(bytearray(quantized)).subgraphs[0].tensors
    assert {schema.TensorType.UINT8, schema.TensorType.INT8} <= {t.type for t in tensors}


def test_freeze_and_tensorrt_probe():
    variable = tf.Variable(2.0)
    concrete = tf.function(lambda x: x * variable).get_concrete_function(tf.TensorSpec((), tf.float32))
    frozen = _internals.freeze(concrete)
    assert not frozen.variables and float(frozen(tf.constant(3.0))[0]) == 6.0
    assert isinstance(_internals.tensorrt_enabled(), bool)


def test_backup_files_are_where_keras_writes_them(tmp_path):
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"), double_checkpoint=True)
    weights, metadata = _internals.backup_files(backup)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x = np.zeros((4, 2), np.float32)

    class Stop(keras.callbacks.Callback):  # keeps the backup: a fit that ends deletes it
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.fit(x, x[:, :1], epochs=3, verbose=0, callbacks=[backup, Stop()])
    assert os.path.isfile(weights) and os.path.isfile(weights + ".bkp")
    assert json.loads(open(metadata).read())["epoch"] == 2
    assert json.loads(open(metadata + ".bkp").read())["epoch"] == 1


def test_fit_under_multi_worker_mends_what_keras_has_and_puts_it_back():
    # The two workers of tests/test_training.py run the mends for real; this checks, in one
    # process, that what they replace still exists, that fit runs through them, and that
    # leaving the block restores Keras.
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    assert callable(trainer._collective_all_reduce_multi_worker) and callable(trainer._is_per_replica_instance)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    assert callable(model._maybe_symbolic_build) and callable(model._symbolic_build)
    with _internals.fit_under_multi_worker(model):
        assert trainer.reduce_per_replica is not original
        history = model.fit(np.ones((4, 2), np.float32), np.ones((4, 1), np.float32), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert trainer.reduce_per_replica is original and "_maybe_symbolic_build" not in vars(model)


def test_tf_log_filter_keeps_what_the_level_allows():
    from enet_keras import _tf_logs

    lines = ["a Python warning\n", "I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on.\n",
             "W0000 00:00:1.0 1 x.cc:1] a warning\n", "  that goes on\n",
             "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n", "E0000 00:00:1.0 1 y.cc:2] an error\n"]
    drop = (r"INFO: Created TensorFlow Lite XNNPACK delegate",)
    assert _tf_logs._kept(lines, 1, drop) == [lines[0], lines[2], lines[3], lines[5]]
    assert _tf_logs._kept(lines, 3, drop) == [lines[0]]
    assert _tf_logs._kept(lines, 0, ()) == lines
