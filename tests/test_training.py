import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import keras

from enet_keras.losses import LovaszSoftmax, WeightedSparseCategoricalCrossentropy
from enet_keras.metrics import PixelAccuracy, mean_iou
from enet_keras.training.callbacks import read_history

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import train as train_tool  # noqa: E402

TINY = ["--dataset", "synthetic", "--height", "64", "--width", "64", "--batch_size", "4",
        "--dataset_option", "num_examples=8", "--dataset_option", "height=64", "--dataset_option", "width=64",
        "--verbose", "0", "--no_jit_compile"]
SMALL = ["--height", "32", "--width", "32", "--dataset_option", "height=32", "--dataset_option", "width=32"]


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


def _hard_logits(predictions, num_classes):
    return np.where(np.eye(num_classes)[predictions] > 0, 30.0, -30.0).astype("float32")


def test_lovasz_softmax_is_one_minus_iou_on_hard_predictions():
    # On 0/1 probabilities the Lovász extension equals the Jaccard loss: the mean of 1 - IoU over
    # the classes present in the labels (class 4 is predicted but absent: not averaged).
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (2, 12, 16))
    labels[0, :3] = 255
    predictions = rng.integers(0, 5, (2, 12, 16))
    valid = labels != 255
    ious = [np.sum((labels == c) & (predictions == c) & valid) / np.sum(((labels == c) | (predictions == c)) & valid)
            for c in range(4)]
    loss = LovaszSoftmax(num_classes=5, ignore_label=255, num_pixels=None)
    assert float(loss(labels, _hard_logits(predictions, 5))) == pytest.approx(1 - np.mean(ious), rel=1e-5)
    # Whatever sits under ignored pixels changes nothing.
    other = predictions.copy()
    other[0, :3] = 0
    assert float(loss(labels, _hard_logits(other, 5))) == pytest.approx(1 - np.mean(ious), rel=1e-5)
    assert float(loss(labels, _hard_logits(np.where(valid, labels, 0), 5))) == pytest.approx(0.0, abs=1e-6)


def test_lovasz_softmax_sampled_estimates_the_whole_batch_and_round_trips():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, (2, 64, 64))
    logits = rng.normal(size=(2, 64, 64, 3)).astype("float32")
    exact = float(LovaszSoftmax(3, num_pixels=None)(labels, logits))
    sampled = LovaszSoftmax(3, num_pixels=4096, seed=0)
    assert float(sampled(labels, logits)) == pytest.approx(exact, rel=0.05)
    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = sampled(labels, x)
    assert np.count_nonzero(tape.gradient(value, x).numpy()) > 0
    again = LovaszSoftmax.from_config(sampled.get_config())
    assert (again.num_classes, again.num_pixels, again.seed) == (3, 4096, 0)


def test_best_val_mean_iou_skips_epochs_without_validation(tmp_path):
    from enet_keras.training.trainer import best_val_mean_iou

    # What --validation_freq 2 writes: the first epoch has no validation columns.
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_mean_iou\n0,1.0,\n1,0.9,0.25\n2,0.8,\n3,0.7,0.2\n")
    assert best_val_mean_iou(read_history(path)) == 0.25
    assert np.isnan(best_val_mean_iou(read_history(tmp_path / "missing.csv")))


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


def test_decoder_stage_needs_encoder_weights(tmp_path):
    with pytest.raises(ValueError, match="encoder/best.keras does not exist"):
        train_tool.main(TINY + ["--run_dir", str(tmp_path), "--stage", "decoder"])


@pytest.mark.parametrize("preset", ["synthetic", "camvid", "cityscapes"])
def test_preset_in_python_is_the_tool_s_run_field_for_field(preset):
    from enet_keras.training import TrainConfig, list_presets
    from enet_keras.training.presets import PRESETS

    assert list_presets() == tuple(PRESETS) and preset in list_presets()
    args = train_tool.build_parser().parse_args(["--dataset", preset, "--data_dir", "/data", "--verbose", "2"])
    tool = train_tool.config_from_args(args)
    python = TrainConfig.from_preset(preset, data_dir="/data", verbose=2)
    assert tool == python
    for key, value in PRESETS[preset]["config"].items():  # the preset's values, not the defaults
        assert getattr(python, key) == (dict(value) if key == "dataset_options" else value), key
    # A flag changes its field only; --preset names another recipe than --dataset's.
    args = train_tool.build_parser().parse_args(["--preset", preset, "--dataset", "folder", "--height", "64"])
    changed = train_tool.config_from_args(args)
    assert (changed.dataset, changed.height, changed.width) == ("folder", 64, python.width)
    assert changed.decoder_epochs == python.decoder_epochs and changed.scale_range == python.scale_range


def test_presets_refuse_unknown_names_and_fields():
    from enet_keras.training import TrainConfig

    with pytest.raises(ValueError, match="Unknown preset 'kitti'; valid presets: synthetic, camvid, cityscapes"):
        TrainConfig.from_preset("kitti")
    with pytest.raises(ValueError, match=r"Unknown TrainConfig field\(s\) \['epochs'\]"):
        TrainConfig.from_preset("camvid", epochs=3)
    config = TrainConfig.from_preset("synthetic", dataset_options={"num_examples": 4})
    assert config.dataset_options == {"height": 128, "width": 160, "num_examples": 4}
    # No preset (a dataset without one): TrainConfig's defaults, the paper's two stages.
    args = train_tool.build_parser().parse_args(["--dataset", "folder"])
    assert train_tool.config_from_args(args).encoder_epochs == TrainConfig().encoder_epochs == 100


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
    (tmp_path / "encoder").mkdir()  # an epoch was trained with that configuration
    (tmp_path / "encoder" / "history.csv").write_text("epoch,loss\n0,2.0\n")
    with pytest.raises(ValueError, match="batch_size differ"):
        train_tool.main(TINY + ["--run_dir", str(tmp_path)])


def _command(run_dir, *extra):
    return [sys.executable, str(ROOT / "tools" / "train.py"), *TINY, "--run_dir", str(run_dir), *extra]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workers(run_dir, ports, faults=("", "")):
    """Starts two workers of one multi-worker run on 127.0.0.1 and returns their outputs."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    processes = []
    for index, fault in enumerate(faults):
        env = dict(os.environ, ENET_KERAS_FAULT=fault,
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(
            _command(run_dir, *SMALL, "--encoder_epochs", "0", "--decoder_epochs", "3", "--steps_per_epoch", "2",
                     "--learning_rate", "0.01", "--strategy", "multiworker"),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    return [(p.communicate(timeout=600)[0], p.returncode) for p in processes]


@pytest.mark.slow
def test_two_workers_validate_keep_the_best_model_and_resume_after_a_kill(tmp_path):
    from enet_keras import data, evaluation

    run_dir = tmp_path / "run"
    ports = [_free_port(), _free_port()]
    # Worker 1 dies after epoch 2's history row, before its backup: the chief has backed the
    # epoch up but must not put its models in place, and both must train it again.
    killed = _workers(run_dir, ports, faults=("", "epoch_recorded=1"))
    assert killed[1][1] == 137 and killed[0][1] != 0, killed[0][0][-3000:]
    assert "A worker was lost. Start every worker again" in killed[0][0]
    chief_dir, worker_dir = run_dir / "decoder", run_dir / "workers" / "worker_1" / "decoder"
    assert [int(r["epoch"]) for r in read_history(chief_dir / "history.csv")] == [0, 1]

    resumed = _workers(run_dir, ports)
    for out, code in resumed:
        assert code == 0, out[-3000:]
    assert "epoch 2 is trained again" in resumed[0][0]
    chief_rows, worker_rows = read_history(chief_dir / "history.csv"), read_history(worker_dir / "history.csv")
    assert [int(r["epoch"]) for r in chief_rows] == [0, 1, 2]
    assert {"loss", "val_loss", "mean_iou", "val_mean_iou", "pixel_accuracy", "val_pixel_accuracy"} <= set(chief_rows[0])
    for a, b in zip(chief_rows, worker_rows):  # every worker logs the global metrics
        assert a == pytest.approx(b, rel=1e-5)
    chief, worker = (keras.saving.load_model(d / "last.keras") for d in (chief_dir, worker_dir))
    for a, b in zip(chief.weights, worker.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)

    # The logged val mIoU is the whole val split's, and best.keras is the best epoch's model.
    val = data.get_source("synthetic", "val", num_examples=8, height=32, width=32)
    scores = {name: evaluation.evaluate(str(chief_dir / f"{name}.keras"), val, verbose=0)["mean_iou"]
              for name in ("best", "last")}
    assert scores["last"] == pytest.approx(chief_rows[-1]["val_mean_iou"], abs=2e-3)
    assert scores["best"] == pytest.approx(max(r["val_mean_iou"] for r in chief_rows), abs=2e-3)
    assert (run_dir / "best.keras").read_bytes() == (chief_dir / "best.keras").read_bytes()


def test_steps_come_from_the_source_count_not_the_pipeline(tmp_path):
    # A TFRecord pipeline does not know its length: QAT once took it from cardinality() and
    # decayed its learning rate to 0 within 4 steps.
    from enet_keras import data
    from enet_keras.training.trainer import poly_decay, training_steps

    synthetic = data.get_source("synthetic", "train", num_examples=6, height=16, width=16)
    data.write_tfrecords(synthetic, tmp_path, 2, progress=False)
    records = data.get_source("tfrecord", "train", data_dir=tmp_path)
    assert int(data.make_pipeline(records, 2, (16, 16)).cardinality()) < 0
    assert training_steps(records.num_examples, 2, drop_remainder=True) == 3
    assert training_steps(7, 2) == 4 and training_steps(7, 2, drop_remainder=True) == 3
    assert training_steps(7, 2, limit=2) == 2 and training_steps(None, 2, limit=5) == 5
    with pytest.raises(ValueError, match="--steps_per_epoch"):
        training_steps(None, 2)
    schedule = poly_decay(1.0, epochs=2, steps_per_epoch=3)
    assert float(schedule(3)) > 0.4 and float(schedule(6)) == 0.0


def test_mixed_precision_is_refused_with_multiworker():
    from enet_keras.training import TrainConfig

    with pytest.raises(ValueError, match="--mixed_precision does not work with --strategy multiworker"):
        TrainConfig(mixed_precision=True, strategy="multiworker").check()


def test_weight_decay_covers_every_parameter_as_coupled_l2():
    from enet_keras import ENet
    from enet_keras.training import add_weight_decay

    model = ENet(num_classes=3)
    add_weight_decay(model, 2e-4)
    assert len(model.losses) == len(model.trainable_weights)
    expected = 1e-4 * sum(float(np.sum(np.square(w))) for w in model.trainable_weights)  # wd/2 * |w|^2
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    slopes = [w for w in model.trainable_weights if "alpha" in w.path]
    assert slopes and all(np.allclose(np.asarray(s), 0.25) for s in slopes)  # PReLU starts as Torch's


def test_mirrored_strategy_and_mixed_precision_on_the_cpu(tmp_path):
    assert keras.mixed_precision.global_policy().name == "float32"
    # With the Lovász-Softmax loss too: its pixel sampling draws from a seed generator under the strategy.
    summary = train_tool.main(TINY + ["--run_dir", str(tmp_path), "--strategy", "mirrored", "--mixed_precision",
                                      "--loss", "lovasz", "--encoder_epochs", "0", "--decoder_epochs", "1", "--steps_per_epoch", "1",
                                      "--validation_steps", "1", *SMALL])
    assert list(summary["stages"]) == ["decoder"] and summary["stages"]["decoder"]["epochs"] == 1
    # mixed_float16 was set for the stage only: a notebook's policy is left as it was.
    assert keras.mixed_precision.global_policy().name == "float32"
    model = keras.saving.load_model(tmp_path / "best.keras")
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(l.synchronized for l in bns) and bns[0].dtype_policy.name == "mixed_float16"
    assert isinstance(model.loss, LovaszSoftmax)
