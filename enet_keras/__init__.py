"""enet_keras: ENet (Paszke et al. 2016) for real-time semantic segmentation in Keras 3."""

from enet_keras import _tf_logs

_tf_logs.import_tensorflow()  # before Keras loads it: honours TF_CPP_MIN_LOG_LEVEL from the first line

from enet_keras.layers import ChannelPadding, MaximumPReLU, MaxPoolingWithArgmax2D, MaxUnpooling2D
from enet_keras.model import ENet, transfer_weights

# Registers the loss and metrics that trained `.keras` files refer to, so they load after
# `import enet_keras` alone.
from enet_keras.training import losses as _losses, metrics as _metrics  # noqa: F401

__version__ = "0.1.0"

__all__ = ["ENet", "transfer_weights", "MaxPoolingWithArgmax2D", "MaxUnpooling2D", "ChannelPadding", "MaximumPReLU"]
