"""TensorRT: TF-TRT conversion of the serving SavedModel, where TensorFlow has TensorRT.

TensorFlow's pip wheels dropped TensorRT in 2.18, so on a desktop with TF 2.18+ `convert_tftrt`
raises an `ImportError` that says what to do instead: run it on a Jetson with NVIDIA's
TensorFlow build (JetPack), or under TF <= 2.17, or take the ONNX route
(`export_onnx` then `trtexec --onnx=enet.onnx --saveEngine=enet.engine --fp16`), which needs no
TensorRT in TensorFlow.
"""

import os

import numpy as np
import tensorflow as tf

from enet_keras import _internals
from enet_keras.data.calibration import take_calibration_images

from enet_keras.export.saved_model import is_saved_model
from enet_keras.files import atomic_directory

PRECISIONS = ("FP32", "FP16", "INT8")

def require_tensorrt():
    """Raises ImportError, saying what to do instead, unless this TensorFlow has TensorRT."""
    if not is_tensorrt_available():
        raise ImportError(NO_TENSORRT_MESSAGE.format(version=tf.__version__))


NO_TENSORRT_MESSAGE = (
    "TF-TRT needs a TensorFlow built with TensorRT, and this one (TensorFlow {version}) is not: "
    "TensorFlow's pip wheels ship without TensorRT from 2.18 on. Run the conversion on a Jetson "
    "with NVIDIA's TensorFlow build (JetPack), or under TensorFlow <= 2.17 with TensorRT "
    "installed, or use the ONNX route instead: export with `--formats onnx` and build an engine "
    "with `trtexec --onnx=enet.onnx --saveEngine=enet.engine --fp16`."
)


def is_tensorrt_available():
    """Whether this TensorFlow can run TF-TRT (built with TensorRT and the library loadable).

    Returns:
        bool.
    """
    if not tf.sysconfig.get_build_info().get("is_tensorrt_build", False):
        return False
    return _internals.tensorrt_enabled()


def convert_tftrt(
    saved_model_dir,
    output_dir,
    precision="FP16",
    calibration_images=None,
    build_shapes=None,
    num_calibration_images=100,
):
    """Converts the serving SavedModel (from `export_saved_model`) with TF-TRT.

    TensorRT engines replace the supported subgraphs; the `serving_default` signature (uint8
    `images` in, `class_ids` and `probabilities` out) is unchanged. Engines are built for each
    new input shape at run time, or ahead of time for `build_shapes` (then saved in the
    SavedModel, and only valid on the GPU that built them).

    Args:
        saved_model_dir: str. A SavedModel version folder, e.g. `export/serving/enet/1`.
        output_dir: str. Where to write the converted SavedModel (replaced whole, atomically).
        precision: str. `"FP32"`, `"FP16"` or `"INT8"`. Defaults to `"FP16"`.
        calibration_images: iterable of uint8 (H, W, 3) images from the training data; required
            for INT8 (TensorRT calibrates its ranges on them). Defaults to None.
        build_shapes: list of (height, width) or None. Input sizes to build engines for now.
            Defaults to None (build at the first request of each size).
        num_calibration_images: int. How many calibration images to use. Defaults to 100.

    Returns:
        The path of the converted SavedModel.

    Raises:
        ImportError: if this TensorFlow has no TensorRT (every TF >= 2.18 pip wheel).
        ValueError: for an unknown precision, INT8 without calibration images, or a folder
            that holds no SavedModel.

    Example (on a Jetson with NVIDIA's TensorFlow):

    >>> convert_tftrt("export/serving/enet/1", "export/tftrt_fp16", "FP16")  # doctest: +SKIP
    'export/tftrt_fp16'
    """
    precision = str(precision).upper()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}. Received: precision={precision!r}")
    if not os.path.isfile(os.path.join(os.fspath(saved_model_dir), "saved_model.pb")):
        raise ValueError(
            f"saved_model_dir must be a SavedModel folder (holding saved_model.pb), such as the "
            f"version folder written by export_saved_model. Received: {saved_model_dir}"
        )
    if precision == "INT8" and calibration_images is None:
        raise ValueError("INT8 TF-TRT needs calibration_images (uint8 images from the training data)")
    require_tensorrt()

    converter = tf.experimental.tensorrt.Converter(
        input_saved_model_dir=os.fspath(saved_model_dir),
        precision_mode=precision,
        maximum_cached_engines=max(1, len(build_shapes or ())),
    )
    if precision == "INT8":
        images = take_calibration_images(calibration_images, num_calibration_images, "calibration_images",
                                         dtype=np.uint8)
        converter.convert(calibration_input_fn=lambda: ((tf.constant(image[None]),) for image in images))
    else:
        converter.convert()
    if build_shapes:
        converter.build(
            input_fn=lambda: ((tf.zeros((1, int(h), int(w), 3), tf.uint8),) for h, w in build_shapes)
        )
    with atomic_directory(output_dir, owned=is_saved_model, flag="TF-TRT folder") as tmp:
        converter.save(tmp)
    return os.fspath(output_dir)
