"""enet_keras: ENet (Paszke et al. 2016) for real-time semantic segmentation in Keras 3."""

from enet_keras.layers import ChannelPadding, MaximumPReLU, MaxPoolingWithArgmax2D, MaxUnpooling2D
from enet_keras.model import ENet, transfer_weights

__version__ = "0.1.0"

__all__ = ["ENet", "transfer_weights", "MaxPoolingWithArgmax2D", "MaxUnpooling2D", "ChannelPadding", "MaximumPReLU"]
