import os
import subprocess
import sys

import numpy as np
import pytest
import keras

from enet_keras import ENet, transfer_weights
from enet_keras.export import tflite
from helpers import assert_model_round_trip

# Every block of the paper's Table 1, in order.
BLOCKS = (
    ["initial"]
    + [f"bottleneck1_{i}" for i in range(5)]
    + [f"bottleneck2_{i}" for i in range(9)]
    + [f"bottleneck3_{i}" for i in range(1, 9)]
    + [f"bottleneck4_{i}" for i in range(3)]
    + [f"bottleneck5_{i}" for i in range(2)]
)


@pytest.fixture(scope="module")
def model():
    return ENet(num_classes=3)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("size", [(360, 480), (360, 640), (512, 1024)])
def test_output_shapes(model, batch, size):
    images = np.random.default_rng(0).integers(0, 256, (batch, *size, 3), dtype="uint8")
    assert model.predict(images, verbose=0).shape == (batch, *size, 3)


def test_static_shapes():
    assert ENet(19, input_shape=(360, 480, 3)).output_shape == (None, 360, 480, 19)
    assert ENet(19, input_shape=(360, 480, 3), encoder_only=True).output_shape == (None, 45, 60, 19)
    assert ENet(19).output_shape == (None, None, None, 19)


def test_parameter_count_matches_paper():
    trainable = sum(int(np.prod(w.shape)) for w in ENet(num_classes=19).trainable_weights)
    assert abs(trainable - 0.37e6) / 0.37e6 < 0.03, trainable


def test_layer_names_follow_the_paper_and_are_unique(model):
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    blocks = [b for b in BLOCKS if any(n.startswith(b + "_") for n in names)]
    assert blocks == BLOCKS
    # Names are API (weights move by name): a few exact ones.
    for name in ["initial_conv", "bottleneck1_0_pool", "bottleneck2_3_conv_5x1", "bottleneck2_8_main_conv",
                 "bottleneck4_0_unpool", "bottleneck5_1_act", "fullconv"]:
        assert name in names
    dilations = {l.name: l.dilation_rate for l in model.layers if l.name.endswith("_main_conv") and l.name.startswith("bottleneck2_")}
    assert [dilations[f"bottleneck2_{i}_main_conv"][0] for i in (1, 2, 4, 5, 6, 8)] == [1, 2, 4, 1, 8, 16]
    assert not any(getattr(l, "use_bias", False) for l in model.layers if l.name != "fullconv")
    prelus = [l for l in model.layers if isinstance(l, keras.layers.PReLU)]
    assert prelus and all(l.alpha.shape[:2] == (1, 1) for l in prelus)  # one slope per channel
    rates = {l.name: l.rate for l in model.layers if isinstance(l, keras.layers.SpatialDropout2D)}
    assert rates["bottleneck1_4_dropout"] == 0.01 and rates["bottleneck2_0_dropout"] == 0.1


def test_keras_round_trip_in_safe_mode(model, tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (2, 64, 96, 3)).astype("float32")
    assert_model_round_trip(model, images, tmp_path, atol=1e-5)


def test_encoder_weights_transfer_by_name():
    encoder = ENet(num_classes=3, encoder_only=True)
    full = ENet(num_classes=3)
    copied = transfer_weights(encoder, full)
    encoder_layers = {l.name for l in encoder.layers if l.weights} - {"encoder_classifier"}
    assert set(copied) == encoder_layers
    for name in copied:
        for a, b in zip(encoder.get_layer(name).get_weights(), full.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="encoder_classifier"):
        transfer_weights(encoder, ENet(num_classes=4, encoder_only=True))


def test_two_fit_steps_lower_the_loss():
    keras.utils.set_random_seed(0)
    model = ENet(num_classes=3, input_shape=(64, 64, 3), dropout_rates=(0.0, 0.0))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 64, 64, 3)).astype("float32")
    labels = (images[..., 0] > 127).astype("int32") + (images[..., 1] > 200).astype("int32")
    model.compile(keras.optimizers.Adam(5e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    before = model.evaluate(images, labels, verbose=0)
    model.fit(images, labels, epochs=2, batch_size=2, verbose=0)
    assert model.evaluate(images, labels, verbose=0) < before


def test_relu_option():
    relu = ENet(num_classes=3, activation="relu")
    assert not any(isinstance(l, keras.layers.PReLU) for l in relu.layers)


def test_per_layer_slopes_start_from_the_mean_of_per_channel_ones():
    per_layer = ENet(num_classes=3, activation="prelu_layer")
    slopes = [l.alpha for l in per_layer.layers if isinstance(l, keras.layers.PReLU)]
    assert len(slopes) == 82 and all(tuple(a.shape) == (1, 1, 1) for a in slopes)
    per_channel = ENet(num_classes=3)
    rng = np.random.default_rng(0)
    for layer in per_channel.layers:
        if isinstance(layer, keras.layers.PReLU):
            layer.alpha.assign(rng.uniform(-0.2, 0.6, layer.alpha.shape).astype("float32"))
    transfer_weights(per_channel, per_layer)
    for name in ("initial_act", "bottleneck3_4_act", "bottleneck5_1_act"):
        expected = np.mean(per_channel.get_layer(name).alpha.numpy())
        assert per_layer.get_layer(name).alpha.numpy().item() == pytest.approx(expected, rel=1e-5)
    np.testing.assert_array_equal(per_layer.get_layer("fullconv").kernel.numpy(),
                                  per_channel.get_layer("fullconv").kernel.numpy())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 1}, "num_classes must be an integer >= 2. Received: num_classes=1"),
        ({"num_classes": 2.5}, "num_classes must be an integer"),
        ({"num_classes": 3, "input_shape": (360, 484, 3)}, "multiple of 8 .e.g. 480 or 488"),
        ({"num_classes": 3, "input_shape": (4, 8, 3)}, "height must be a multiple of 8 .e.g. 8."),
        ({"num_classes": 3, "input_shape": (64, 64, 1)}, r"\(height, width, 3\)"),
        ({"num_classes": 3, "activation": "gelu"}, "activation must be one of"),
        ({"num_classes": 3, "dropout_rates": (0.1, 1.5)}, "dropout_rates"),
        ({"num_classes": 3, "weights": "imagenet"}, "weights must be None"),
        ({"num_classes": 3, "weights": "camvid"}, "num_classes=11"),
        ({"num_classes": 11, "encoder_only": True, "weights": "camvid"}, "encoder_only=True"),
        ({"num_classes": 11, "activation": "relu", "weights": "camvid"}, "activation='relu'"),
    ],
)
def test_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ENet(**kwargs)


def test_wrong_run_time_size_is_a_clear_error(model):
    with pytest.raises(ValueError, match="even height"):
        model(np.zeros((1, 36, 48, 3), "float32"))  # 36/4 = 9 is odd at bottleneck2_0


@pytest.mark.slow
def test_tflite_builtins_only_and_agrees_with_keras():
    from ai_edge_litert.interpreter import Interpreter

    model = ENet(num_classes=19)
    flatbuffer = tflite.convert(model, 360, 480)
    names = tflite.op_names(flatbuffer)
    assert not any(n.startswith("Flex") for n in names)
    assert "BATCH_NORMALIZATION" not in names and "CONV_2D" in names
    interpreter = Interpreter(model_content=flatbuffer, num_threads=2)
    interpreter.allocate_tensors()
    images = np.random.default_rng(2).integers(0, 256, (1, 360, 480, 3)).astype("float32")
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)
    interpreter.invoke()
    actual = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    expected = model(images, training=False).numpy()
    assert np.abs(actual - expected).max() < 1e-4 * np.abs(expected).max()


def test_loss_and_metric_saved_before_they_moved_still_load():
    # Until they moved beside the model, they lived in enet_keras.training; .keras files saved then
    # name that module. The registered names are what loading goes by.
    from enet_keras import PixelAccuracy, WeightedSparseCategoricalCrossentropy

    for obj, old in ((WeightedSparseCategoricalCrossentropy([1.0, 2.0], 255), "enet_keras.training.losses"),
                     (PixelAccuracy(11), "enet_keras.training.metrics")):
        config = keras.saving.serialize_keras_object(obj)
        assert config["registered_name"] == f"enet_keras>{type(obj).__name__}"
        config["module"] = old
        assert type(keras.saving.deserialize_keras_object(config)) is type(obj)


def test_files_saved_with_keras_batch_norm_still_load_and_resume(tmp_path):
    # Until ENet used the fused enet_keras BatchNormalization, its .keras files, weights files
    # (the shipped ones too) and run folders held keras.layers.BatchNormalization.
    from enet_keras.layers import BatchNormalization

    def to_keras_batch_norm(layer):
        if isinstance(layer, BatchNormalization):
            return keras.layers.BatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    new = ENet(num_classes=3, input_shape=(64, 96, 3))
    assert sum(type(l) is BatchNormalization for l in new.layers) > 50
    old = keras.models.clone_model(new, clone_function=to_keras_batch_norm)
    assert not any(isinstance(l, BatchNormalization) for l in old.layers)
    rng = np.random.default_rng(2)
    old.set_weights([rng.normal(0.5, 0.1, w.shape).astype("float32") for w in old.get_weights()])
    old.save(tmp_path / "old.keras")
    old.save_weights(tmp_path / "old.weights.h5")
    images = rng.integers(0, 256, (1, 64, 96, 3)).astype("float32")
    expected = old.predict(images, verbose=0)
    new.load_weights(tmp_path / "old.weights.h5")
    np.testing.assert_allclose(new.predict(images, verbose=0), expected, rtol=1e-4, atol=1e-4)
    loaded = keras.saving.load_model(tmp_path / "old.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), expected, rtol=1e-4, atol=1e-4)


def test_import_is_light():
    code = "import enet_keras, sys; print(sorted(m.split('.')[0] + '.' + m.split('.')[1] if '.' in m else m for m in sys.modules))"
    # A user's fresh process: without the TF_USE_LEGACY_KERAS=1 that importing tfmot (test_qat.py)
    # puts into this one's environment.
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    modules = set(eval(loaded.stdout.strip().splitlines()[-1]))
    heavy = {m for m in modules if m.split(".")[0] == "enet_keras" and m.split(".")[1:2]
             and m.split(".")[1] in ("data", "training", "export", "evaluation", "inference", "benchmark", "visualize")}
    assert "enet_keras.model" in modules and heavy == set()
    extras = {"tensorflow_model_optimization", "tf_keras", "onnx", "onnxruntime", "tf2onnx", "ai_edge_litert",
              "tensorflow_datasets"}
    assert not {m.split(".")[0] for m in modules} & extras, {m.split(".")[0] for m in modules} & extras


def test_load_model_names_the_file_and_what_is_wrong(tmp_path):
    from enet_keras import load_model

    with pytest.raises(FileNotFoundError, match=r"--model: no model file at .*missing.keras"):
        load_model(tmp_path / "missing.keras")
    empty = tmp_path / "empty.keras"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.keras is empty"):
        load_model(empty)
    good = tmp_path / "good.keras"
    ENet(num_classes=3).save(good)
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"--encoder_weights: .*truncated.keras is not a .keras file .*truncated"):
        load_model(truncated, flag="--encoder_weights")
    with pytest.raises(ValueError, match="is a folder"):
        load_model(tmp_path)
    assert load_model(good).output_shape[-1] == 3
