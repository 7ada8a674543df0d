"""Bad input to every tool, as a new user would give it: each case must end with one line
`error: ...` that names the flag or file at fault, exit status 2, and write nothing.

The device runtime (tflite/enet_tflite) has its own bad-input cases in test_tflite_runtime.py.
"""

import importlib.util
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from enet_keras import cli
from enet_keras.model import ENet
from helpers import small_segmenter

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = ["--dataset", "synthetic", "--dataset_option", "num_examples=2", "--dataset_option", "height=32",
             "--dataset_option", "width=32"]


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"bad_input_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOLS = {name: _tool(name) for name in
         ("train", "evaluate", "export", "predict", "qat", "benchmark", "convert_tfrecord")}


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def _folder(root, label_value=None, n=2, size=32):
    """A `folder` dataset of 3 classes; `label_value` puts that value into the first mask."""
    rng = np.random.default_rng(0)
    for i in range(n):
        label = rng.integers(0, 3, (size, size))
        if i == 0 and label_value is not None:
            label[0, 0] = label_value
        _png(root / "train" / "images" / f"img{i}.png", rng.integers(0, 256, (size, size, 3)))
        _png(root / "train" / "masks" / f"img{i}.png", label)
        _png(root / "val" / "images" / f"img{i}.png", rng.integers(0, 256, (size, size, 3)))
        _png(root / "val" / "masks" / f"img{i}.png", label)


def _tfrecords(root):
    """`tfr_truncated` (a shard cut short) and `tfr_other` (a shard of other features)."""
    import tensorflow as tf

    from enet_keras import data

    source = data.get_source("folder", "val", str(root / "folder"), num_classes=3)
    for name in ("tfr_truncated", "tfr_other"):
        data.write_tfrecords(source, str(root / name), num_shards=1, progress=False)
    (shard,) = (root / "tfr_truncated").glob("*.tfrecord")
    shard.write_bytes(shard.read_bytes()[:-100])
    (shard,) = (root / "tfr_other").glob("*.tfrecord")
    with tf.io.TFRecordWriter(str(shard)) as writer:
        for _ in range(2):
            feature = {"image_raw": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace of good and bad files; every case runs against it and must leave it as it was."""
    root = tmp_path_factory.mktemp("ws")
    ENet(num_classes=3).save(root / "three.keras")
    (root / "empty.keras").write_bytes(b"")
    good = (root / "three.keras").read_bytes()
    (root / "truncated.keras").write_bytes(good[: len(good) // 2])
    (root / "random.tflite").write_bytes(np.random.default_rng(0).bytes(4096))
    (root / "notes.keras").write_text("not a model")
    with zipfile.ZipFile(root / "other.keras", "w") as archive:
        archive.writestr("hello.txt", "a zip, but not a Keras model")
    (root / "model.pt").write_bytes(b"torch")
    (root / "text.png").write_text("not an image")
    (root / "palette.json").write_text("{'sky': [1, 2, 3]")
    _png(root / "street.png", np.zeros((32, 32, 3)))
    _folder(root / "folder")
    _folder(root / "folder_bad_label", label_value=9)
    _folder(root / "folder_truncated")
    png = (root / "folder_truncated" / "train" / "images" / "img1.png").read_bytes()
    (root / "folder_truncated" / "train" / "images" / "img1.png").write_bytes(png[: len(png) // 2])
    _folder(root / "folder_unpaired")
    os.remove(root / "folder_unpaired" / "train" / "masks" / "img1.png")
    (root / "not_export").mkdir()
    (root / "not_export" / "keep.txt").write_text("mine")
    (root / "run_other").mkdir()
    (root / "run_other" / "config.json").write_text('{"batch_size": 2}')
    (root / "run_other" / "decoder").mkdir()
    (root / "run_other" / "decoder" / "history.csv").write_text("epoch,loss\n0,1.5\n")
    (root / "run_bad_config" / "decoder").mkdir(parents=True)
    (root / "run_bad_config" / "config.json").write_text("")  # emptied by a full disk
    (root / "run_bad_config" / "decoder" / "history.csv").write_text("epoch,loss\n0,1.5\n")
    ENet(num_classes=3, encoder_only=True).save(root / "encoder.keras")
    small_segmenter().save(root / "small.keras")  # exports in seconds
    _folder(root / "folder_jpeg_mask")
    with Image.open(root / "folder_jpeg_mask" / "train" / "masks" / "img1.png") as im:
        im.convert("L").save(root / "folder_jpeg_mask" / "train" / "masks" / "img1.png", format="JPEG")
    _folder(root / "folder_corrupt")
    path = root / "folder_corrupt" / "train" / "images" / "img0.png"
    png = bytearray(path.read_bytes())
    png[len(png) // 2] ^= 0xFF  # a flipped byte in the image data; header and IEND intact
    path.write_bytes(bytes(png))
    _tfrecords(root)
    return root


FOLDER = ["--dataset", "folder", "--dataset_option", "num_classes=3"]

# (tool, arguments ({ws} is the workspace), text the error line must contain)
CASES = [
    # train.py: flags
    ("train", SYNTHETIC + ["--steps_per_epoch", "0"], "--steps_per_epoch must be >= 1"),
    ("train", SYNTHETIC + ["--steps_per_epoch", "-1"], "--steps_per_epoch must be >= 1"),
    ("train", SYNTHETIC + ["--validation_steps", "0"], "--validation_steps must be >= 1"),
    ("train", SYNTHETIC + ["--learning_rate", "-1"], "--learning_rate must be > 0"),
    ("train", SYNTHETIC + ["--learning_rate", "0"], "--learning_rate must be > 0"),
    ("train", SYNTHETIC + ["--weight_decay", "-0.1"], "--weight_decay must be >= 0"),
    ("train", SYNTHETIC + ["--decoder_epochs", "0"], "--decoder_epochs must be >= 1"),
    ("train", SYNTHETIC + ["--encoder_epochs", "-1"], "--encoder_epochs must be >= 0"),
    ("train", SYNTHETIC + ["--stage", "encoder", "--encoder_epochs", "0"], "--stage encoder needs --encoder_epochs >= 1"),
    ("train", SYNTHETIC + ["--batch_size", "0"], "--batch_size must be >= 1"),
    ("train", SYNTHETIC + ["--height", "100"], "--height must be a positive multiple of 8"),
    ("train", SYNTHETIC + ["--width", "0"], "--width must be a positive multiple of 8"),
    ("train", SYNTHETIC + ["--val_height", "12"], "--val_height must be a positive multiple of 8"),
    ("train", SYNTHETIC + ["--scale_range", "2,1"], "--scale_range must be LOW,HIGH"),
    ("train", SYNTHETIC + ["--scale_range", "big"], "--scale_range"),
    ("train", SYNTHETIC + ["--validation_freq", "0"], "--validation_freq must be >= 1"),
    ("train", SYNTHETIC + ["--decoder_c", "1.0"], "--decoder_c must be > 1"),
    ("train", SYNTHETIC + ["--learning_rate", "fast"], "--learning_rate"),
    ("train", ["--dataset", "imagenet"], "--dataset: invalid choice: 'imagenet'"),
    ("train", ["--dataset", "camvid"], "--data_dir"),
    ("train", ["--dataset", "camvid", "--data_dir", "{ws}/nowhere"], "nowhere"),
    ("train", SYNTHETIC + ["--dataset_option", "num_examples"], "KEY=VALUE"),
    ("train", SYNTHETIC + ["--dataset_option", "colour=red"], "Unknown option(s) ['colour']"),
    ("train", SYNTHETIC + ["--num_classes", "19"], "--num_classes 19 disagrees with the data"),
    ("train", SYNTHETIC + ["--run_dir", "{ws}/run_other"], "batch_size differ"),
    ("train", SYNTHETIC + ["--stage", "decoder"], "encoder/best.keras does not exist"),
    ("train", SYNTHETIC + ["--stage", "decoder", "--encoder_weights", "{ws}/truncated.keras"],
     "--encoder_weights: {ws}/truncated.keras is not a .keras file"),
    ("train", SYNTHETIC + ["--verbose", "3"], "--verbose: invalid choice"),
    # train.py: every flag checked before the run folder is made or changed
    ("train", SYNTHETIC + ["--weight_decay", "inf"], "--weight_decay: expects a finite number"),
    ("train", SYNTHETIC + ["--learning_rate", "nan"], "--learning_rate: expects a finite number"),
    ("train", SYNTHETIC + ["--decoder_c", "1e999"], "--decoder_c: expects a finite number"),
    ("train", SYNTHETIC + ["--scale_range", "1,inf"], "--scale_range"),
    ("train", SYNTHETIC + ["--height", "80000"], "--height/--width: 80000x160 (batch 8) needs about"),
    ("train", SYNTHETIC + ["--dataset_option", "num_examples=2.5"], "num_examples must be an integer"),
    ("train", SYNTHETIC + ["--dataset_option", "height=Infinity"], "expects a finite number for height"),
    ("train", SYNTHETIC + ["--dataset_option", "height=1e999"], "expects a finite number for height"),
    ("train", SYNTHETIC + ["--run_dir", ""], "--run_dir is empty"),
    ("train", SYNTHETIC + ["--run_dir", "{ws}/street.png"], "street.png is a file"),
    ("train", SYNTHETIC + ["--run_dir", "{ws}/run_bad_config"],
     "{ws}/run_bad_config/config.json is unreadable"),
    # evaluate.py: model files
    ("evaluate", SYNTHETIC + ["--model", "{ws}/missing.keras"], "{ws}/missing.keras"),
    ("evaluate", SYNTHETIC + ["--model", "{ws}/empty.keras"], "{ws}/empty.keras is empty"),
    ("evaluate", SYNTHETIC + ["--model", "{ws}/truncated.keras"], "{ws}/truncated.keras is not a .keras file"),
    ("evaluate", SYNTHETIC + ["--model", "{ws}/notes.keras"], "{ws}/notes.keras is not a .keras file"),
    ("evaluate", SYNTHETIC + ["--model", "{ws}/other.keras"], "cannot load {ws}/other.keras"),
    ("evaluate", SYNTHETIC + ["--model", "{ws}/random.tflite"], "{ws}/random.tflite"),
    ("evaluate", SYNTHETIC + ["--model", "{ws}/model.pt"], "{ws}/model.pt"),
    ("evaluate", SYNTHETIC + ["--model", "{ws}/three.keras"], "predicts 3 classes but the dataset 'synthetic'"),
    ("evaluate", FOLDER + ["--data_dir", "{ws}/folder", "--model", "{ws}/three.keras", "--reference", "{ws}/nothing.tflite"],
     "{ws}/nothing.tflite"),
    # evaluate.py: flags and data
    ("evaluate", FOLDER + ["--data_dir", "{ws}/folder", "--model", "{ws}/three.keras", "--batch_size", "0"], "--batch_size must be >= 1"),
    ("evaluate", FOLDER + ["--data_dir", "{ws}/folder", "--model", "{ws}/three.keras", "--limit", "0"], "--limit must be >= 1"),
    ("evaluate", FOLDER + ["--data_dir", "{ws}/folder", "--model", "{ws}/three.keras", "--examples", "-1"], "--examples must be >= 0"),
    ("evaluate", FOLDER + ["--data_dir", "{ws}/folder", "--model", "{ws}/three.keras", "--split", "dev"], "--split: invalid choice"),
    ("evaluate", FOLDER + ["--data_dir", "{ws}/folder_bad_label", "--model", "{ws}/three.keras"],
     "--dataset_option invalid_labels=ignore"),
    ("evaluate", FOLDER + ["--data_dir", "{ws}/folder_truncated", "--model", "{ws}/three.keras", "--split", "train"],
     "img1.png"),
    ("evaluate", FOLDER + ["--data_dir", "{ws}/folder_unpaired", "--model", "{ws}/three.keras", "--split", "train"],
     "img1"),
    ("evaluate", ["--dataset", "folder", "--data_dir", "{ws}/folder", "--model", "{ws}/three.keras", "--dataset_option",
                  "num_classes=2"], "predicts 3 classes but the dataset 'folder' (val) has 2"),
    ("evaluate", FOLDER + ["--data_dir", "{ws}/folder", "--model", "{ws}/three.keras", "--dataset_option",
                           "num_classes=3.5"], "folder option num_classes must be an integer"),
    ("evaluate", FOLDER + ["--data_dir", "{ws}/folder_jpeg_mask", "--model", "{ws}/three.keras", "--split", "train"],
     "label file {ws}/folder_jpeg_mask/train/masks/img1.png is a JPEG"),
    ("evaluate", FOLDER + ["--data_dir", "{ws}/folder_corrupt", "--model", "{ws}/three.keras", "--split", "train"],
     "image file {ws}/folder_corrupt/train/images/img0.png is corrupt"),
    ("evaluate", ["--dataset", "tfrecord", "--data_dir", "{ws}/tfr_truncated", "--model", "{ws}/three.keras"],
     "is truncated or not a TFRecord file"),
    ("evaluate", ["--dataset", "tfrecord", "--data_dir", "{ws}/tfr_other", "--model", "{ws}/three.keras"],
     "does not hold enet_keras examples"),
    ("evaluate", FOLDER + ["--data_dir", "{ws}/folder", "--model", "{ws}/encoder.keras"], "is an encoder-only ENet"),
    ("evaluate", FOLDER + ["--data_dir", "{ws}/folder", "--model", "{ws}/three.keras", "--output", ""],
     "--output is empty"),
    # export.py
    ("export", ["--model", "{ws}/three.keras", "--output_dir", "{ws}/out", "--formats", "tflite_fp32", "--height", "100"],
     "--height must be a positive multiple of 8"),
    ("export", ["--model", "{ws}/three.keras", "--output_dir", "{ws}/out", "--num_calibration_images", "0"],
     "--num_calibration_images must be >= 1"),
    ("export", ["--model", "{ws}/three.keras", "--output_dir", "{ws}/out", "--formats", "tflite_int8"],
     "int8 export calibrates on training images: give --dataset"),
    ("export", ["--model", "{ws}/three.keras", "--output_dir", "{ws}/out", "--formats", "tflite_fp64"], "tflite_fp64"),
    ("export", ["--model", "{ws}/missing.keras", "--output_dir", "{ws}/out", "--formats", "tflite_fp32"],
     "--model: no model file at {ws}/missing.keras"),
    ("export", ["--model", "{ws}/truncated.keras", "--output_dir", "{ws}/out", "--formats", "tflite_fp32"],
     "--model: {ws}/truncated.keras is not a .keras file"),
    ("export", ["--model", "{ws}/three.keras", "--output_dir", "{ws}/not_export", "--formats", "tflite_fp32"],
     "--output_dir {ws}/not_export exists and is not an export folder"),
    # export.py: never replaces what is not ours
    ("export", ["--model", "{ws}/three.keras", "--output_dir", "", "--formats", "tflite_fp32"], "--output_dir is empty"),
    ("export", ["--model", "{ws}/three.keras", "--output_dir", "{ws}/not_export/missing/..", "--formats",
                "tflite_fp32"], "--output_dir {ws}/not_export/missing/.. exists and is not an export folder"),
    ("export", ["--model", "{ws}/three.keras", "--output_dir", "{ws}/street.png", "--formats", "tflite_fp32"],
     "--output_dir {ws}/street.png is a file"),
    ("export", ["--model", "{ws}/three.keras", "--output_dir", "{ws}/out", "--formats", "tflite_fp32",
                "--model_name", "../x"], "--model_name must be a plain file name"),
    ("export", ["--model", "{ws}/encoder.keras", "--output_dir", "{ws}/out", "--formats", "tflite_fp32"],
     "is an encoder-only ENet"),
    # predict.py
    ("predict", ["--model", "{ws}/three.keras", "--input", "{ws}/street.png", "--output_dir", "{ws}/out", "--alpha", "5"],
     "--alpha must be in [0, 1]"),
    ("predict", ["--model", "{ws}/three.keras", "--input", "{ws}/street.png", "--output_dir", "{ws}/out", "--every", "0"],
     "--every must be >= 1"),
    ("predict", ["--model", "{ws}/three.keras", "--input", "{ws}/nothing.png", "--output_dir", "{ws}/out"], "{ws}/nothing.png"),
    ("predict", ["--model", "{ws}/three.keras", "--input", "{ws}/text.png", "--output_dir", "{ws}/out"], "{ws}/text.png"),
    ("predict", ["--model", "{ws}/missing.keras", "--input", "{ws}/street.png", "--output_dir", "{ws}/out"], "{ws}/missing.keras"),
    ("predict", ["--model", "{ws}/three.keras", "--input", "{ws}/street.png", "--output_dir", "{ws}/out",
                 "--palette", "{ws}/palette.json"], "{ws}/palette.json"),
    ("predict", ["--model", "{ws}/three.keras", "--input", "{ws}/street.png", "--output_dir", "{ws}/out",
                 "--palette", "rainbow"], "rainbow"),
    ("predict", ["--model", "{ws}/encoder.keras", "--input", "{ws}/street.png", "--output_dir", "{ws}/out"],
     "is an encoder-only ENet"),
    ("predict", ["--model", "{ws}/three.keras", "--input", "{ws}/street.png", "--output_dir", ""], "--output_dir is empty"),
    ("predict", ["--model", "{ws}/three.keras", "--input", "{ws}/folder/train/images", "--output_dir",
                 "{ws}/folder/train/images/out"], "is inside the --input folder"),
    ("qat", ["--model", "{ws}/three.keras", "--output", ""], "--output is empty"),
    ("export", ["--model", "{ws}/three.keras", "--output_dir", "{ws}/out", "--formats", "tflite_fp32",
                "--height", "80000", "--width", "80000"], "--height/--width: 80000x80000 (batch 1) needs about"),
    # qat.py
    ("qat", ["--model", "{ws}/three.keras", "--output", "{ws}/out/q.tflite", "--epochs", "0"], "--epochs and --batch_size must be >= 1"),
    ("qat", ["--model", "{ws}/three.keras", "--output", "{ws}/out/q.tflite", "--height", "100"], "--height must be a positive multiple of 8"),
    ("qat", ["--model", "{ws}/missing.keras", "--output", "{ws}/out/q.tflite"], "{ws}/missing.keras"),
    # benchmark.py
    ("benchmark", ["--runs", "0"], "--runs must be >= 1"),
    ("benchmark", ["--warmup", "-1"], "--warmup must be >= 0"),
    ("benchmark", ["--sizes", "100x100"], "--sizes"),
    ("benchmark", ["--sizes", "80000x80000"], "--sizes: 80000x80000 (batch 1) needs about"),
    ("benchmark", ["--threads", "0"], "--threads"),
    ("benchmark", ["--model", "{ws}/missing.keras"], "{ws}/missing.keras"),
    ("benchmark", ["--keep_exports"], "--keep_exports needs --output_dir"),
    # convert_tfrecord.py
    ("convert_tfrecord", ["--output_dir", "{ws}/out"], "--dataset is required"),
    ("convert_tfrecord", SYNTHETIC + ["--output_dir", "{ws}/out", "--num_shards", "0"], "--num_shards must be >= 1"),
]


def _listing(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


@pytest.mark.parametrize("tool, args, expected", CASES, ids=[f"{c[0]}:{' '.join(c[1][-2:])}" for c in CASES])
def test_bad_input_is_one_clear_line_and_writes_nothing(ws, tool, args, expected, capsys, monkeypatch):
    monkeypatch.chdir(ws)  # a default --run_dir or output lands here and would show
    before = _listing(ws)
    argv = [a.replace("{ws}", str(ws)) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        cli.run(TOOLS[tool].main, argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_info.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected.replace("{ws}", str(ws)) in lines[0], lines[0]
    assert _listing(ws) == before


def test_cases_cover_every_tool_and_enough_kinds():
    assert {c[0] for c in CASES} == set(TOOLS)
    assert len(CASES) >= 60


def test_debug_shows_the_traceback(ws, capsys):
    with pytest.raises(SystemExit):
        cli.run(TOOLS["evaluate"].main, SYNTHETIC + ["--model", str(ws / "empty.keras"), "--debug"])
    assert "Traceback" in capsys.readouterr().err


def test_every_tool_help_ends_with_defaults_and_an_example():
    for name, tool in TOOLS.items():
        parser = tool.build_parser()
        text = parser.format_help()  # the example comes last, after the flags
        assert text.rindex("--debug") < text.rindex("Example:") and f"python tools/{name}.py" in parser.epilog, name
        for action in parser._actions:
            if action.help and action.dest != "help":
                assert re.search(r"\((default: .*|required)\)\.?$", action.help), (name, action.dest, action.help)



# Data loss: an export must never move or delete what it did not write.

def _export(model, out, name="enet"):
    return cli.run(TOOLS["export"].main, ["--model", str(model), "--output_dir", str(out), "--formats", "tflite_fp32",
                                          "--height", "32", "--width", "32", "--model_name", name])


def _exit_code(call):
    with pytest.raises(SystemExit) as exit_info:
        call()
    return exit_info.value.code


@pytest.mark.parametrize("destination", ["", "{d}/missing/..", "{d}/sentinel.txt", "{d}", "{link}"])
def test_export_never_touches_a_folder_or_file_that_is_not_ours(ws, tmp_path, monkeypatch, destination):
    d = tmp_path / "user"
    d.mkdir()
    (d / "sentinel.txt").write_text("mine")
    (tmp_path / "cwd_sentinel.txt").write_text("mine too")
    (tmp_path / "link").symlink_to(d)
    monkeypatch.chdir(tmp_path)  # "" would be the current folder
    before = _listing(tmp_path)
    out = destination.replace("{d}", str(d)).replace("{link}", str(tmp_path / "link"))
    assert _exit_code(lambda: _export(ws / "small.keras", out)) == 2
    assert _listing(tmp_path) == before and (d / "sentinel.txt").read_text() == "mine"
    assert (tmp_path / "link").is_symlink()


def test_export_through_a_symlink_replaces_the_target_and_keeps_the_link(ws, tmp_path):
    real, link = tmp_path / "real", tmp_path / "link"
    assert _exit_code(lambda: _export(ws / "small.keras", real)) == 0
    link.symlink_to(real)
    assert _exit_code(lambda: _export(ws / "small.keras", link, name="again")) == 0
    assert link.is_symlink() and (real / "again_fp32.tflite").exists() and not (real / "enet_fp32.tflite").exists()


def test_a_file_put_into_an_export_folder_stops_the_next_export(ws, tmp_path, capsys):
    out = tmp_path / "export"
    assert _exit_code(lambda: _export(ws / "small.keras", out)) == 0
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert _exit_code(lambda: _export(ws / "small.keras", out)) == 2
    assert "holds files the export did not write (notes.txt)" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine" and (out / "enet_fp32.tflite").exists()


def test_evaluate_on_an_export_writes_beside_it_and_a_reexport_keeps_its_results(ws, tmp_path, capsys):
    out = tmp_path / "export"
    assert _exit_code(lambda: _export(ws / "small.keras", out)) == 0
    args = FOLDER + ["--data_dir", str(ws / "folder"), "--model", str(out / "enet_fp32.tflite"), "--examples", "1"]
    assert _exit_code(lambda: cli.run(TOOLS["evaluate"].main, args)) == 0
    results = tmp_path / "export_enet_fp32_folder_val_eval.json"
    assert results.exists() and (tmp_path / "export_enet_fp32_folder_val_eval_examples.png").exists()
    assert sorted(p.name for p in out.iterdir()) == ["enet_fp32.tflite", "export_config.json", "export_summary.json"]
    assert _exit_code(lambda: _export(ws / "small.keras", out)) == 0  # the export folder held nothing else
    assert results.exists()


def test_a_corrupt_history_names_the_file(tmp_path):
    from enet_keras.training.callbacks import read_history

    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,1.5\n1,not-a-number\n")
    with pytest.raises(ValueError, match=f"{re.escape(str(path))} is not a readable training history"):
        read_history(path)


def test_a_missing_extra_is_one_line_and_a_bug_keeps_its_traceback(capsys):
    def main(argv):
        import enet_keras_missing_module  # noqa: F401

    def main_cv2(argv):
        raise ModuleNotFoundError("No module named 'cv2'", name="cv2")

    with pytest.raises(SystemExit) as exit_info:
        cli.run(main_cv2, [])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == 'error: cv2 is not installed; it comes with pip install "enet_keras[video]"\n'
    with pytest.raises(ModuleNotFoundError):  # not an extra of ours: a bug, with its traceback
        cli.run(main, [])

    def main_bug(argv):
        raise RuntimeError("a TensorFlow bug")

    with pytest.raises(RuntimeError, match="a TensorFlow bug"):  # not a user error: no one-liner
        cli.run(main_bug, [])


@pytest.mark.slow
def test_a_run_stopped_by_bad_data_takes_the_fix_its_error_suggests(ws, tmp_path, capsys):
    run = ["--dataset", "folder", "--data_dir", str(ws / "folder_bad_label"), "--dataset_option", "num_classes=3",
           "--run_dir", str(tmp_path / "run"), "--height", "32", "--width", "32", "--batch_size", "2",
           "--encoder_epochs", "0", "--decoder_epochs", "1", "--verbose", "0"]
    assert _exit_code(lambda: cli.run(TOOLS["train"].main, run)) == 2
    assert "--dataset_option invalid_labels=ignore" in capsys.readouterr().err
    assert (tmp_path / "run" / "config.json").exists()  # written, but nothing was trained
    # (and trains from a disk cache: the decoded split is over a zero budget)
    fixed = run + ["--dataset_option", "invalid_labels=ignore", "--cache_budget_mb", "0"]
    assert _exit_code(lambda: cli.run(TOOLS["train"].main, fixed)) == 0
    assert (tmp_path / "run" / "best.keras").exists()
    assert any(p.name.startswith("folder_train_") for p in (tmp_path / "run" / "cache").iterdir())
