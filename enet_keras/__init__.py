"""enet_keras: ENet (Paszke et al. 2016) for real-time semantic segmentation in Keras 3."""

from enet_keras import _tf_logs

_tf_logs.import_tensorflow()  # before Keras loads it: honours TF_CPP_MIN_LOG_LEVEL from the first line

from enet_keras.layers import ChannelPadding, LeakyPReLU, MaximumPReLU, MaxPoolingWithArgmax2D, MaxUnpooling2D
from enet_keras.losses import WeightedSparseCategoricalCrossentropy
from enet_keras.metrics import PixelAccuracy, mean_iou
from enet_keras.model import ENet, load_model, transfer_weights

__version__ = "0.1.0"

# Importing the package registers the layers, loss and metric that trained `.keras` files refer to,
# and nothing that reads data, trains or converts (those are imported when used).
__all__ = [
    "ENet", "load_model", "transfer_weights", "MaxPoolingWithArgmax2D", "MaxUnpooling2D", "ChannelPadding",
    "MaximumPReLU", "LeakyPReLU", "WeightedSparseCategoricalCrossentropy", "PixelAccuracy", "mean_iou",
]
