"""Tests of enet_keras.evaluation, enet_keras.rewrite.fold_batch_norm and tools/evaluate.py."""

import json
import math
import os
import sys

import numpy as np
import keras
import pytest
from PIL import Image

from enet_keras import ENet, data, evaluation, rewrite, runtimes
from enet_keras.export import tflite
from helpers import assert_same_confusion_up_to_near_ties

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
import evaluate as evaluate_tool  # noqa: E402

SIZE = 64


def _randomize_batch_norm(model, seed=0):
    """Non-trivial BN statistics so folding is really tested."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.3, n),
                               rng.normal(0, 0.3, n), rng.uniform(0.5, 2.0, n)])


@pytest.fixture(scope="module")
def source():
    return data.get_source("synthetic", "val", num_examples=4, height=SIZE, width=SIZE)


@pytest.fixture(scope="module")
def models(tmp_path_factory, source):
    """One 8-class ENet (synthetic has 8 classes) saved as .keras and fp32 .tflite."""
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("models")
    model = ENet(source.num_classes, input_shape=(SIZE, SIZE, 3))
    _randomize_batch_norm(model)
    keras_path = str(folder / "enet.keras")
    model.save(keras_path)
    tflite_path = tflite.export(model, str(folder / "enet.tflite"), SIZE, SIZE)
    return {"model": model, "keras": keras_path, "tflite": tflite_path, "folder": folder}


# ---------------------------------------------------------------------------------------------
# Metrics on hand-computable cases.


def test_confusion_matrix_counts_and_ignores():
    labels = np.array([[0, 0, 1, 1], [2, 255, 255, 1]])
    predictions = np.array([[0, 1, 1, 1], [0, 2, 0, 1]])
    confusion = evaluation.confusion_matrix(labels, predictions, 4, ignore_label=255)
    expected = np.zeros((4, 4), int)
    expected[0, 0], expected[0, 1], expected[1, 1], expected[2, 0] = 1, 1, 3, 1
    np.testing.assert_array_equal(confusion, expected)
    assert confusion.sum() == 6  # the two ignored pixels count nowhere


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match="same shape"):
        evaluation.confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 3)
    with pytest.raises(ValueError, match=r"labels must be class ids in \[0, 3\)"):
        evaluation.confusion_matrix(np.array([0, 7]), np.array([0, 1]), 3, ignore_label=255)
    with pytest.raises(ValueError, match="predictions"):
        evaluation.confusion_matrix(np.array([0, 1]), np.array([0, 3]), 3)


def test_segmentation_metrics_by_hand():
    # Rows are labels, columns predictions.
    # Class 0: TP 2, FN 1 (predicted 4), FP 1 (a class-1 pixel) -> IoU 2/4, recall 2/3.
    # Class 1: TP 1, FN 1, FP 1 (a class-2 pixel) -> IoU 1/3, recall 1/2.
    # Class 2: TP 0, FN 1 -> IoU 0, recall 0.
    # Class 3: absent from labels and predictions -> IoU and recall NaN, left out of the means.
    # Class 4: predicted once, never a label -> IoU 0 (counts in mIoU), recall NaN.
    confusion = np.array([
        [2, 0, 0, 0, 1],
        [1, 1, 0, 0, 0],
        [0, 1, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ])
    m = evaluation.segmentation_metrics(confusion)
    iou = m["per_class_iou"]
    assert iou[0] == pytest.approx(0.5)
    assert iou[1] == pytest.approx(1 / 3)
    assert iou[2] == 0.0
    assert math.isnan(iou[3])
    assert iou[4] == 0.0
    assert m["mean_iou"] == pytest.approx((0.5 + 1 / 3 + 0 + 0) / 4)
    assert m["pixel_accuracy"] == pytest.approx(3 / 6)
    recall = m["per_class_accuracy"]
    assert recall[:3] == pytest.approx([2 / 3, 1 / 2, 0.0])
    assert math.isnan(recall[3]) and math.isnan(recall[4])
    assert m["class_average_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert m["num_pixels"] == 6


def test_chance_is_the_miou_of_a_uniform_guess():
    confusion = np.array([[50, 3, 0], [10, 20, 0], [0, 0, 0]])
    # A uniform guess spreads each class's labelled pixels evenly over the three predictions.
    guess = np.outer(confusion.sum(axis=1), np.full(3, 1 / 3))
    expected = evaluation.segmentation_metrics(guess)["mean_iou"]
    assert evaluation.segmentation_metrics(confusion)["chance_mean_iou"] == pytest.approx(expected)
    assert 0 < expected < 1 / 3


def test_segmentation_metrics_perfect_and_empty():
    m = evaluation.segmentation_metrics(np.diag([5, 0, 3]))
    assert m["mean_iou"] == 1.0 and m["pixel_accuracy"] == 1.0 and m["class_average_accuracy"] == 1.0
    assert math.isnan(m["per_class_iou"][1])
    empty = evaluation.segmentation_metrics(np.zeros((2, 2)))
    assert math.isnan(empty["mean_iou"]) and math.isnan(empty["pixel_accuracy"])
    with pytest.raises(ValueError, match="square"):
        evaluation.segmentation_metrics(np.zeros((2, 3)))


# ---------------------------------------------------------------------------------------------
# Batch-norm folding.


def test_fold_batch_norm_equal_outputs():
    keras.utils.set_random_seed(1)
    model = ENet(3)
    _randomize_batch_norm(model, seed=1)
    folded = rewrite.fold_batch_norm(model)
    bns = [l.name for l in folded.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns == ["initial_bn"]  # the one BN after a Concatenate stays (see the module docstring)
    assert not any(isinstance(l, keras.layers.SpatialDropout2D) for l in folded.layers)
    assert [l.name for l in folded.layers] == [l.name for l in model.layers]
    images = np.random.default_rng(0).uniform(0, 255, (2, SIZE, 48, 3)).astype("float32")
    expected = np.asarray(model(images, training=False))
    actual = np.asarray(folded(images, training=False))
    assert np.abs(actual - expected).max() < 1e-4
    # The original model is untouched.
    assert any(l.name == "bottleneck1_1_expand_bn" and isinstance(l, keras.layers.BatchNormalization)
               for l in model.layers)


# ---------------------------------------------------------------------------------------------
# Evaluation across runtimes, through the tool.


def test_evaluate_keras_and_tflite_identical(models, source, tmp_path, capsys):
    out = tmp_path / "keras_eval.json"
    keras_results = evaluate_tool.main([
        "--model", models["keras"], "--dataset", "synthetic", "--dataset_option", "num_examples=4",
        "--dataset_option", "height=64", "--dataset_option", "width=64", "--batch_size", "2",
        "--examples", "2", "--output", str(out),
    ])
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "class-average accuracy" in printed and "sky" in printed
    written = json.loads(out.read_text())
    assert written["mean_iou"] == pytest.approx(keras_results["mean_iou"])
    assert os.path.getsize(tmp_path / "keras_eval_confusion.png") > 0
    with Image.open(tmp_path / "keras_eval_examples.png") as panel:  # 2 rows of input | truth | prediction
        assert panel.size[0] == 3 * 64 and panel.size[1] > 2 * 64
    assert "examples" not in written
    confusion = np.array(written["confusion_matrix"])
    assert confusion.shape == (8, 8)
    # The synthetic labels hold ignore pixels; they are not counted.
    labels = np.concatenate([np.asarray(l).ravel() for _, l in source.dataset()])
    assert confusion.sum() == np.sum(labels != source.ignore_label) < labels.size

    tflite_results = evaluation.evaluate(models["tflite"], source, batch_size=2, verbose=0)
    assert_same_confusion_up_to_near_ties(tflite_results["confusion_matrix"], keras_results["confusion_matrix"],
                                          models["model"], source)

    # Agreement with a reference: identical predictions agree everywhere; an untrained model
    # with other weights does not.
    compared = evaluation.evaluate(models["tflite"], source, verbose=0, reference=models["keras"])
    # (up to argmax near-ties between TFLite's and Keras' kernels)
    assert compared["agreement"] >= 0.999 and compared["reference"] == models["keras"]
    assert "agreement with" in evaluation.format_results(compared)
    other = evaluation.evaluate(models["tflite"], source, verbose=0, reference=runtimes.KerasPredictor(ENet(8)))
    assert other["agreement"] < 1.0


def test_evaluate_default_output_next_to_model(models):
    path = evaluate_tool.default_output(models["keras"], "synthetic", "val")
    assert path == os.path.splitext(models["keras"])[0] + "_synthetic_val_eval.json"


@pytest.mark.slow
def test_evaluate_saved_model_identical(models, source):
    from enet_keras.export import saved_model

    base = models["folder"] / "serving"
    saved_model.export_saved_model(models["model"], str(base), warmup_images=np.zeros((1, SIZE, SIZE, 3), np.uint8))
    keras_results = evaluation.evaluate(models["keras"], source, batch_size=2, verbose=0)
    for path in (base / "enet" / "1", base / "enet"):  # the version folder or the folder of versions
        results = evaluation.evaluate(str(path), source, batch_size=2, verbose=0)
        assert results["runtime"] == "SavedModel"
        assert_same_confusion_up_to_near_ties(results["confusion_matrix"], keras_results["confusion_matrix"],
                                              models["model"], source)


def test_predictor_pads_dynamic_sizes(models):
    predictor = runtimes.KerasPredictor(ENet(3))
    assert predictor.input_size is None and predictor.num_classes == 3
    assert predictor.predict(np.zeros((2, 30, 41, 3), np.uint8)).shape == (2, 30, 41)
    fixed = runtimes.load_predictor(models["tflite"])
    assert fixed.input_size == (SIZE, SIZE) and fixed.num_classes == 8
    with pytest.raises(ValueError, match=r"fixed input size \(64, 64\)"):
        fixed.predict(np.zeros((1, 32, 32, 3), np.uint8))


def test_evaluate_errors(tmp_path, source):
    missing = tmp_path / "nothing.keras"
    with pytest.raises(FileNotFoundError, match="nothing.keras"):
        evaluation.evaluate(str(missing), source, verbose=0)
    with pytest.raises(FileNotFoundError, match="nothing.keras"):
        evaluate_tool.main(["--model", str(missing), "--dataset", "synthetic", "--dataset_option", "num_examples=4"])
    wrong = tmp_path / "three.keras"
    ENet(3).save(wrong)
    with pytest.raises(ValueError, match=r"three.keras predicts 3 classes but the dataset 'synthetic' \(val\) has 8"):
        evaluation.evaluate(str(wrong), source, verbose=0)
    unknown = tmp_path / "model.pt"
    unknown.write_bytes(b"x")
    with pytest.raises(ValueError, match="model.pt"):
        runtimes.load_predictor(str(unknown))
    with pytest.raises(ValueError, match="batch_size"):
        evaluation.evaluate(str(wrong), source, batch_size=0)


def test_evaluate_a_folder_of_mixed_sizes(tmp_path):
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a": (30, 44), "b": (40, 56), "c": (16, 16)}.items():
        for folder, array in (("images", rng.integers(0, 256, (h, w, 3))), ("masks", rng.integers(0, 3, (h, w)))):
            (tmp_path / "val" / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array.astype(np.uint8)).save(tmp_path / "val" / folder / f"{name}.png")
    source = data.get_source("folder", "val", data_dir=tmp_path, num_classes=3)
    results = evaluation.evaluate(runtimes.KerasPredictor(ENet(3)), source, batch_size=2, verbose=0)
    assert results["num_images"] == 3 and results["num_pixels"] == 30 * 44 + 40 * 56 + 16 * 16


# ---------------------------------------------------------------------------------------------
# Logit adjustment (tools/adjust_logits.py).

import adjust_logits as adjust_tool  # noqa: E402

SYNTHETIC_64 = ["--dataset", "synthetic", "--dataset_option", "num_examples=4",
                "--dataset_option", "height=64", "--dataset_option", "width=64"]


def test_shift_logits_adds_the_offsets_to_every_pixel():
    model = ENet(3)
    offsets = [0.5, -1.25, 2.0]
    images = np.random.default_rng(0).uniform(0, 255, (1, 32, 48, 3)).astype("float32")
    shifted = rewrite.shift_logits(model, offsets)
    difference = np.asarray(shifted(images)) - np.asarray(model(images))
    np.testing.assert_allclose(difference, np.broadcast_to(offsets, difference.shape), atol=1e-4)
    assert [l.name for l in shifted.layers] == [l.name for l in model.layers]
    with pytest.raises(ValueError, match="one value per class"):
        rewrite.shift_logits(model, [0.0, 1.0])
    with pytest.raises(ValueError, match="'logits_clip', has no bias"):
        rewrite.shift_logits(rewrite.clip_logits(model, -5.0, 5.0), offsets)


def test_logit_offsets_take_the_weighting_back():
    weights = [1.0, 4.0, 16.0]
    offsets = evaluation.logit_offsets(weights, 0.5)
    # Half of log(w) taken back: the logit of a class 4x heavier drops by log(2) relative.
    np.testing.assert_allclose(np.diff(offsets), [-math.log(2), -math.log(2)], rtol=1e-6)
    assert offsets.sum() == pytest.approx(0, abs=1e-6)
    assert not evaluation.logit_offsets(weights, 0.0).any()
    with pytest.raises(ValueError, match="positive"):
        evaluation.logit_offsets([1.0, 0.0, 2.0], 0.5)


def test_adjust_logits_writes_the_model_it_scored(models, source, tmp_path, capsys):
    out = tmp_path / "adjusted.keras"
    # The class weights the trainer computes on the train split (synthetic: 4 images).
    weights = data.class_weights(data.get_source("synthetic", "train", num_examples=4, height=SIZE, width=SIZE))
    fit = adjust_tool.main(["--model", models["keras"], *SYNTHETIC_64, "--strength", "1.0", "--output", str(out)])
    assert "| 1.00 |" in capsys.readouterr().out
    assert fit["strengths"] == [0.0, 1.0]
    assert fit["best_strength"] == fit["strengths"][int(np.argmax([r["mean_iou"] for r in fit["results"]]))]
    report = json.loads((tmp_path / "adjusted_adjustment.json").read_text())
    assert report["strength"] == 1.0
    np.testing.assert_allclose(report["offsets"], evaluation.logit_offsets(weights, 1.0), rtol=1e-5)

    # Strength 0 scores the model as it is; the written model predicts what strength 1 scored.
    plain = evaluation.evaluate(runtimes.KerasPredictor(models["model"]), source, verbose=0)
    assert fit["results"][0]["confusion_matrix"] == plain["confusion_matrix"]
    adjusted = evaluation.evaluate(str(out), source, verbose=0)
    assert adjusted["confusion_matrix"] != plain["confusion_matrix"]
    assert_same_confusion_up_to_near_ties(adjusted["confusion_matrix"], fit["results"][1]["confusion_matrix"],
                                          rewrite.shift_logits(models["model"], report["offsets"]), source)


def test_adjust_logits_errors(models, tmp_path):
    bad = tmp_path / "weights.json"
    bad.write_text('{"pixels": [1, 2]}')
    with pytest.raises(ValueError, match="weights.json: not a class weights file"):
        adjust_tool.main(["--model", models["keras"], *SYNTHETIC_64, "--class_weights", str(bad),
                          "--output", str(tmp_path / "a.keras")])
    bad.write_text('{"weights": [1.0, 2.0]}')
    with pytest.raises(ValueError, match="predicts 8 classes.*2 class weights"):
        adjust_tool.main(["--model", models["keras"], *SYNTHETIC_64, "--class_weights", str(bad),
                          "--output", str(tmp_path / "a.keras")])
    with pytest.raises(SystemExit):
        adjust_tool.main(["--model", models["keras"], *SYNTHETIC_64, "--output", str(tmp_path / "a.h5")])
    assert not list(tmp_path.glob("*.keras"))
