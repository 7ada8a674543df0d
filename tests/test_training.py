import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import keras

from enet_keras.training import WeightedSparseCategoricalCrossentropy, PixelAccuracy, mean_iou
from enet_keras.training.callbacks import read_history

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import train as train_tool  # noqa: E402

TINY = ["--dataset", "synthetic", "--height", "64", "--width", "64", "--batch_size", "4",
        "--dataset_option", "num_examples=8", "--dataset_option", "height=64", "--dataset_option", "width=64",
        "--verbose", "0", "--no_jit_compile"]


def test_weighted_loss_by_hand():
    logits = np.log(np.array([[[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [1 / 3, 1 / 3, 1 / 3]]]], "float32"))
    labels = np.array([[[0, 1, 2, 255]]])
    weights = [1.0, 2.0, 4.0]
    loss = WeightedSparseCategoricalCrossentropy(weights, ignore_label=255)
    expected = -(1 * np.log(0.5) + 2 * np.log(0.8) + 4 * np.log(0.4)) / (1 + 2 + 4)
    np.testing.assert_allclose(float(loss(labels, logits)), expected, rtol=1e-5)


def test_ignored_pixels_do_not_count_and_all_ignored_is_zero():
    loss = WeightedSparseCategoricalCrossentropy(None, ignore_label=255, num_classes=3)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    labels = rng.integers(0, 3, size=(2, 4, 4))
    labels[:, :2] = 255
    other = logits.copy()
    other[:, :2] = 100 * rng.normal(size=other[:, :2].shape)  # anything under the ignored pixels
    assert float(loss(labels, logits)) == pytest.approx(float(loss(labels, other)), rel=1e-6)
    all_ignored = np.full((2, 4, 4), 255)
    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = loss(all_ignored, x)
    grad = tape.gradient(value, x).numpy()
    assert float(value) == 0.0 and np.isfinite(grad).all() and not grad.any()


def test_metrics_skip_the_ignore_label():
    labels = np.array([[0, 1, 255, 255]])
    logits = np.eye(3, dtype="float32")[[0, 0, 1, 2]][None]
    accuracy = PixelAccuracy(ignore_label=255)
    accuracy.update_state(labels, logits)
    assert float(accuracy.result()) == pytest.approx(0.5)
    iou = mean_iou(3, 255)
    iou.update_state(labels, logits)
    # class 0: TP 1, FP 1 -> 1/2; class 1: TP 0, FN 1 -> 0; class 2 absent everywhere -> skipped
    assert float(iou.result()) == pytest.approx(0.25)


@pytest.mark.slow
def test_both_stages_one_epoch_each(tmp_path):
    run_dir = tmp_path / "run"
    summary = train_tool.main(TINY + ["--run_dir", str(run_dir), "--encoder_epochs", "1", "--decoder_epochs", "1"])
    for stage in ("encoder", "decoder"):
        folder = run_dir / stage
        for name in ("best.keras", "last.keras", "history.csv", "curves.png", "done.json"):
            assert (folder / name).exists(), folder / name
        assert len(read_history(folder / "history.csv")) == 1
        assert (folder / "logs").is_dir()
    assert (run_dir / "best.keras").exists() and summary["best_model"] == str(run_dir / "best.keras")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset"] == "synthetic" and config["batch_size"] == 4
    encoder = keras.saving.load_model(run_dir / "encoder" / "best.keras")
    assert encoder.output_shape[1:3] == (None, None) and encoder.get_layer("encoder_classifier")
    model = keras.saving.load_model(run_dir / "best.keras")
    assert model.predict(np.zeros((1, 64, 64, 3)), verbose=0).shape == (1, 64, 64, 8)
    # A fresh process that imports only enet_keras loads the trained file (loss and metrics included).
    load = subprocess.run([sys.executable, "-c", f"import keras, enet_keras; keras.saving.load_model({str(run_dir / 'best.keras')!r})"],
                          capture_output=True, text=True, timeout=300)
    assert load.returncode == 0, load.stderr[-2000:]
    # Rerunning a finished run skips both stages.
    again = train_tool.main(TINY + ["--run_dir", str(run_dir), "--encoder_epochs", "1", "--decoder_epochs", "1"])
    assert again["stages"]["decoder"]["epochs"] == 1


def test_decoder_stage_needs_encoder_weights(tmp_path):
    with pytest.raises(ValueError, match="encoder/best.keras does not exist"):
        train_tool.main(TINY + ["--run_dir", str(tmp_path), "--stage", "decoder"])


def test_num_classes_must_match_the_data(tmp_path):
    with pytest.raises(ValueError, match="--num_classes 19 disagrees with the data"):
        train_tool.main(TINY + ["--run_dir", str(tmp_path), "--num_classes", "19"])


def test_unknown_dataset_and_missing_data_dir(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_tool.main(["--dataset", "imagenet"])
    assert "invalid choice: 'imagenet'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--data_dir"):
        train_tool.main(["--dataset", "camvid", "--run_dir", str(tmp_path)])
    from enet_keras.training import TrainConfig, train
    with pytest.raises(ValueError, match="synthetic"):
        train(TrainConfig(dataset="imagenet", run_dir=str(tmp_path)))


def test_resume_refuses_another_configuration(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"batch_size": 2}))
    with pytest.raises(ValueError, match="batch_size differ"):
        train_tool.main(TINY + ["--run_dir", str(tmp_path)])


def _command(run_dir, *extra):
    return [sys.executable, str(ROOT / "tools" / "train.py"), *TINY, "--run_dir", str(run_dir), *extra]


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--stage", "encoder", "--encoder_epochs", "6", "--dataset_option", "num_examples=32"]
    history = run_dir / "encoder" / "history.csv"
    process = subprocess.Popen(_command(run_dir, *args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(read_history(history)) < 2:
        assert process.poll() is None, "training ended before it could be killed"
        time.sleep(0.2)
    time.sleep(0.5)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = read_history(history)
    assert 2 <= len(before) < 6
    rerun = subprocess.run(_command(run_dir, *args, "--verbose", "2"), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # Resumed at the first epoch whose backup was not written (the last recorded one, if the
    # kill fell between its record and its backup), not from scratch.
    resumed = int(re.search(r"Epoch (\d+)/6", rerun.stdout).group(1)) - 1
    assert resumed in (len(before) - 1, len(before)) and resumed > 0
    after = read_history(history)
    assert [int(r["epoch"]) for r in after] == list(range(6))
    assert after[:resumed] == before[:resumed]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_multiworker_workers_end_identical(tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    run_dir = tmp_path / "run"
    processes = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(
            _command(run_dir, "--stage", "encoder", "--encoder_epochs", "2", "--steps_per_epoch", "2",
                     "--strategy", "multiworker"),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    for p, out in zip(processes, outputs):
        assert p.returncode == 0, out[-3000:]
    chief = keras.saving.load_model(run_dir / "encoder" / "last.keras")
    worker = keras.saving.load_model(run_dir / "workers" / "worker_1" / "encoder" / "last.keras")
    assert len(chief.weights) == len(worker.weights)
    for a, b in zip(chief.weights, worker.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    assert len(read_history(run_dir / "encoder" / "history.csv")) == 2
