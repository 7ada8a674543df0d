"""tflite/enet_tflite.py: the LiteRT-only runtime (numpy, Pillow, ai-edge-litert; no TensorFlow).

The runtime does not care which segmenter it runs, so these tests use a tiny two-convolution
model with ENet's contract (float [0, 255] or uint8 pixels in, per-pixel logits out) exported by
`enet_keras.export.tflite`; ENet itself goes through the runtime in test_export.py.
"""

import json
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import keras
from PIL import Image

from enet_keras.export import tflite

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tflite"))
import enet_tflite  # noqa: E402

HEIGHT, WIDTH, CLASSES = 32, 48, 3


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    return keras.Model(inputs, keras.layers.Conv2D(CLASSES, 1)(x))


@pytest.fixture(scope="module")
def models(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tflite")
    rng = np.random.default_rng(0)
    calibration = [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(8)]
    return {
        "fp32": tflite.export(tiny_model, folder / "fp32.tflite", HEIGHT, WIDTH, "fp32"),
        "int8": tflite.export(tiny_model, folder / "int8.tflite", HEIGHT, WIDTH, "int8", calibration),
    }


@pytest.fixture
def image():
    return np.random.default_rng(1).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def test_fp32_class_map_matches_keras(tiny_model, models, image):
    segmenter = enet_tflite.Segmenter(models["fp32"], num_threads=1)
    assert segmenter.input_shape == (1, HEIGHT, WIDTH, 3) and segmenter.num_classes == CLASSES
    class_map = segmenter.predict(image)
    logits = tiny_model(image[None].astype("float32")).numpy()[0]
    assert class_map.dtype == np.uint8 and class_map.shape == (HEIGHT, WIDTH)
    top2 = np.sort(logits, -1)[..., -2:]
    clear = top2[..., 1] - top2[..., 0] > 1e-4
    np.testing.assert_array_equal(class_map[clear], np.argmax(logits, -1)[clear])


def test_other_sizes_are_resized_or_padded_and_mapped_back(models):
    segmenter = enet_tflite.Segmenter(models["fp32"])
    big = np.random.default_rng(2).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    assert segmenter.predict(big).shape == (50, 70)
    assert segmenter.predict(Image.fromarray(big)).shape == (50, 70)
    small = big[:20, :30]
    assert segmenter.predict(small, resize_mode="pad").shape == (20, 30)
    with pytest.raises(ValueError, match=r"no larger than the model's input 32x48.*\(50, 70, 3\)"):
        segmenter.predict(big, resize_mode="pad")


def test_int8_model_takes_uint8_pixels(models, image):
    segmenter = enet_tflite.Segmenter(models["int8"])
    assert segmenter.input_dtype == np.uint8
    assert segmenter.run(segmenter.preprocess(image)).dtype == np.int8
    expected = segmenter.predict(image)
    # Floats that are whole pixel values convert exactly; so do other integer types.
    np.testing.assert_array_equal(segmenter.predict(image.astype(np.float32)), expected)
    np.testing.assert_array_equal(segmenter.predict(image.astype(np.int64)), expected)


def test_int8_model_rejects_float_images_scaled_to_0_1(models, image):
    segmenter = enet_tflite.Segmenter(models["int8"])
    with pytest.raises(ValueError, match=r"takes uint8 pixels.*float32 with values in \[0\.0, 1\.0\]"):
        segmenter.predict(image.astype(np.float32) / 255)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((HEIGHT, WIDTH), np.uint8), r"shape \(32, 48\) with 1 channel\(s\) \(a greyscale image\?\)"),
    (np.zeros((HEIGHT, WIDTH, 4), np.uint8), r"shape \(32, 48, 4\) with 4 channel\(s\) \(RGBA\?"),
    (np.zeros((2, HEIGHT, WIDTH, 3), np.uint8), r"batches of 1. Received: shape \(2, 32, 48, 3\)"),
    (np.full((HEIGHT, WIDTH, 3), -1.0, np.float32), r"raw pixels in \[0, 255\].*float32"),
    (np.full((HEIGHT, WIDTH, 3), "a"), "dtype <U1"),
    (Image.new("L", (WIDTH, HEIGHT)), "mode 'L'"),
])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_bad_inputs_are_clear_errors(models, precision, bad, message):
    segmenter = enet_tflite.Segmenter(models[precision])
    with pytest.raises(ValueError, match=message):
        segmenter.predict(bad)


def test_run_checks_the_preprocessed_batch(models, image):
    segmenter = enet_tflite.Segmenter(models["int8"])
    with pytest.raises(ValueError, match=r"shape \(1, 32, 48, 3\) and dtype uint8. Received: shape \(1, 32, 48, 3\), dtype float32"):
        segmenter.run(image[None].astype(np.float32))


def test_cli_writes_overlay_and_class_map(models, image, tmp_path, capsys):
    image_path, overlay, class_map = tmp_path / "in.png", tmp_path / "out.png", tmp_path / "map.png"
    Image.fromarray(image).resize((60, 40)).save(image_path)
    palette = tmp_path / "palette.json"
    palette.write_text(json.dumps([[255, 0, 0], [0, 255, 0], [0, 0, 255]]))
    enet_tflite.main([models["int8"], str(image_path), "--output", str(overlay), "--class_map", str(class_map),
                      "--palette", str(palette), "--threads", "1"])
    assert Image.open(overlay).size == (60, 40) and Image.open(overlay).mode == "RGB"
    ids = np.asarray(Image.open(class_map))
    assert ids.shape == (40, 60) and ids.max() < CLASSES
    assert "Wrote" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "map.png", "out.png", "palette.json"]


def test_cli_greyscale_image_needs_convert_rgb(models, tmp_path):
    grey = tmp_path / "grey.png"
    Image.new("L", (WIDTH, HEIGHT), 128).save(grey)
    with pytest.raises(ValueError, match="'L' image, not RGB; pass --convert_rgb"):
        enet_tflite.main([models["fp32"], str(grey)])
    enet_tflite.main([models["fp32"], str(grey), "--convert_rgb"])
    assert (tmp_path / "grey_overlay.png").is_file()


def test_missing_files_are_named(models, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.tflite"):
        enet_tflite.Segmenter(tmp_path / "nothing.tflite")
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        enet_tflite.main([models["fp32"], str(tmp_path / "nothing.png")])


def test_benchmark_prints_a_table(models, capsys):
    result = enet_tflite.main([models["fp32"], "--benchmark", "--runs", "5", "--warmup", "1", "--threads", "2"])
    assert 0 < result["median_ms"] <= result["p90_ms"]
    out = capsys.readouterr().out
    assert "median_ms" in out and "p90_ms" in out and "1x32x48x3 float32" in out


def test_default_palette_is_distinct():
    palette = enet_tflite.default_palette(256)
    assert len(set(palette)) == 256 and palette[0] == (0, 0, 0)


def test_runtime_never_imports_tensorflow(models, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / 'tflite')!r})
        import numpy as np
        import enet_tflite
        for path in ({models['fp32']!r}, {models['int8']!r}):
            segmenter = enet_tflite.Segmenter(path, num_threads=1)
            image = np.zeros((40, 50, 3), np.uint8)
            segmenter.overlay(image, segmenter.predict(image))
            segmenter.benchmark(runs=1, warmup=0)
        loaded = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras", "enet_keras")]
        assert not loaded, loaded
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_runtime_files_list_only_the_three_dependencies():
    source = (ROOT / "tflite" / "enet_tflite.py").read_text()
    for module in ("tensorflow", "keras", "enet_keras"):
        assert f"import {module}" not in source and f"from {module}" not in source
    requirements = (ROOT / "tflite" / "requirements.txt").read_text().split()
    assert [r.split(">")[0].split("=")[0].lower() for r in requirements] == ["numpy", "pillow", "ai-edge-litert"]
