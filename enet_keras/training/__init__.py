"""Training ENet: the two-stage recipe, its loss, metrics and run-directory callback."""

from enet_keras.training.callbacks import RunRecorder
from enet_keras.losses import WeightedSparseCategoricalCrossentropy
from enet_keras.metrics import PixelAccuracy, mean_iou
from enet_keras.training.presets import list_presets
from enet_keras.training.trainer import TrainConfig, add_weight_decay, train

__all__ = [
    "TrainConfig", "train", "list_presets", "add_weight_decay", "WeightedSparseCategoricalCrossentropy",
    "PixelAccuracy", "mean_iou", "RunRecorder",
]
