"""Exports of a trained ENet: TFLite, SavedModel for TF-Serving, ONNX and TensorRT."""

from enet_keras.export import onnx, saved_model, tensorrt, tflite
from enet_keras.export.onnx import export_onnx
from enet_keras.export.saved_model import export_saved_model, serving_function
from enet_keras.export.tensorrt import convert_tftrt, is_tensorrt_available
from enet_keras.export.formats import DEFAULT_FORMATS, FORMATS, ExportSettings, export_all
# Calibration sampling lives with the data; kept here for code written against 0.x.
from enet_keras.data.calibration import calibration_images

__all__ = [
    "export_all",
    "FORMATS",
    "DEFAULT_FORMATS",
    "ExportSettings",
    "tflite",
    "saved_model",
    "onnx",
    "tensorrt",
    "export_saved_model",
    "serving_function",
    "export_onnx",
    "convert_tftrt",
    "is_tensorrt_available",
    "calibration_images",
]
