"""ONNX export, for ONNX Runtime and for TensorRT through `trtexec --onnx`.

We convert with `tf2onnx.convert.from_keras`, which is also what Keras 3's
`model.export(path, format="onnx")` calls with the TensorFlow backend (both work with TF 2.21
and numpy 2 and give the same graph). Calling tf2onnx ourselves lets us name the input and
output (`images`, `logits`), keep the model in memory and write the file atomically; Keras'
export writes in place and names the output `Identity:0`.

The model takes float32 NHWC images of raw pixels in [0, 255] and returns float32 NHWC logits.
Our max-unpooling is built from elementwise ops and reshapes (`Equal`, `Mul`, `Concat`,
`Reshape`, `DepthToSpace`...), not ONNX `MaxUnpool`, so it converts and TensorRT parses it
(PyTorch's `max_unpool2d` has no ONNX export, so PyTorch-ENet cannot be exported).
"""

import os

import tensorflow as tf

from enet_keras.files import atomic_write_bytes

INPUT_NAME = "images"
OUTPUT_NAME = "logits"


def convert(model, height=None, width=None, opset=17, batch_size=None):
    """Converts a Keras ENet to an ONNX `ModelProto`.

    Args:
        model: `keras.Model` taking float (B, H, W, 3) images in [0, 255].
        height: int or None. Fixed input height (a multiple of 8), or None for any. Defaults
            to None.
        width: int or None. Fixed input width (a multiple of 8), or None for any. Defaults to
            None.
        opset: int. ONNX opset. Defaults to 17.
        batch_size: int or None. Fixed batch size, or None for any. TensorRT's `trtexec`
            needs no shape flags when every dimension is fixed. Defaults to None.

    Returns:
        An `onnx.ModelProto` with input `images` float32 [B, H, W, 3] and output `logits`
        float32 [B, H, W, num_classes].

    Raises:
        ValueError: if height or width is not a positive multiple of 8.

    Example:

    >>> from enet_keras import ENet
    >>> proto = convert(ENet(num_classes=3), 64, 64)
    >>> [i.name for i in proto.graph.input], [o.name for o in proto.graph.output]
    (['images'], ['logits'])
    """
    import tf2onnx

    from enet_keras.model import check_size

    for size, what in ((height, "height"), (width, "width")):
        if size is not None:
            check_size(size, f"{what} (or None for any)")
    spec = (tf.TensorSpec((batch_size, height, width, 3), tf.float32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    _rename_output(proto, OUTPUT_NAME)
    return proto


def _rename_output(proto, name):
    (output,) = proto.graph.output
    old = output.name
    for node in proto.graph.node:
        for i, value in enumerate(node.output):
            if value == old:
                node.output[i] = name
        for i, value in enumerate(node.input):
            if value == old:
                node.input[i] = name
    output.name = name


def export_onnx(model, path, height=None, width=None, opset=17, batch_size=None):
    """Converts with `convert` and writes the `.onnx` file atomically.

    Args:
        model: `keras.Model`.
        path: str. Output `.onnx` path.
        height, width, opset, batch_size: as in `convert`.

    Returns:
        The path written.

    Example:

    >>> from enet_keras import ENet
    >>> export_onnx(ENet(num_classes=3), "/tmp/enet.onnx", 64, 64, batch_size=1)
    '/tmp/enet.onnx'
    """
    proto = convert(model, height, width, opset, batch_size)
    atomic_write_bytes(path, proto.SerializeToString())
    return os.fspath(path)


def op_names(path_or_proto):
    """The sorted set of ONNX op types in a model.

    Args:
        path_or_proto: str path of an `.onnx` file, or an `onnx.ModelProto`.

    Returns:
        A sorted list such as `["Add", "Concat", "Conv", ...]`.
    """
    import onnx

    proto = onnx.load(os.fspath(path_or_proto)) if isinstance(path_or_proto, (str, os.PathLike)) else path_or_proto
    return sorted({node.op_type for node in proto.graph.node})
