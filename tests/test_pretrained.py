from pathlib import Path

import numpy as np
import pytest

from enet_keras import ENet, data
from enet_keras.evaluation import confusion_matrix, segmentation_metrics
from enet_keras.pretrained import CAMVID_CLASSES, CAMVID_PALETTE

CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"


@pytest.fixture(scope="module", params=["prelu", "prelu_layer"])
def model(request):
    return ENet(num_classes=11, activation=request.param, weights="camvid")


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
