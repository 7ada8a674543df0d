"""The int8 export form (issue: int8 that pays): same function, int8-friendly ops."""

import numpy as np
import pytest
import keras

from enet_keras import ENet, LeakyPReLU, MaximumPReLU
from enet_keras import rewrite
from enet_keras.export import tflite
from helpers import (assert_same_function, per_pixel_prelu_model, with_random_slopes, with_random_statistics,
                     with_slopes_above_one)


def test_export_form_equals_training_form():
    # Trained slopes are often negative.
    model = with_random_statistics(with_random_slopes(ENet(num_classes=3), -0.5, 1.0))
    form = rewrite.int8_export_form(model)
    assert not any(isinstance(l, keras.layers.PReLU) for l in form.layers)
    assert sum(isinstance(l, MaximumPReLU) for l in form.layers) == sum(
        isinstance(l, keras.layers.PReLU) for l in model.layers)
    # The initial block's rescaling and normalization are folded into its two branches.
    kept = [l.name for l in model.layers if l.name not in ("rescaling", "initial_bn")]
    assert sorted(l.name for l in form.layers) == sorted(kept + ["initial_pool_bn"])
    assert form.get_layer("initial_conv").use_bias
    images = np.random.default_rng(1).integers(0, 256, (2, 64, 96, 3)).astype("float32")
    assert_same_function(form, model, images)
    # It is a copy: changing the original afterwards does not change it.
    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    model.get_layer("initial_conv").kernel.assign(np.zeros(model.get_layer("initial_conv").kernel.shape))
    assert_same_function(form, reference, images)


def test_slopes_above_one_get_the_exact_split_form():
    model = with_slopes_above_one(with_random_statistics(with_random_slopes(ENet(num_classes=3), -0.5, 1.0)), low=-0.5)
    form = rewrite.int8_export_form(model)
    assert form.get_layer("bottleneck1_1_act").slopes_above_one
    assert not form.get_layer("bottleneck1_2_act").slopes_above_one
    images = np.random.default_rng(1).integers(0, 256, (2, 64, 96, 3)).astype("float32")
    assert_same_function(form, model, images)


def test_prelu_not_shared_over_height_and_width_stays_with_a_warning():
    with pytest.warns(UserWarning, match="per_pixel_slopes"):
        form = rewrite.int8_export_form(per_pixel_prelu_model())
    assert isinstance(form.get_layer("per_pixel_slopes"), keras.layers.PReLU)


def test_per_layer_slopes_become_one_leaky_relu_each():
    model = with_random_statistics(with_random_slopes(ENet(num_classes=3, activation="prelu_layer"), -0.5, 1.2))
    model.get_layer("bottleneck1_1_act").alpha.assign([[[0.0]]])  # under 2**-8: a ReLU
    form = rewrite.int8_export_form(model)
    assert isinstance(form.get_layer("bottleneck1_1_act"), keras.layers.ReLU)
    leaky = [l for l in form.layers if isinstance(l, LeakyPReLU)]
    assert len(leaky) == 81 and not any(isinstance(l, (keras.layers.PReLU, MaximumPReLU)) for l in form.layers)
    images = np.random.default_rng(1).integers(0, 256, (2, 64, 96, 3)).astype("float32")
    assert_same_function(form, model, images)
    calibration = [image.astype(np.uint8) for image in images[:, :64, :64]]
    ops = tflite.op_names(tflite.convert(model, 64, 64, "int8", calibration))
    # LEAKY_RELU, which XNNPACK runs in int8, and no PRELU.
    assert "LEAKY_RELU" in ops and "PRELU" not in ops


@pytest.mark.slow
def test_int8_tflite_has_no_prelu_and_takes_uint8():
    from ai_edge_litert.interpreter import Interpreter

    # One slope above 1, as in the shipped CamVid weights: the split form, still no PRELU.
    model = with_slopes_above_one(with_random_slopes(ENet(num_classes=3), 0.05, 0.3), "bottleneck5_1_act", high=1.2)
    rng = np.random.default_rng(2)
    calibration = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    flatbuffer = tflite.convert(model, 64, 64, "int8", calibration)
    # No PRELU (XNNPACK does not run it in int8) and no SELECT_V2 (a slow broadcasting kernel).
    assert {"PRELU", "SELECT_V2"}.isdisjoint(tflite.op_names(flatbuffer)) and "MAXIMUM" in tflite.op_names(flatbuffer)
    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    # The first convolution reads the pixels at their own scale (1, raw uint8 values), not at a
    # scale shared with the initial block's normalized outputs (which left the image ~10 levels).
    first_conv = next(op for op in interpreter._get_ops_details() if op["op_name"] == "CONV_2D")
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    scale, _ = tensors[first_conv["inputs"][0]]["quantization"]
    assert scale == pytest.approx(1.0)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.int8
    interpreter.set_tensor(inp["index"], calibration[0][None])
    interpreter.invoke()
    assert interpreter.get_tensor(out["index"]).shape == (1, 64, 64, 3)


def test_logit_range_keeps_every_argmax_and_narrows_the_range():
    model = with_random_statistics(with_random_slopes(ENet(num_classes=5), 0.05, 0.3))
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (64, 96, 3)).astype("float32") for _ in range(3)]
    lower, upper = tflite.logit_range(model, images, batch_size=2)
    logits = keras.ops.convert_to_numpy(model(np.stack(images)))
    np.testing.assert_array_equal(np.argmax(np.clip(logits, lower, upper), -1), np.argmax(logits, -1))
    top = np.sort(logits, -1)
    assert top[..., -1].min() > lower and top[..., -2].max() < upper
    assert upper - lower < logits.max() - logits.min()  # there is something to gain
    clipped = keras.ops.convert_to_numpy(rewrite.clip_logits(model, lower, upper)(np.stack(images)))
    np.testing.assert_allclose(clipped, np.clip(logits, lower, upper), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_int8_logits_span_the_clipped_range():
    from ai_edge_litert.interpreter import Interpreter

    model = with_random_statistics(with_random_slopes(ENet(num_classes=5), 0.05, 0.3))
    rng = np.random.default_rng(4)
    calibration = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    lower, upper = tflite.logit_range(model, calibration)
    interpreter = Interpreter(model_content=tflite.convert(model, 64, 64, "int8", calibration))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    scale, zero_point = out["quantization"]
    # The int8 output covers the clipped range, not the whole range of the logits.
    assert (-128 - zero_point) * scale == pytest.approx(lower, abs=2 * scale)
    assert (127 - zero_point) * scale == pytest.approx(upper, abs=2 * scale)
    # Its logits are those of the clipped model, up to int8 rounding (an untrained model's
    # int8 argmax agrees poorly with fp32 whether clipped or not, so it is not compared here).
    interpreter.set_tensor(inp["index"], calibration[0][None])
    interpreter.invoke()
    int8_logits = (interpreter.get_tensor(out["index"])[0].astype("float32") - zero_point) * scale
    float_logits = np.clip(keras.ops.convert_to_numpy(model(calibration[0][None].astype("float32")))[0], lower, upper)
    assert np.median(np.abs(int8_logits - float_logits)) < 0.1 * (upper - lower)


def _int8_range(flatbuffer, layer_name):
    """(low, high) that the int8 activation produced by layer `layer_name` can represent."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    (tensor,) = [tensors[i] for op in interpreter._get_ops_details() for i in op["outputs"]
                 if f"/{layer_name}_1/" in tensors[i]["name"] and tensors[i]["dtype"] == np.int8]
    scale, zero_point = tensor["quantization"]
    return (-128 - zero_point) * scale, (127 - zero_point) * scale


def _calibration(shape, count=4, seed=5):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]


def test_int8_range_of_a_tensor_added_in_place_is_its_own():
    # TFLite's calibrator read `narrow` after the in-place ADD had overwritten it with the sum,
    # which gave it the sum's range: here ~100x wider than its own.
    image = keras.Input((16, 16, 3))
    wide = keras.layers.Conv2D(4, 1, kernel_initializer=keras.initializers.Constant(0.01), name="wide")(image)
    narrow = keras.layers.Conv2D(4, 1, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01, seed=0),
                                 name="narrow")(wide)
    total = keras.layers.Add(name="total")([wide, narrow])
    model = keras.Model(image, keras.layers.Conv2D(2, 1, name="head")(total))
    calibration = _calibration((16, 16, 3))
    low, high = _int8_range(tflite.convert(model, 16, 16, "int8", calibration, export_form=False), "narrow")
    values = keras.ops.convert_to_numpy(keras.Model(image, narrow)(np.stack(calibration).astype("float32")))
    own = max(values.max(), 0) - min(values.min(), 0)
    assert 0.8 * own < high - low < 1.1 * own


def test_int8_prelu_keeps_the_pre_activations_below_alpha_times_their_minimum():
    # Quantized MAXIMUM shares one scale between inputs and output; over max(x, 0.25 x)'s range
    # alone, pre-activations below 0.25 * min(x) would saturate before the slope is applied.
    image = keras.Input((16, 16, 3))
    pre = keras.layers.Conv2D(4, 3, padding="same", name="pre",
                              kernel_initializer=keras.initializers.RandomNormal(stddev=0.02, seed=1))(image)
    act = keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2], name="act")(pre)
    model = keras.Model(image, keras.layers.Conv2D(2, 1, name="head")(act))
    calibration = _calibration((16, 16, 3))
    flatbuffer = tflite.convert(model, 16, 16, "int8", calibration)
    assert "MAXIMUM" in tflite.op_names(flatbuffer)
    low, high = _int8_range(flatbuffer, "pre")
    values = keras.ops.convert_to_numpy(keras.Model(image, pre)(np.stack(calibration).astype("float32")))
    minimum = values.min(axis=(1, 2, 3)).mean()  # the export's range: the mean of each image's minimum
    assert minimum < 0 and low <= minimum + (high - low) / 255
