from pathlib import Path

import numpy as np
import pytest

from enet_keras import ENet, data
from enet_keras.evaluation import confusion_matrix, segmentation_metrics
from enet_keras.pretrained import CAMVID_CLASSES, CAMVID_PALETTE

CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"


@pytest.fixture(scope="module", params=["prelu", "prelu_layer"])
def activation(request):
    return request.param


@pytest.fixture(scope="module")
def model(activation):
    return ENet(num_classes=11, activation=activation, weights="camvid")


def test_shipped_weights_load_and_are_trained(model):
    random = ENet(num_classes=11)
    images = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3)).astype("float32")
    assert not np.allclose(model(images, training=False), random(images, training=False))
    assert len(CAMVID_CLASSES) == len(CAMVID_PALETTE) == 11


@pytest.mark.skipif(not CAMVID.exists(), reason=f"CamVid not found at {CAMVID}")
def test_shipped_weights_segment_camvid_val(model):
    source = data.get_source("camvid", "val", str(CAMVID))
    confusion = np.zeros((11, 11), np.int64)
    for image, label in source.dataset().take(10):
        logits = model(np.asarray(image, "float32")[None], training=False)
        confusion += confusion_matrix(np.asarray(label)[None], np.argmax(logits, -1), 11, ignore_label=11)
    metrics = segmentation_metrics(confusion)
    # Far above chance (1/11 of pixels, mIoU ~0.05): the weights segment real street scenes.
    assert metrics["pixel_accuracy"] > 0.7 and metrics["mean_iou"] > 0.3, metrics


# Val mIoU of the shipped weights as the docs give them (README table; docs/int8.md "Per-layer
# slopes"): Keras, and int8 calibrated as tools/export.py does (100 training images). The int8
# figure is checked for the default weights only: a 360x480 int8 export takes 2 minutes here.
DOCUMENTED_VAL_MIOU = {"prelu": {"keras": 66.18, "int8": 65.86}, "prelu_layer": {"keras": 66.28}}


@pytest.mark.slow
@pytest.mark.skipif(not CAMVID.exists(), reason=f"CamVid not found at {CAMVID}")
def test_shipped_weights_score_the_documented_val_miou(activation, model, tmp_path):
    from enet_keras import export, runtimes
    from enet_keras.evaluation import evaluate

    expected = DOCUMENTED_VAL_MIOU[activation]
    val = data.get_source("camvid", "val", str(CAMVID))
    scores = {"keras": 100 * evaluate(runtimes.KerasPredictor(model), val, verbose=0)["mean_iou"]}
    if "int8" in expected:
        calibration = data.calibration_images(data.get_source("camvid", "train", str(CAMVID)), 360, 480, 100)
        export.export_all(model, tmp_path, ["tflite_int8"], 360, 480, calibration_images=calibration,
                          class_names=list(CAMVID_CLASSES), verbose=0)
        scores["int8"] = 100 * evaluate(str(tmp_path / "enet_int8.tflite"), val, verbose=0)["mean_iou"]
    print(f"{activation} val mIoU: {scores}; documented {expected}")
    assert all(abs(scores[key] - expected[key]) <= 0.3 for key in expected), (scores, expected)
