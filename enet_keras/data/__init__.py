"""Datasets for ENet: sources, the training/evaluation pipeline, class weights, TFRecords."""

from enet_keras.data.calibration import calibration_images, take_calibration_images
from enet_keras.data.camvid import CAMVID_IGNORE_LABEL
from enet_keras.data.class_balance import class_weights
from enet_keras.data.cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from enet_keras.data.pipeline import CACHE_MODES, choose_cache, make_pipeline
from enet_keras.data.registry import SOURCE_NAMES, get_source
from enet_keras.data.source import Source
from enet_keras.data.synthetic import SYNTHETIC_CLASSES, SYNTHETIC_PALETTE, render_scene
from enet_keras.data.tfrecord import write_tfrecords

__all__ = [
    "Source", "get_source", "SOURCE_NAMES", "make_pipeline", "choose_cache", "CACHE_MODES", "class_weights", "write_tfrecords",
    "calibration_images",
    "take_calibration_images",
    "render_scene", "CAMVID_IGNORE_LABEL", "CITYSCAPES_CLASSES", "CITYSCAPES_PALETTE",
    "SYNTHETIC_CLASSES", "SYNTHETIC_PALETTE",
]
