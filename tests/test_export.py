"""Exports (SavedModel for TF-Serving, TFLite fp32/fp16/int8, ONNX, TF-TRT) and tools/export.py.

One small ENet (3 classes) is exported once by the tool at 64x96; the tests compare every format
with Keras on the same images.
"""

import contextlib
import importlib.util
import io
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import keras
import tensorflow as tf

import enet_tflite
from enet_keras import ENet, data, export, runtimes
from enet_keras.export import saved_model, tflite
from helpers import near_ties

ROOT = pathlib.Path(__file__).resolve().parents[1]

HEIGHT, WIDTH = 64, 96
CLASSES = len(data.SYNTHETIC_CLASSES)  # the model takes the class names of the data it exports with


def load_tool():
    spec = importlib.util.spec_from_file_location("export_tool", ROOT / "tools" / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model():
    """ENet of the synthetic data's classes with random PReLU slopes and a few batch-norm
    updates, so outputs are not trivial."""
    keras.utils.set_random_seed(0)
    model = ENet(num_classes=CLASSES)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.PReLU):
            layer.alpha.assign(rng.uniform(0.0, 0.3, layer.alpha.shape).astype("float32"))
    for _ in range(3):
        model(rng.integers(0, 256, (2, HEIGHT, WIDTH, 3)).astype("float32"), training=True)
    return model


@pytest.fixture(scope="module")
def images():
    """Four synthetic validation images at the export size, uint8 (4, 64, 96, 3)."""
    from enet_keras import data

    source = data.get_source("synthetic", "val", num_examples=4, height=HEIGHT, width=WIDTH)
    return np.stack(data.calibration_images(source, HEIGHT, WIDTH, 4))


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """Runs tools/export.py with its default formats on the model, at 64x96."""
    folder = tmp_path_factory.mktemp("export")
    model_path = folder / "model.keras"
    model.save(model_path)
    output_dir = folder / "export"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        summary = load_tool().main([
            "--model", str(model_path), "--output_dir", str(output_dir), "--dataset", "synthetic",
            "--height", str(HEIGHT), "--width", str(WIDTH), "--num_calibration_images", "8",
            "--dataset_option", "num_examples=8",
        ])
    return {"dir": output_dir, "summary": summary, "stdout": stdout.getvalue(),
            "serving": output_dir / "serving" / "enet" / "1"}


def keras_logits(model, images):
    return model(images.astype("float32"), training=False).numpy()


def agreement(a, b):
    return float(np.mean(np.argmax(a, -1) == np.argmax(b, -1)))


def clear_margin(logits, eps=1e-4):
    """Pixels whose argmax is not a near-tie."""
    return ~near_ties(logits, eps)


# --- tools/export.py ---------------------------------------------------------------------------


@pytest.mark.slow
def test_tool_writes_every_default_format_config_and_summary(exported):
    folder = exported["dir"]
    formats = [f["format"] for f in exported["summary"]["files"]]
    assert formats == ["savedmodel", "tflite_fp32", "tflite_fp16", "tflite_int8", "onnx"]
    for name in ["enet_fp32.tflite", "enet_fp16.tflite", "enet_int8.tflite", "enet.onnx",
                 "export_config.json", "export_summary.json", "palette.json"]:
        assert (folder / name).is_file(), name
    config = json.loads((folder / "export_config.json").read_text())
    assert config["height"] == HEIGHT and config["num_classes"] == CLASSES and config["dataset"] == "synthetic"
    assert all(f["size_MB"] > 0 for f in exported["summary"]["files"])
    assert "saved_model_cli show --dir" in exported["stdout"] and "enet_int8.tflite" in exported["stdout"]
    assert not [p for p in folder.rglob(".*")], "temporary files left behind"


def test_tool_missing_model_names_it(tmp_path):
    missing = tmp_path / "nope.keras"
    with pytest.raises(FileNotFoundError, match="nope.keras"):
        load_tool().main(["--model", str(missing), "--output_dir", str(tmp_path / "out"), "--dataset", "synthetic"])


@pytest.mark.parametrize("argv, message", [
    (["--height", "100"], "--height must be a positive multiple of 8"),
    (["--formats", "savedmodel,tflite_int9"], "tflite_int9"),
    (["--formats", "tflite_int8"], "--dataset"),
    (["--formats", "onnx", "--dataset_option", "num_examples"], "KEY=VALUE"),
])
def test_tool_bad_flags(tmp_path, capsys, argv, message):
    from enet_keras import cli

    with pytest.raises(SystemExit):
        cli.run(load_tool().main, ["--model", "m.keras", "--output_dir", str(tmp_path)] + argv)
    assert message in capsys.readouterr().err


def test_tool_tftrt_fails_clearly_before_exporting(tmp_path):
    if export.is_tensorrt_available():
        pytest.skip("this TensorFlow has TensorRT")
    model_path = tmp_path / "m.keras"
    model_path.write_bytes(b"not read: the TensorRT check comes first")
    with pytest.raises(ImportError, match="TF-TRT needs a TensorFlow built with TensorRT"):
        load_tool().main(["--model", str(model_path), "--output_dir", str(tmp_path / "out"), "--formats", "savedmodel,tftrt"])
    assert not (tmp_path / "out").exists()


# --- SavedModel for TF-Serving -----------------------------------------------------------------


@pytest.fixture(scope="module")
def serving_fn(exported):
    return tf.saved_model.load(str(exported["serving"])).signatures["serving_default"]


@pytest.mark.slow
def test_saved_model_matches_keras(model, images, serving_fn):
    outputs = serving_fn(images=tf.constant(images))
    assert outputs["class_ids"].dtype == tf.uint8 and outputs["probabilities"].dtype == tf.float32
    logits = keras_logits(model, images)
    np.testing.assert_allclose(outputs["probabilities"].numpy(), tf.nn.softmax(logits).numpy(), atol=1e-5)
    margin = clear_margin(logits)
    np.testing.assert_array_equal(outputs["class_ids"].numpy()[margin], np.argmax(logits, -1)[margin])


@pytest.mark.slow
def test_saved_model_pads_and_crops_sizes_not_multiple_of_8(model, serving_fn):
    image = np.random.default_rng(1).integers(0, 256, (1, 60, 70, 3), dtype=np.uint8)
    outputs = serving_fn(images=tf.constant(image))
    assert tuple(outputs["class_ids"].shape) == (1, 60, 70)
    assert tuple(outputs["probabilities"].shape) == (1, 60, 70, CLASSES)
    padded = np.pad(image, [(0, 0), (0, 4), (0, 2), (0, 0)])  # to 64x72, zeros bottom/right
    expected = tf.nn.softmax(keras_logits(model, padded)[:, :60, :70]).numpy()
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)


@pytest.mark.slow
def test_saved_model_rejects_float_input(serving_fn):
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError), match="uint8"):
        serving_fn(images=tf.zeros((1, 64, 64, 3), tf.float32))


@pytest.mark.slow
def test_saved_model_cli_runs_the_signature(exported, tmp_path):
    # TF 2.21's saved_model_cli reads --input_exprs with ast.literal_eval, so
    # "images=np.zeros(...)" is refused ("not a valid python literal"); --inputs takes a .npy.
    np.save(tmp_path / "images.npy", np.zeros((1, 64, 64, 3), np.uint8))
    cli = pathlib.Path(sys.executable).parent / "saved_model_cli"
    result = subprocess.run(
        [str(cli), "run", "--dir", str(exported["serving"]), "--tag_set", "serve",
         "--signature_def", "serving_default", "--inputs", f"images={tmp_path / 'images.npy'}"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "class_ids" in result.stdout and "probabilities" in result.stdout


@pytest.mark.slow
def test_warmup_file_holds_prediction_logs_of_training_images(exported):
    logs = saved_model.read_warmup_file(exported["serving"] / "assets.extra" / "tf_serving_warmup_requests")
    assert len(logs) == 3
    from enet_keras import data

    # The export calibrated on all 8 images; the warm-up requests are the first 3 of them.
    expected = data.calibration_images(data.get_source("synthetic", "train", num_examples=8), HEIGHT, WIDTH, 8)[:3]
    for log, image in zip(logs, expected):
        request = log.predict_log.request
        assert request.model_spec.name == "enet" and request.model_spec.signature_name == "serving_default"
        tensor = tf.make_ndarray(request.inputs["images"])
        assert tensor.dtype == np.uint8 and tensor.shape == (1, HEIGHT, WIDTH, 3)
        np.testing.assert_array_equal(tensor[0], image)


def test_warmup_requests_reject_bad_images():
    with pytest.raises(ValueError, match=r"shape \(8, 8\)"):
        saved_model.warmup_requests([np.zeros((8, 8), np.uint8)])
    with pytest.raises(ValueError, match="float32"):
        saved_model.warmup_requests([np.zeros((8, 8, 3), np.float32)])


def test_failed_saved_model_export_keeps_the_old_version(tmp_path, monkeypatch):
    version = tmp_path / "serving" / "enet" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"old model")

    def crash_midway(root, path, signatures=None):
        (pathlib.Path(path) / "saved_model.pb").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(saved_model.tf.saved_model, "save", crash_midway)
    with pytest.raises(RuntimeError, match="disk full"):
        saved_model.export_saved_model(ENet(num_classes=3), tmp_path / "serving", warmup_images=[np.zeros((8, 8, 3), np.uint8)])
    assert (version / "saved_model.pb").read_bytes() == b"old model"
    assert sorted(os.listdir(tmp_path / "serving" / "enet")) == ["1"]


def test_serving_function_rebuilds_fixed_size_models():
    keras.utils.set_random_seed(0)
    fixed = ENet(num_classes=3, input_shape=(64, 64, 3))
    outputs = saved_model.serving_function(fixed)(tf.zeros((1, 60, 70, 3), tf.uint8))
    assert tuple(outputs["class_ids"].shape) == (1, 60, 70)
    expected = fixed(np.zeros((1, 64, 64, 3), "float32"), training=False).numpy()
    square = saved_model.serving_function(fixed)(tf.zeros((1, 64, 64, 3), tf.uint8))["probabilities"].numpy()
    np.testing.assert_allclose(square, tf.nn.softmax(expected).numpy(), atol=1e-6)


def test_saved_model_export_rejects_bad_version(tmp_path):
    with pytest.raises(ValueError, match="version=0"):
        saved_model.export_saved_model(ENet(num_classes=3), tmp_path, version=0)


# --- TFLite ------------------------------------------------------------------------------------


def run_tflite(path, images):
    segmenter = enet_tflite.Segmenter(path, num_threads=2)
    return segmenter, np.concatenate([segmenter.run(segmenter.preprocess(image)) for image in images])


@pytest.mark.slow
def test_tflite_fp32_matches_keras_with_batch_norm_folded(model, images, exported):
    path = exported["dir"] / "enet_fp32.tflite"
    segmenter, logits = run_tflite(path, images)
    assert segmenter.input_dtype == np.float32
    expected = keras_logits(model, images)
    assert np.abs(logits - expected).max() < 1e-4 * np.abs(expected).max()
    flatbuffer = path.read_bytes()
    tflite.check_builtin_only(flatbuffer)
    names = tflite.op_names(flatbuffer)
    # Batch norm is folded into the convolutions (no RSQRT/SUB chain from unfolded statistics),
    # and dropout is gone in inference.
    assert not {"BATCH_NORMALIZATION", "RSQRT", "SUB", "RANDOM_UNIFORM", "MULTINOMIAL"} & set(names), names
    assert not any(n.startswith("Flex") for n in names)


@pytest.mark.slow
def test_tflite_fp16_argmax_agrees_with_keras(model, images, exported):
    _, logits = run_tflite(exported["dir"] / "enet_fp16.tflite", images)
    expected = keras_logits(model, images)
    score = agreement(logits, expected)
    # The untrained model's logits are small (their largest is ~0.25), so fp16 weights move them
    # by several percent of their scale: pixels closer to a tie than 1 % of it may flip, and the
    # strict bar is taken on the others (~89 % of pixels with 8 classes).
    clear = clear_margin(expected, eps=1e-2 * np.abs(expected).max())
    clear_score = agreement(logits[clear], expected[clear])
    print(f"fp16 argmax agreement with Keras: {score:.4f} (all pixels), {clear_score:.4f} (no near-ties)")
    assert score >= 0.985 and clear_score >= 0.995


@pytest.mark.slow
def test_tflite_int8_runs_on_uint8_and_mostly_agrees(model, images, exported):
    segmenter, logits = run_tflite(exported["dir"] / "enet_int8.tflite", images)
    assert segmenter.input_dtype == np.uint8 and logits.dtype == np.int8
    # Raw pixels in, though the synthetic calibration images do not reach 0 and 255: MediaPipe
    # and other uint8 callers feed pixels as they are.
    assert segmenter.input_quantization == (1.0, 0)
    assert logits.shape == (4, HEIGHT, WIDTH, CLASSES)
    expected = keras_logits(model, images)
    scale, zero_point = segmenter.interpreter.get_output_details()[0]["quantization"]
    dequantized = (logits.astype(np.float32) - zero_point) * scale
    # int8 rounds every activation on the way, and an untrained model's random weights carry
    # that error far (about 0.77 correlation and 78 % agreement on clear pixels here): the logits
    # must still follow the float ones, far above chance (0 correlation, 1/3 agreement), on the
    # pixels whose float top two are several output steps apart. A broken scale, zero point or
    # wiring falls to chance.
    correlation = np.corrcoef(dequantized.ravel(), expected.ravel())[0, 1]
    clear = clear_margin(expected, eps=8 * scale)
    clear_score = agreement(logits[clear], expected[clear])
    print(f"int8 against Keras (untrained model, 8 calibration images): logit correlation {correlation:.4f}, "
          f"agreement {agreement(logits, expected):.4f} (all), {clear_score:.4f} on {clear.mean():.2%} of pixels "
          "8 steps from a tie")
    assert correlation > 0.6 and clear.mean() > 0.05 and clear_score > 0.65


def mediapipe_masks(path, images):
    """MediaPipe Tasks' ImageSegmenter on `path`: its labels and a category mask per image."""
    # make test installs mediapipe: a missing one is a broken install, not a skip.
    import mediapipe
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageSegmenterOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                           output_category_mask=True, output_confidence_masks=False)
    with vision.ImageSegmenter.create_from_options(options) as segmenter:
        masks = [segmenter.segment(mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB, data=image))
                 for image in images]
        return segmenter.labels, [np.squeeze(mask.category_mask.numpy_view(), -1) for mask in masks]


@pytest.mark.slow
def test_mediapipe_image_segmenter_loads_the_tflite_files_as_exported(images, exported):
    from enet_keras.export.metadata import read_metadata

    for precision in ("fp32", "int8"):
        path = exported["dir"] / f"enet_{precision}.tflite"
        metadata = read_metadata(path.read_bytes())
        assert metadata["labels"] == list(data.SYNTHETIC_CLASSES)
        assert (metadata["name"], metadata["version"], metadata["license"]) == ("enet", "1", "MIT")
        labels, masks = mediapipe_masks(path, images)
        assert labels == metadata["labels"]
        if precision == "fp32":  # the untrained model's int8 argmax moves with any kernel change
            segmenter = enet_tflite.Segmenter(path)
            for image, mask in zip(images, masks):
                assert np.mean(mask == segmenter.predict(image)) >= 0.99


@pytest.mark.slow
def test_mediapipe_int8_category_masks_agree_with_enet_tflite_on_the_camvid_weights(tmp_path):
    from enet_keras.pretrained import CAMVID_CLASSES

    # Trained weights: an int8 model whose argmax does not hang on one rounding step, as the
    # untrained one's does (fp32 is checked on the tool's export above).
    height, width = 96, 128
    source = data.get_source("synthetic", "val", num_examples=4, height=height, width=width)
    images = data.calibration_images(source, height, width, 4)
    export.export_all(ENet(num_classes=11, weights="camvid"), tmp_path, ["tflite_int8"], height, width,
                      calibration_images=images[:2], num_calibration_images=2,
                      class_names=list(CAMVID_CLASSES), verbose=0)
    path = tmp_path / "enet_int8.tflite"
    labels, masks = mediapipe_masks(path, images[2:])
    segmenter = enet_tflite.Segmenter(path)
    assert labels == list(CAMVID_CLASSES)
    for image, mask in zip(images[2:], masks):
        assert np.mean(mask == segmenter.predict(image)) >= 0.99


def test_metadata_names_and_checks_the_classes(model):
    from enet_keras.export.metadata import add_metadata, read_metadata

    flatbuffer = tflite.convert(model, 32, 32, "fp32")
    assert read_metadata(flatbuffer) is None
    names = [f"name {i}" for i in range(CLASSES)]
    written = add_metadata(flatbuffer, names, version="4", license="CC-BY-4.0")
    assert read_metadata(written) == {"name": "enet", "version": "4", "license": "CC-BY-4.0",
                                      "identifier": "M001", "labels": names}
    assert add_metadata(flatbuffer, names) == add_metadata(flatbuffer, names)  # the same bytes every time
    with pytest.raises(ValueError, match=f"scores {CLASSES} classes but 2 class names"):
        add_metadata(flatbuffer, names[:2])
    with pytest.raises(ValueError, match="single lines"):
        add_metadata(flatbuffer, names[:-1] + ["car\nbus"])


def test_calibration_images_cover_and_crop():
    images = data.calibration_images([(np.full((30, 100, 3), 7, np.uint8), None)], 64, 96)
    assert images[0].shape == (64, 96, 3) and images[0].dtype == np.uint8 and (images[0] == 7).all()
    with pytest.raises(ValueError, match=r"shape \(30, 100\)"):
        data.calibration_images([np.zeros((30, 100), np.uint8)], 64, 96)
    with pytest.raises(ValueError, match="no images"):
        data.calibration_images([], 64, 96)


def test_converters_check_the_calibration_images_they_are_given(model):
    wrong_size = [np.zeros((HEIGHT, WIDTH + 8, 3), np.uint8)]
    with pytest.raises(ValueError, match=r"representative_images must be images of shape \(64, 96, 3\)\. "
                                         r"Received: an image of shape \(64, 104, 3\)"):
        tflite.convert(model, HEIGHT, WIDTH, "int8", representative_images=wrong_size)
    with pytest.raises(ValueError, match="representative_images is empty"):
        tflite.convert(model, HEIGHT, WIDTH, "int8", representative_images=[])
    assert len(data.take_calibration_images([np.zeros((8, 8, 3), np.uint8)] * 5, 3, "images", dtype=np.uint8)) == 3
    with pytest.raises(ValueError, match="calibration_images must be uint8 images .* dtype float64"):
        data.take_calibration_images([np.zeros((8, 8, 3))], 3, "calibration_images", dtype=np.uint8)


def test_calibration_images_sample_the_whole_source_the_same_way_every_time():
    from enet_keras import data

    source = data.get_source("synthetic", "train", num_examples=12, height=HEIGHT, width=WIDTH)
    in_order = [image.numpy() for image, _ in source.dataset()]
    sample = data.calibration_images(source, HEIGHT, WIDTH, 4)
    again = data.calibration_images(source, HEIGHT, WIDTH, 4)
    positions = [next(i for i, image in enumerate(in_order) if np.array_equal(image, s)) for s in sample]
    assert len(set(positions)) == 4 and positions != [0, 1, 2, 3]  # not the first four in file order
    assert all(np.array_equal(a, b) for a, b in zip(sample, again))


# --- ONNX --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_onnx_matches_keras_and_unpools_without_maxunpool(model, images, exported):
    path = exported["dir"] / "enet.onnx"
    runner = runtimes.OnnxPredictor(path, num_threads=2)
    assert runner.input_shape == (1, HEIGHT, WIDTH, 3)
    logits = np.concatenate([runner.logits(image[None]) for image in images])
    expected = keras_logits(model, images)
    assert np.abs(logits - expected).max() < 1e-4 * np.abs(expected).max()
    names = export.onnx.op_names(path)
    assert "MaxUnpool" not in names and "Conv" in names and "ConvTranspose" in names
    # No activation-sized constants folded from zeros_like/full_like: the file does not grow
    # with the export resolution.
    import onnx
    from onnx import numpy_helper

    for tensor in onnx.load(str(path)).graph.initializer:
        array = numpy_helper.to_array(tensor)
        assert array.size < 1024 or not (array == array.flat[0]).all(), tensor.name
    print("ONNX ops:", ", ".join(names))


@pytest.mark.slow
@pytest.mark.parametrize("bad, message", [
    (np.zeros((1, HEIGHT, WIDTH), np.uint8), r"shape \(1, 64, 96\)"),
    (np.zeros((1, HEIGHT, WIDTH, 4), np.uint8), r"\(batch, height, width, 3\).*shape \(1, 64, 96, 4\)"),
    (np.zeros((1, 32, 32, 3), np.uint8), r"fixed input size \(64, 96\)"),
    (np.zeros((1, HEIGHT, WIDTH, 3), bool), "dtype bool"),
])
def test_onnx_runner_rejects_bad_input(exported, bad, message):
    runner = runtimes.OnnxPredictor(exported["dir"] / "enet.onnx")
    with pytest.raises(ValueError, match=message):
        runner.predict(bad)


def test_onnx_export_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "enet.onnx"
    path.write_bytes(b"old model")

    class Proto:
        def SerializeToString(self):
            return b"new model"

    monkeypatch.setattr(export.onnx, "convert", lambda *args, **kwargs: Proto())
    monkeypatch.setattr("enet_keras.files.os.fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        export.export_onnx(None, path)
    assert path.read_bytes() == b"old model" and os.listdir(tmp_path) == ["enet.onnx"]


def test_onnx_rejects_sizes_not_multiple_of_8():
    with pytest.raises(ValueError, match=r"height \(or None for any\) must be a positive multiple of 8 .* e.g. 56 or 64. Received: 60"):
        export.onnx.convert(None, 60, 64)


# --- TensorRT ----------------------------------------------------------------------------------


def test_tftrt_without_tensorrt_is_a_clear_error(tmp_path):
    if export.is_tensorrt_available():
        pytest.skip("this TensorFlow has TensorRT")
    (tmp_path / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ImportError, match=r"2\.18.*Jetson.*<= 2\.17.*trtexec --onnx"):
        export.convert_tftrt(tmp_path, tmp_path / "trt", "FP16")
    assert not (tmp_path / "trt").exists()


def test_tftrt_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="precision"):
        export.convert_tftrt(tmp_path, tmp_path / "trt", "FP8")
    with pytest.raises(ValueError, match="saved_model.pb"):
        export.convert_tftrt(tmp_path, tmp_path / "trt", "FP16")
    (tmp_path / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ValueError, match="calibration_images"):
        export.convert_tftrt(tmp_path, tmp_path / "trt", "INT8")
