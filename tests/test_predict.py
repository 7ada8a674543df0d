"""Tests of tools/predict.py, enet_keras.inference (segmenting files) and enet_keras.visualize."""

import json
import os
import sys

import numpy as np
import keras
import pytest
from PIL import Image

from enet_keras import ENet, inference, runtimes, visualize

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
import predict as predict_tool  # noqa: E402


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory):
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "enet3.keras"
    ENet(3).save(path)
    return str(path)


def _write_image(path, height, width, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def test_predict_image_sizes_and_palette(keras_model, tmp_path):
    image = _write_image(tmp_path / "street.png", 60, 70)  # not a multiple of 8: padded and cropped back
    out = tmp_path / "out"
    written = predict_tool.main(["--model", keras_model, "--input", str(tmp_path / "street.png"),
                                 "--output_dir", str(out), "--palette", "camvid", "--alpha", "0.5"])
    assert sorted(os.path.basename(p) for p in written) == ["street_class_ids.png", "street_overlay.png"]
    ids = np.asarray(Image.open(out / "street_class_ids.png"))
    assert ids.shape == (60, 70) and ids.dtype == np.uint8 and ids.max() < 3
    np.testing.assert_array_equal(ids, inference.segment(runtimes.load_predictor(keras_model), image))
    side = np.asarray(Image.open(out / "street_overlay.png").convert("RGB"))
    assert side.shape[1] == 140 and side.shape[0] > 60  # input | overlay, legend below
    np.testing.assert_array_equal(side[:60, :70], image)
    palette, _ = visualize.get_palette("camvid")
    np.testing.assert_array_equal(side[:60, 70:], visualize.overlay(image, ids, palette, 0.5))
    config = json.loads((out / "predict_config.json").read_text())
    assert config["palette"] == "camvid"


def test_predict_folder_with_fixed_size_model_and_palette_file(tmp_path):
    # A fixed-size model (like a .tflite) gets images resized to its size and ids resized back.
    model_path = tmp_path / "fixed.keras"
    ENet(3, input_shape=(64, 64, 3)).save(model_path)
    folder = tmp_path / "images"
    folder.mkdir()
    _write_image(folder / "a.png", 48, 80, seed=1)
    _write_image(folder / "b.jpg", 64, 64, seed=2)
    (folder / "notes.txt").write_text("not an image")
    palette_file = tmp_path / "palette.json"
    palette_file.write_text(json.dumps({"palette": [[255, 0, 0], [0, 255, 0], [0, 0, 255]],
                                        "class_names": ["x", "y", "z"]}))
    out = tmp_path / "out"
    predict_tool.main(["--model", str(model_path), "--input", str(folder), "--output_dir", str(out),
                       "--palette", str(palette_file)])
    assert Image.open(out / "a_class_ids.png").size == (80, 48)
    assert Image.open(out / "b_class_ids.png").size == (64, 64)
    assert Image.open(out / "a_overlay.png").size[0] == 160
    assert not (out / "notes_class_ids.png").exists()


def test_unreadable_video_and_bad_inputs(keras_model, tmp_path):
    video = tmp_path / "x.mp4"
    video.write_bytes(os.urandom(256))
    # Without OpenCV: an ImportError saying what to install; with it: a ValueError naming the file.
    with pytest.raises((ImportError, ValueError), match=r"x\.mp4"):
        predict_tool.main(["--model", keras_model, "--input", str(video), "--output_dir", str(tmp_path / "o")])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        predict_tool.main(["--model", keras_model, "--input", str(tmp_path / "missing.png"),
                           "--output_dir", str(tmp_path / "o")])
    _write_image(tmp_path / "ok.png", 16, 16)
    with pytest.raises(FileNotFoundError, match="nothing.keras"):
        predict_tool.main(["--model", str(tmp_path / "nothing.keras"), "--input", str(tmp_path / "ok.png"),
                           "--output_dir", str(tmp_path / "o")])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        predict_tool.main(["--model", keras_model, "--input", str(broken), "--output_dir", str(tmp_path / "o")])


def test_palettes_and_colorize(tmp_path):
    palette, names = visualize.get_palette("cityscapes", num_classes=19)
    assert len(palette) == 19 and names[0] == "road"
    palette, names = visualize.get_palette("default", num_classes=300)
    assert len(set(palette)) == 300 and names[299] == "class 299"
    with pytest.raises(ValueError, match="11 colours but 19 classes"):
        visualize.get_palette("camvid", num_classes=19)
    with pytest.raises(FileNotFoundError, match="nopalette"):
        visualize.get_palette(str(tmp_path / "nopalette.json"))
    (tmp_path / "p.json").write_text(json.dumps([[1, 2, 3], [4, 5, 6]]))  # tools/export.py's palette.json
    assert visualize.get_palette(str(tmp_path / "p.json"))[0] == [(1, 2, 3), (4, 5, 6)]
    colours = visualize.colorize(np.array([[0, 1], [255, 1]]), [(10, 20, 30), (40, 50, 60)])
    assert colours.tolist() == [[[10, 20, 30], [40, 50, 60]], [[0, 0, 0], [40, 50, 60]]]
    blended = visualize.overlay(np.full((1, 2, 3), 100, np.uint8), np.array([[0, 1]]), [(0, 0, 0), (200, 200, 200)], 0.5)
    assert blended.tolist() == [[[50, 50, 50], [150, 150, 150]]]


def test_confusion_matrix_png(tmp_path):
    path = visualize.plot_confusion_matrix(np.array([[3, 1], [0, 2]]), ["a", "b"], tmp_path / "cm.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 100
    with pytest.raises(ValueError, match="class names"):
        visualize.plot_confusion_matrix(np.zeros((2, 2)), ["a"], tmp_path / "x.png")
