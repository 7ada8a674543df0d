"""Exports of a trained ENet: TFLite, SavedModel for TF-Serving, ONNX and TensorRT."""
