"""The int8 export form (issue: int8 that pays): same function, int8-friendly ops."""

import numpy as np
import pytest
import keras

from enet_keras import ENet, MaximumPReLU
from enet_keras.export import tflite
from helpers import with_random_slopes


def test_export_form_equals_training_form():
    model = with_random_slopes(ENet(num_classes=3), -0.5, 1.0)  # trained slopes are often negative
    form = tflite.int8_export_form(model)
    assert not any(isinstance(l, keras.layers.PReLU) for l in form.layers)
    assert sum(isinstance(l, MaximumPReLU) for l in form.layers) == sum(
        isinstance(l, keras.layers.PReLU) for l in model.layers)
    assert [l.name for l in form.layers] == [l.name for l in model.layers]
    images = np.random.default_rng(1).integers(0, 256, (2, 64, 96, 3)).astype("float32")
    np.testing.assert_allclose(form(images, training=False), model(images, training=False), atol=1e-5)


def test_slopes_outside_unit_interval_keep_prelu():
    model = ENet(num_classes=3)
    model.get_layer("bottleneck1_1_act").alpha.assign(np.full((1, 1, 64), 1.5, "float32"))
    with pytest.warns(UserWarning, match="bottleneck1_1_act"):
        form = tflite.int8_export_form(model)
    assert isinstance(form.get_layer("bottleneck1_1_act"), keras.layers.PReLU)
    assert isinstance(form.get_layer("bottleneck1_2_act"), MaximumPReLU)


@pytest.mark.slow
def test_int8_tflite_has_no_prelu_and_takes_uint8():
    from ai_edge_litert.interpreter import Interpreter

    model = with_random_slopes(ENet(num_classes=3), 0.05, 0.3)
    rng = np.random.default_rng(2)
    calibration = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    flatbuffer = tflite.convert(model, 64, 64, "int8", calibration)
    # No PRELU (XNNPACK does not run it in int8) and no SELECT_V2 (a slow broadcasting kernel).
    assert {"PRELU", "SELECT_V2"}.isdisjoint(tflite.ops(flatbuffer)) and "MAXIMUM" in tflite.ops(flatbuffer)
    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.int8
    interpreter.set_tensor(inp["index"], calibration[0][None])
    interpreter.invoke()
    assert interpreter.get_tensor(out["index"]).shape == (1, 64, 64, 3)
