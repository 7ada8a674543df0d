"""Quantization-aware training (issue: int8 that pays): the tf_keras twin, a QAT round trip and the tool."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest
import keras

import tensorflow_model_optimization  # noqa: E402,F401  (make test installs the qat extra: fail, not skip)
import tf_keras  # noqa: E402,F401

from enet_keras import ENet  # noqa: E402
from enet_keras import rewrite  # noqa: E402
from enet_keras.export import tflite  # noqa: E402
from enet_keras.training import qat  # noqa: E402
from helpers import (assert_same_function, per_pixel_prelu_model, with_random_slopes,  # noqa: E402
                     with_random_statistics, with_slopes_above_one)

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_tf_keras_twin_computes_the_same_function():
    model = with_random_statistics(with_random_slopes(ENet(num_classes=4), -0.5, 1.0))
    twin = qat.tf_keras_twin(model)
    assert [l.name for l in twin.layers] == [l.name for l in rewrite.int8_export_form(model).layers]
    images = np.random.default_rng(1).integers(0, 256, (2, 64, 96, 3)).astype("float32")
    assert_same_function(twin, model, images)


def test_per_layer_slopes_have_a_twin_and_convert_to_leaky_relu():
    # ENet(activation="prelu_layer"): negative slopes too, which training can reach.
    model = with_random_statistics(with_random_slopes(ENet(num_classes=3, activation="prelu_layer"), -0.3, 0.5))
    twin = qat.tf_keras_twin(model)
    images = np.random.default_rng(1).integers(0, 256, (2, 64, 96, 3)).astype("float32")
    assert_same_function(twin, rewrite.int8_export_form(model), images)

    # Converting the whole ENet takes a minute on 2 cores; one Conv-BN-PReLU shows the op.
    x = inputs = keras.Input((None, None, 3), name="image")
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(x))
    x = keras.layers.PReLU(shared_axes=[1, 2, 3], alpha_initializer=keras.initializers.Constant(-0.2))(x)
    small = keras.Model(inputs, keras.layers.Conv2D(3, 1)(x))
    flatbuffer = qat.convert_int8(qat.quantize_model(small), 16, 16, list(images[:, :16, :16].astype(np.uint8)), 2)
    ops = tflite.op_names(flatbuffer)
    assert "LEAKY_RELU" in ops and {"PRELU", "MAXIMUM"}.isdisjoint(ops)


def test_twin_of_slopes_above_one_is_exact():
    model = with_slopes_above_one(with_random_statistics(with_random_slopes(ENet(num_classes=3), 0.05, 0.3)))
    twin = qat.tf_keras_twin(model)
    assert twin.get_layer("bottleneck1_1_act").slopes_above_one
    images = np.random.default_rng(1).integers(0, 256, (2, 64, 96, 3)).astype("float32")
    assert_same_function(twin, model, images)


def test_twin_refuses_prelu_not_shared_over_height_and_width():
    with pytest.raises(ValueError, match="per_pixel_slopes"):
        qat.tf_keras_twin(per_pixel_prelu_model())


def _tool():
    spec = importlib.util.spec_from_file_location("qat_tool", ROOT / "tools" / "qat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pool_unpool_model(seed):
    """Conv-BN-PReLU, index pooling, a convolution and unpooling: the smallest model that has the
    tensors where QAT's ranges meet calibrated ones inside the pooling."""
    from enet_keras.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D

    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((None, None, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.PReLU(shared_axes=[1, 2], alpha_initializer=keras.initializers.Constant(0.2))(x)
    pooled, indices = MaxPoolingWithArgmax2D()(x)
    x = MaxUnpooling2D()([keras.layers.Conv2D(8, 3, padding="same")(pooled), indices])
    return keras.Model(inputs, keras.layers.Conv2D(3, 1)(x))


def test_index_pooling_converts_to_int8_after_annotation():
    # The pooling's corners once came from a SPLIT, and the int8 converter refused some of these
    # models ("same scale constraint"; seed 4 here, and CI's QAT round trip).
    images = list(np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8))
    for seed in range(8):
        flatbuffer = qat.convert_int8(qat.quantize_model(_pool_unpool_model(seed)), 16, 16, images, 2)
        assert "CONV_2D" in tflite.op_names(flatbuffer) and "SPLIT" not in tflite.op_names(flatbuffer)


def test_tool_missing_model_is_named(tmp_path, capsys):
    from enet_keras import cli

    with pytest.raises(SystemExit):
        cli.run(_tool().main, ["--model", str(tmp_path / "nope.keras"), "--output", str(tmp_path / "x.tflite")])
    assert "nope.keras" in capsys.readouterr().err


def test_tool_rejects_class_count_mismatch(tmp_path):
    path = tmp_path / "enet3.keras"
    ENet(num_classes=3).save(path)
    argv = ["--model", str(path), "--output", str(tmp_path / "x.tflite"), "--dataset", "synthetic",
            "--dataset_option", "num_examples=2", "--height", "64", "--width", "64"]
    with pytest.raises(ValueError, match="3 classes"):
        _tool().main(argv)
    assert not (tmp_path / "x.tflite").exists()


@pytest.mark.slow
def test_qat_round_trip_through_the_tool(tmp_path):
    """Annotate, fine-tune, export int8 and run it: in LiteRT against the fake-quantized model,
    and in the TensorFlow-free `tflite/` runtime on uint8 pixels."""
    from ai_edge_litert.interpreter import Interpreter

    from enet_keras import data
    from enet_keras.export import tflite

    keras.utils.set_random_seed(0)
    source = data.get_source("synthetic", "train", num_examples=2, height=64, width=96)
    classes = source.num_classes
    path = tmp_path / "enet.keras"
    model = with_random_slopes(ENet(num_classes=classes), 0.05, 0.3)
    model.save(path)
    output = tmp_path / "qat" / "enet_int8_qat.tflite"
    argv = ["--model", str(path), "--output", str(output), "--dataset", "synthetic",
            "--dataset_option", "num_examples=2", "--dataset_option", "height=64", "--dataset_option", "width=96",
            "--epochs", "1", "--batch_size", "2", "--height", "64", "--width", "64",
            "--export_height", "64", "--export_width", "96", "--num_calibration_images", "2"]
    result = _tool().main(argv)
    summary = json.loads(output.with_name("enet_int8_qat_qat.json").read_text())
    assert summary["export_size"] == [64, 96] and len(summary["history"]["loss"]) == 1
    assert np.isfinite(summary["history"]["loss"][0])

    qat_model = result["qat_model"]
    assert any(type(l).__name__ == "QuantizeWrapperV2" for l in qat_model.layers)
    wrapper = qat_model.get_layer("quant_bottleneck1_1_expand_conv")
    (tuned,) = [w.numpy() for w in wrapper.trainable_weights if "kernel" in w.name]
    assert not np.array_equal(tuned, model.get_layer("bottleneck1_1_expand_conv").kernel.numpy())  # it trained

    flatbuffer = output.read_bytes()
    assert {"PRELU", "SELECT_V2"}.isdisjoint(tflite.op_names(flatbuffer))
    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.int8
    scale, zero_point = out["quantization"]
    errors = []
    for image in data.calibration_images(source, 64, 96, 2):
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        logits = (interpreter.get_tensor(out["index"])[0].astype("float32") - zero_point) * scale
        assert logits.shape == (64, 96, classes)
        expected = qat_model(image[None].astype("float32"), training=False).numpy()[0]
        errors.append(np.abs(logits - expected).mean())
    # The int8 model computes what the fake-quantized model computes, up to rounding: on average
    # within one output quantization step (a lost BatchNorm or slope is many steps off).
    # Argmax agreement says little here: an untrained model's logits differ by a few steps only.
    assert np.mean(errors) < scale, (errors, scale)

    # The device runtime (no TensorFlow) runs it on uint8 pixels.
    import enet_tflite

    segmenter = enet_tflite.Segmenter(str(output))
    classes_map = segmenter.predict(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    assert classes_map.shape == (64, 96) and classes_map.max() < classes
