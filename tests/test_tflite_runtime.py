"""tflite/enet_tflite: the LiteRT-only runtime (numpy, Pillow, ai-edge-litert; no TensorFlow).

The runtime does not care which segmenter it runs, so these tests use a tiny two-convolution
model with ENet's contract (float [0, 255] or uint8 pixels in, per-pixel logits out) exported by
`enet_keras.export.tflite`; ENet itself goes through the runtime in test_export.py.
"""

import json
import os
import pathlib
import platform
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import keras
from PIL import Image

from enet_keras.export import tflite

import enet_tflite

ROOT = pathlib.Path(__file__).resolve().parents[1]

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


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64",
                    reason="AMX and the seccomp filter exist on Linux x86-64 only")
def test_no_amx_refuses_only_the_amx_request_and_keeps_the_class_map(models, image, tmp_path):
    # disable_amx cannot be undone, so it runs in child processes, never in the test process.
    np.save(tmp_path / "image.npy", image)
    script = textwrap.dedent(f"""
        import ctypes, errno, sys
        import numpy as np
        import enet_tflite
        if sys.argv[1] == "off":
            assert enet_tflite.disable_amx() is True
        segmenter = enet_tflite.Segmenter({models['int8']!r}, num_threads=2)
        np.save(sys.argv[1] + ".npy", segmenter.predict(np.load("image.npy")))
        libc = ctypes.CDLL(None, use_errno=True)
        granted = ctypes.c_ulong()
        assert libc.syscall(158, 0x1022, ctypes.byref(granted)) == 0  # ARCH_GET_XCOMP_PERM still allowed
        asked = libc.syscall(158, 0x1023, 18)  # ARCH_REQ_XCOMP_PERM for AMX tile data
        print(asked, ctypes.get_errno() if asked else 0, errno.EPERM)
    """)
    results = {}
    for mode in ("default", "off"):
        result = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=120,
                                cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        results[mode] = result.stdout.split()
    asked, error, eperm = results["off"]
    assert asked == "-1" and error == eperm
    assert results["default"][1] != eperm  # without the filter the kernel answers (0, or EINVAL without AMX)
    default, off = np.load(tmp_path / "default.npy"), np.load(tmp_path / "off.npy")
    assert default.shape == off.shape == (HEIGHT, WIDTH)
    assert np.mean(default == off) >= 0.999  # VNNI and AMX kernels: the same integer arithmetic

    # As a user on a device runs it: from the tflite/ folder, with nothing installed but its three packages.
    command = [sys.executable, "-m", "enet_tflite", models["int8"], "--benchmark", "--runs", "1", "--no_amx"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT / "tflite")
    assert result.returncode == 0, result.stderr[-2000:]
    header, _, row = result.stdout.strip().splitlines()[-3:]
    cells = {key.strip(): value.strip() for key, value in zip(header.split(" | "), row.split(" | "))}
    assert cells["amx"] == "off"


def test_runtime_files_list_only_the_three_dependencies():
    files = sorted((ROOT / "tflite" / "enet_tflite").glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "__main__.py", "segmenter.py"}
    for path in files:
        source = path.read_text()
        for module in ("tensorflow", "keras", "enet_keras"):
            assert f"import {module}" not in source and f"from {module}" not in source, (path.name, module)
    requirements = (ROOT / "tflite" / "requirements.txt").read_text().split()
    assert [r.split(">")[0].split("=")[0].lower() for r in requirements] == ["numpy", "pillow", "ai-edge-litert"]


# Wrong inputs: every one is one line `error: ...` naming the culprit, exit status 2, nothing written.

PALETTE = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]


@pytest.fixture(scope="module")
def keras_file(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("keras") / "tiny.keras"
    tiny_model.save(path)
    return path


def _write_png(path, height=HEIGHT, width=WIDTH):
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def bad_files(tmp_path):
    """A folder with one good image and one of each broken input file."""
    _write_png(tmp_path / "in.png")
    (tmp_path / "empty.tflite").write_bytes(b"")
    (tmp_path / "random.tflite").write_bytes(np.random.default_rng(4).bytes(2000))
    (tmp_path / "text.png").write_text("not a picture\n")
    png = _write_png(tmp_path / "truncated.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "malformed.json").write_text("[[255, 0, 0], [0, 255")
    (tmp_path / "dict.json").write_text(json.dumps({"road": [128, 64, 128]}))
    (tmp_path / "pair.json").write_text(json.dumps([[255, 0], [0, 255, 0], [0, 0, 255]]))
    (tmp_path / "range.json").write_text(json.dumps([[256, 0, 0], [0, 255, 0], [0, 0, 255]]))
    (tmp_path / "short.json").write_text(json.dumps(PALETTE[:1]))
    return tmp_path


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# (argv, strings the one error line must contain); {model} is the fp32 model, {dir} the bad_files folder.
BAD_CLI_INPUTS = {
    "model_missing": (["{dir}/missing.tflite", "{dir}/in.png"], ["missing.tflite", "No TFLite model"]),
    "model_folder": (["{dir}", "{dir}/in.png"], ["it is a folder", "expected a .tflite file"]),
    "model_empty": (["{dir}/empty.tflite", "{dir}/in.png"], ["empty.tflite", "is empty"]),
    "model_random_bytes": (["{dir}/random.tflite", "{dir}/in.png"], ["random.tflite", "not a .tflite model", "FlatBuffer"]),
    "model_keras_zip": (["{keras}", "{dir}/in.png"], ["tiny.keras", "zip archive", "not a .tflite model"]),
    "image_missing": (["{model}", "{dir}/missing.png"], ["No image at", "missing.png"]),
    "image_text_as_png": (["{model}", "{dir}/text.png"], ["text.png", "not a readable image"]),
    "image_truncated_png": (["{model}", "{dir}/truncated.png"], ["truncated.png", "not a readable image", "truncated"]),
    "palette_missing": (["{model}", "{dir}/in.png", "--palette", "{dir}/missing.json"], ["missing.json", "--palette"]),
    "palette_malformed_json": (["{model}", "{dir}/in.png", "--palette", "{dir}/malformed.json"], ["malformed.json", "--palette", "not valid JSON"]),
    "palette_not_a_list": (["{model}", "{dir}/in.png", "--palette", "{dir}/dict.json"], ["dict.json", "--palette", "[r, g, b]", "dict"]),
    "palette_entry_of_two": (["{model}", "{dir}/in.png", "--palette", "{dir}/pair.json"], ["pair.json", "entry 0", "[255, 0]"]),
    "palette_value_256": (["{model}", "{dir}/in.png", "--palette", "{dir}/range.json"], ["range.json", "entry 0", "[0, 255]"]),
    "palette_too_few_colours": (["{model}", "{dir}/in.png", "--palette", "{dir}/short.json"], ["short.json", "1 colour(s)", "3 classes"]),
    "alpha_5": (["{model}", "{dir}/in.png", "--alpha", "5"], ["--alpha", "[0, 1]", "5.0"]),
    "alpha_negative": (["{model}", "{dir}/in.png", "--alpha", "-0.5"], ["--alpha", "[0, 1]", "-0.5"]),
    "alpha_nan": (["{model}", "{dir}/in.png", "--alpha", "nan"], ["--alpha", "[0, 1]", "nan"]),
    "threads_0": (["{model}", "{dir}/in.png", "--threads", "0"], ["--threads", ">= 1", "0"]),
    "runs_0": (["{model}", "--benchmark", "--runs", "0"], ["--runs", ">= 1"]),
    "warmup_negative": (["{model}", "--benchmark", "--warmup", "-1"], ["--warmup", ">= 0", "-1"]),
    "output_folder_missing": (["{model}", "{dir}/in.png", "--output", "{dir}/nowhere/out.png"], ["--output", "nowhere", "does not exist"]),
    "class_map_folder_missing": (["{model}", "{dir}/in.png", "--class_map", "{dir}/nowhere/map.png"], ["--class_map", "nowhere", "does not exist"]),
    "output_is_a_folder": (["{model}", "{dir}/in.png", "--output", "{dir}"], ["--output", "is a folder"]),
    "no_image_nor_benchmark": (["{model}"], ["image", "--benchmark"]),
}


@pytest.mark.parametrize("case", BAD_CLI_INPUTS)
def test_cli_bad_input_is_one_line_and_writes_nothing(models, keras_file, bad_files, capsys, case):
    argv, culprits = BAD_CLI_INPUTS[case]
    values = {"model": models["fp32"], "keras": str(keras_file), "dir": str(bad_files)}
    defaults = ["--output", "{dir}/out.png", "--class_map", "{dir}/map.png"]  # a case's own flags come later and win
    before = _listing(bad_files)
    status = enet_tflite.cli([a.format(**values) for a in defaults + argv])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), captured.err
    for culprit in culprits:
        assert culprit in lines[0], (culprit, lines[0])
    assert "Traceback" not in captured.err and captured.out == ""
    assert _listing(bad_files) == before


def test_cli_usage_errors_are_one_line(models, capsys):
    with pytest.raises(SystemExit) as exit_info:
        enet_tflite.cli([models["fp32"], "in.png", "--alpha", "half"])
    lines = capsys.readouterr().err.splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1
    assert lines[0].startswith("error: argument --alpha: invalid float value: 'half'")


def test_cli_script_exits_2_with_one_line_and_debug_shows_the_traceback(models, bad_files):
    # The image is checked before the model loads, so LiteRT's own INFO line does not precede ours.
    script = [sys.executable, "-m", "enet_tflite", models["fp32"], str(bad_files / "truncated.png")]
    before = _listing(bad_files)
    result = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == "", result.stderr[-2000:]
    assert result.stderr.splitlines() == [result.stderr.strip()] and result.stderr.startswith("error: ")
    assert "truncated.png" in result.stderr and "Traceback" not in result.stderr
    debug = subprocess.run(script + ["--debug"], capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "truncated.png" in debug.stderr
    assert _listing(bad_files) == before


def test_api_bad_models_raise_clear_errors(keras_file, bad_files, models):
    for name, error, message in [
        ("missing.tflite", FileNotFoundError, "No TFLite model at .*missing.tflite"),
        ("empty.tflite", ValueError, "empty.tflite is empty"),
        ("random.tflite", ValueError, "random.tflite is not a .tflite model"),
    ]:
        with pytest.raises(error, match=message):
            enet_tflite.Segmenter(bad_files / name)
    with pytest.raises(ValueError, match=r"tiny.keras is a zip archive \(a .keras model\?\), not a .tflite model"):
        enet_tflite.Segmenter(keras_file)
    with pytest.raises(ValueError, match=r"num_threads must be None or an integer >= 1. Received: num_threads=0"):
        enet_tflite.Segmenter(models["fp32"], num_threads=0)


def test_api_flatbuffer_litert_rejects_names_the_model(bad_files):
    # Passes the identifier check but is not a model: LiteRT's own error, with the path added.
    (bad_files / "fake.tflite").write_bytes(b"\x00\x00\x00\x00TFL3" + b"\x00" * 64)
    with pytest.raises(ValueError, match="fake.tflite: LiteRT cannot load"):
        enet_tflite.Segmenter(bad_files / "fake.tflite")


def test_api_bad_images_and_palettes_raise_clear_errors(models, bad_files, image):
    with pytest.raises(ValueError, match="text.png is not a readable image"):
        enet_tflite.load_image(bad_files / "text.png")
    with pytest.raises(ValueError, match="truncated.png is not a readable image"):
        enet_tflite.load_image(bad_files / "truncated.png")
    with pytest.raises(FileNotFoundError, match=r"missing.json \(--palette\)"):
        enet_tflite.load_palette(bad_files / "missing.json", CLASSES)
    with pytest.raises(ValueError, match=r"malformed.json \(--palette\) is not valid JSON"):
        enet_tflite.load_palette(bad_files / "malformed.json", CLASSES)
    assert enet_tflite.load_palette(bad_files / "short.json", 1) == [(255, 0, 0)]
    segmenter = enet_tflite.Segmenter(models["fp32"])
    class_map = segmenter.predict(image)
    for palette, message in [
        ("#ff0000", "Received: a str"),
        ([[255, 0, 0], [0, 255, 0], 7], r"entry 2 is not \[r, g, b\].*Received: 7"),
        ([[255, 0, 0], [0, 255, 0], [0, 0, 0.5]], r"entry 2 is not \[r, g, b\]"),
        ([[255, 0, 0], [0, 255, 0], [0, 0, True]], r"entry 2 is not \[r, g, b\]"),
        (PALETTE[:2], r"palette has 2 colour\(s\) but the model has 3 classes"),
    ]:
        with pytest.raises(ValueError, match=message):
            segmenter.overlay(image, class_map, palette)
    for alpha in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
            segmenter.overlay(image, class_map, alpha=alpha)
    np_palette = np.asarray(PALETTE, np.uint8)  # arrays and whole floats are fine
    assert segmenter.overlay(image, class_map, np_palette).size == (WIDTH, HEIGHT)
    assert segmenter.overlay(image, class_map, np_palette.astype(float), alpha=1.0).size == (WIDTH, HEIGHT)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_save_png_gives_the_usual_file_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = enet_tflite.save_png(Image.new("RGB", (4, 4)), tmp_path / "out.png")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["out.png"]


def test_save_png_writes_whole_or_not_at_all(tmp_path):
    class Failing:
        def save(self, fp, format):  # PIL takes a path or a file; a path is what it gets
            with open(fp, "wb") as f:
                f.write(b"\x89PNG half")
            raise OSError("disk full")

    path = tmp_path / "out.png"
    with pytest.raises(OSError, match="disk full"):
        enet_tflite.save_png(Failing(), path)
    assert os.listdir(tmp_path) == []
    enet_tflite.save_png(Image.new("RGB", (4, 4)), path)
    with pytest.raises(OSError, match="disk full"):
        enet_tflite.save_png(Failing(), path)
    assert os.listdir(tmp_path) == ["out.png"] and Image.open(path).size == (4, 4)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        enet_tflite.save_png(Image.new("RGB", (4, 4)), tmp_path / "nowhere" / "out.png")
    assert not (tmp_path / "nowhere").exists()
