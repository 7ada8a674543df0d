"""Kills at every crash point of training and export (enet_keras.faults), then reruns: the run
and export folders must end whole and consistent, as if nothing had happened."""

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import pytest

from enet_keras import data, faults
from enet_keras.training.callbacks import read_history
from helpers import numpy_mean_iou, small_segmenter, tiny_camvid

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import train as train_tool  # noqa: E402

# The paper's two stages on a tiny CamVid folder (tests/helpers.py), fold 0006R0.
TINY = ["--dataset", "camvid", "--dataset_option", "holdout_drive=0006R0", "--height", "32", "--width", "32",
        "--batch_size", "2", "--verbose", "0", "--no_jit_compile", "--encoder_epochs", "2", "--decoder_epochs", "2"]

# In the order a run meets them; each rerun resumes and is killed at the next one. Every point
# once (each kill is a 30-40 s training process on 2 cores): the epoch points in the encoder stage,
# one in the decoder stage (`epoch_committed=0` after the encoder's end), the stage points at each
# stage's end.
TRAINING_POINTS = [
    "epoch_recorded=0", "epoch_backed_up=0", "epoch_committed=1", "stage_trained=encoder",
    "epoch_committed=0", "stage_done=decoder", "run_best_copied",
]


def _run(tool, args, fault):
    # The tools' own default log level, as a user gets it.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"} | {faults.ENV: fault}
    return subprocess.run([sys.executable, str(ROOT / "tools" / tool), *args], env=env,
                          capture_output=True, text=True, timeout=600)


def _hidden(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob(".*"))


def _val_mean_iou(model_path, camvid):
    """The mIoU of a saved model on the held-out frames, computed here with numpy: the encoder's
    1/8-size output against the label at the centre of each 8x8 cell."""
    model = keras.saving.load_model(model_path)
    source = data.get_source("camvid", "val", str(camvid), holdout_drive="0006R0")
    (images, labels), = data.make_pipeline(source, 2, None, training=False).as_numpy_iterator()
    logits = model.predict(images, verbose=0)
    if model.name == "enet_encoder":
        assert logits.shape[1:3] == (4, 4)
        labels = labels[:, 4::8, 4::8]
    return numpy_mean_iou(labels, logits.argmax(-1), 11, 11)


def test_training_killed_at_every_crash_point_ends_whole(tmp_path):
    assert {p.split("=")[0] for p in TRAINING_POINTS} == {p for p in faults.POINTS if not p.startswith("export")}
    run_dir, camvid = tmp_path / "run", tiny_camvid(tmp_path / "camvid")
    args = TINY + ["--data_dir", str(camvid), "--run_dir", str(run_dir)]
    emptied = False
    for point in TRAINING_POINTS:
        killed = _run("train.py", args, point)
        assert killed.returncode == faults.EXIT_STATUS, (point, killed.stderr[-3000:])
        assert ("training_metadata.json was unreadable" in killed.stdout) == emptied, killed.stdout[-2000:]
        for model in run_dir.rglob("*.keras"):  # what a kill leaves in place is whole
            assert zipfile.is_zipfile(model), (point, model)
        if point == "epoch_committed=0":  # killed inside the decoder stage, after its first epoch
            assert [int(r["epoch"]) for r in read_history(run_dir / "decoder" / "history.csv")] == [0]
        # Keras writes its backup's metadata in place: a kill or a full disk then can leave it
        # empty. The next run must still resume (from the previous epoch's copy).
        emptied = point == "epoch_committed=1"
        if emptied:
            (run_dir / "encoder" / "backup" / "training_metadata.json").write_text("")

    summary = train_tool.main(args)  # the last rerun, no fault
    for stage in ("encoder", "decoder"):
        folder = run_dir / stage
        rows = read_history(folder / "history.csv")
        assert [int(r["epoch"]) for r in rows] == [0, 1], (stage, rows)
        assert summary["stages"][stage]["epochs"] == 2
        for name in ("curves.png", "done.json", "logs"):
            assert (folder / name).exists(), folder / name
        best = max(r["val_mean_iou"] for r in rows)
        assert summary["stages"][stage]["best_val_mean_iou"] == pytest.approx(best)
        # best.keras is the best epoch's model, last.keras the last epoch's.
        assert _val_mean_iou(folder / "best.keras", camvid) == pytest.approx(best, abs=1e-4)
        assert _val_mean_iou(folder / "last.keras", camvid) == pytest.approx(rows[-1]["val_mean_iou"], abs=1e-4)
    assert _hidden(run_dir) == [], "temporary or pending files left behind"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset"] == "camvid" and config["batch_size"] == 2 and summary["best_model"] == str(run_dir / "best.keras")
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["stages"]["decoder"]["epochs"] == 2 and saved["best_model"] == str(run_dir / "best.keras")
    assert (run_dir / "best.keras").read_bytes() == (run_dir / "decoder" / "best.keras").read_bytes()
    # A fresh process that imports only enet_keras loads the trained file (loss and metrics included).
    load = subprocess.run(
        [sys.executable, "-c", f"import keras, enet_keras; keras.saving.load_model({str(run_dir / 'best.keras')!r})"],
        capture_output=True, text=True, timeout=300)
    assert load.returncode == 0, load.stderr[-2000:]
    encoder = keras.saving.load_model(run_dir / "encoder" / "best.keras")
    assert encoder.output_shape[1:3] == (None, None) and encoder.get_layer("encoder_classifier")
    # Rerunning a finished run trains nothing more.
    again = train_tool.main(args)
    assert again["stages"]["decoder"]["epochs"] == 2 and read_history(run_dir / "decoder" / "history.csv") == rows


def _input_shapes(folder):
    from ai_edge_litert.interpreter import Interpreter

    shapes = {}
    for path in sorted(Path(folder).glob("*.tflite")):
        (details,) = Interpreter(model_path=str(path)).get_input_details()
        shapes[path.name] = tuple(int(d) for d in details["shape"][1:3])
    return shapes


def test_export_killed_at_every_crash_point_leaves_one_whole_export(tmp_path):
    model_path = tmp_path / "enet.keras"
    small_segmenter().save(model_path)  # the folder's handling, not ENet, is under test
    out = tmp_path / "export"

    def export(size, fault=""):
        return _run("export.py", ["--model", str(model_path), "--output_dir", str(out),
                                  "--formats", "tflite_fp32,tflite_fp16", "--height", str(size),
                                  "--width", str(size)], fault)

    assert export(32).returncode == 0
    first = (out / "export_summary.json").read_text()
    assert _input_shapes(out) == {"enet_fp32.tflite": (32, 32), "enet_fp16.tflite": (32, 32)}
    for point in ("export_written=tflite_fp32", "export_before_swap"):
        killed = export(64, point)
        assert killed.returncode == faults.EXIT_STATUS, killed.stderr[-3000:]
        # The folder is still the first export, whole; the killed one is a hidden sibling.
        assert (out / "export_summary.json").read_text() == first
        assert _input_shapes(out) == {"enet_fp32.tflite": (32, 32), "enet_fp16.tflite": (32, 32)}
        # (and its lock file, unlocked since the kill)
        hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != ".export.lock"]
        assert [h.startswith(".export.") for h in hidden] == [True], hidden
    done = export(64)
    assert done.returncode == 0, done.stderr[-3000:]
    # Quiet by default: none of TensorFlow's C++ log lines (I0000 ..., E0000 ... cuInit).
    assert not re.search(r"^[IWEF]\d{4} |absl::InitializeLog", done.stderr, re.M), done.stderr[-3000:]
    summary = json.loads((out / "export_summary.json").read_text())
    config = json.loads((out / "export_config.json").read_text())
    assert summary["height"] == config["height"] == 64
    assert _input_shapes(out) == {"enet_fp32.tflite": (64, 64), "enet_fp16.tflite": (64, 64)}
    assert sorted(Path(f["path"]).name for f in summary["files"]) == ["enet_fp16.tflite", "enet_fp32.tflite"]
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "stale temporary export left"
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_export_refuses_to_replace_a_folder_that_is_not_an_export(tmp_path):
    model_path = tmp_path / "enet.keras"
    small_segmenter().save(model_path)  # the folder's handling, not ENet, is under test
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    result = _run("export.py", ["--model", str(model_path), "--output_dir", str(precious),
                                "--formats", "tflite_fp32", "--height", "32", "--width", "32"], "")
    assert result.returncode == 2 and "is not an export folder" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert sorted(p.name for p in precious.iterdir()) == ["notes.txt"]


def _hold_lock(folder):
    """Another process holding `folder`'s lock, as a training or export in progress does."""
    code = ("import sys, time\nfrom enet_keras.files import exclusive\n"
            "with exclusive(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_writer_of_a_run_or_export_folder_is_refused_in_one_line(tmp_path):
    model_path = tmp_path / "enet.keras"
    small_segmenter().save(model_path)
    run_dir, out = tmp_path / "run", tmp_path / "export"
    stale = tmp_path / ".export.1234.tmp"  # looks like a killed export's temporary folder
    stale.mkdir()
    holders = [_hold_lock(run_dir), _hold_lock(out)]
    try:
        trained = _run("train.py", TINY + ["--data_dir", str(tiny_camvid(tmp_path / "camvid")), "--run_dir",
                                           str(run_dir)], "")
        exported = _run("export.py", ["--model", str(model_path), "--output_dir", str(out), "--formats",
                                      "tflite_fp32", "--height", "32", "--width", "32"], "")
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    for result, folder, holder in ((trained, run_dir, holders[0]), (exported, out, holders[1])):
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr == f"error: {result.args[result.args.index(str(folder)) - 1]} {folder} is in use by " \
                                f"process {holder.pid} (started {result.stderr.split('(started ')[1]}", result.stderr
        assert not folder.exists()
    assert stale.is_dir(), "a temporary folder whose lock was held was removed"
    # Once the holder is gone (killed: its lock file stays, unlocked), the same export runs.
    again = _run("export.py", ["--model", str(model_path), "--output_dir", str(out), "--formats", "tflite_fp32",
                               "--height", "32", "--width", "32"], "")
    assert again.returncode == 0 and (out / "enet_fp32.tflite").exists() and not stale.exists(), again.stderr[-2000:]
