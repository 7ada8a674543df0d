"""SavedModel export for TensorFlow Serving: uint8 images in, class ids and probabilities out.

The export is one `tf.function` (`serving_function`) wrapping the Keras model, saved with
`tf.saved_model.save` on a `tf.Module` that holds the function and the variables it captures.
We chose it over Keras 3's `keras.export.ExportArchive` because the signature has its own pre-
and post-processing (uint8 input, padding to a multiple of 8, cropping, softmax and argmax),
and because `ExportArchive` saved every weight twice (3.1 MB of variables for ENet instead of
1.6 MB). The Keras model itself stays out of the saved object graph: with it in, the
session-based loader that `saved_model_cli run` and TF-Serving's C++ server use could not find
the variables. The layout is
TF-Serving's versioned one:

    <base_dir>/<model_name>/<version>/saved_model.pb
                                     /variables/...
                                     /assets.extra/tf_serving_warmup_requests

Signature `serving_default`:
    inputs:  `images`: uint8 [batch, height, width, 3], raw RGB pixels, any height and width.
    outputs: `class_ids`: uint8 [batch, height, width] (int32 beyond 256 classes), the argmax;
             `probabilities`: float32 [batch, height, width, num_classes], the softmax.

ENet needs sizes that are multiples of 8: the signature pads the images with zeros at the
bottom and right up to the next multiple of 8, runs the model, and crops both outputs back
to the input size, so any size works (pixels near the padded border see black beyond it).
"""

import os

import numpy as np
import tensorflow as tf

from enet_keras.files import atomic_directory, check_file_name
from enet_keras.rewrite import dynamic_size_model

SIGNATURE_KEY = "serving_default"
INPUT_KEY = "images"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
DEFAULT_WARMUP_SIZE = (360, 480)


def serving_function(model):
    """The `serving_default` function of the export: a `tf.function` over uint8 images.

    It pads the images with zeros to a multiple of 8 (bottom and right), runs the model, crops
    back to the input size and returns `class_ids` and `probabilities` (see the module
    docstring).

    Args:
        model: `keras.Model` mapping float (B, H, W, 3) images in [0, 255] to (B, H, W, C)
            logits, with H and W multiples of 8 (such as `ENet(num_classes)`). A model built
            for one fixed size is rebuilt with a dynamic input (same weights).

    Returns:
        A `tf.function` with input signature `images: uint8 [None, None, None, 3]`.

    Example:

    >>> from enet_keras import ENet
    >>> serve = serving_function(ENet(num_classes=3))
    >>> outputs = serve(tf.zeros((1, 60, 70, 3), tf.uint8))
    >>> tuple(outputs["class_ids"].shape), tuple(outputs["probabilities"].shape)
    ((1, 60, 70), (1, 60, 70, 3))
    """
    model = dynamic_size_model(model)
    class_dtype = tf.uint8 if int(model.output_shape[-1]) <= 256 else tf.int32

    def serve(images):
        shape = tf.shape(images)
        height, width = shape[1], shape[2]
        padded = tf.pad(
            tf.cast(images, tf.float32), [[0, 0], [0, (-height) % 8], [0, (-width) % 8], [0, 0]]
        )
        logits = tf.cast(model(padded, training=False), tf.float32)[:, :height, :width, :]
        return {
            "class_ids": tf.cast(tf.argmax(logits, axis=-1, output_type=tf.int32), class_dtype),
            "probabilities": tf.nn.softmax(logits, axis=-1),
        }

    signature = [tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_KEY)]
    return tf.function(serve, input_signature=signature, autograph=False)


def _serving_root(model):
    # The object saved holds the function and the tf.Variables it captures, not the Keras
    # model: with the Keras model in the object graph, TF1-style loaders (TF-Serving's C++
    # loader, `saved_model_cli run`) fail with "Could not find variable fullconv/bias".
    # (This is what keras.export.ExportArchive does too, but it also tracks the Keras
    # variables and saved every weight twice.)
    root = tf.Module(name="enet_serving")
    root.serve = serving_function(model)
    concrete = root.serve.get_concrete_function()
    root.captured_variables = list(concrete.variables)
    return root, concrete


def export_saved_model(model, base_dir, model_name="enet", version=1, warmup_images=None):
    """Writes `model` as a TF-Serving SavedModel in `<base_dir>/<model_name>/<version>/`.

    The version folder is written beside its final place and renamed in when complete (an
    existing version is replaced whole): TF-Serving, watching `<base_dir>/<model_name>`, only
    sees numeric folders, so it never loads a half-written version. See the module docstring
    for the signature.

    Args:
        model: `keras.Model`, e.g. `ENet(num_classes)` (trained), taking [0, 255] images.
        base_dir: str. TF-Serving's model base path (what `--model_base_path` points at, less
            the model name).
        model_name: str. The model's name in TF-Serving (`--model_name`). Defaults to `"enet"`.
        version: int. Version number (>= 1). Defaults to 1.
        warmup_images: None, or uint8 images (H, W, 3) or batches (N, H, W, 3): one warm-up
            request per image, written to `assets.extra/tf_serving_warmup_requests` so
            TF-Serving traces the model before the first real request. None writes three
            random images of the model's input size (360x480 if it is dynamic). Defaults to
            None.

    Returns:
        The path of the version folder written.

    Raises:
        ValueError: for a bad version, model name or warm-up image.

    Example:

    >>> from enet_keras import ENet
    >>> path = export_saved_model(ENet(num_classes=3), "/tmp/serving", version=1)
    >>> sorted(os.listdir(path))
    ['assets', 'assets.extra', 'fingerprint.pb', 'saved_model.pb', 'variables']
    """
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
        raise ValueError(f"version must be an integer >= 1 (TF-Serving reads numeric folders). Received: version={version!r}")
    check_file_name(model_name, "model_name")
    if warmup_images is None:
        warmup_images = _default_warmup_images(model)
    requests = warmup_requests(warmup_images, model_name)
    root, concrete = _serving_root(model)
    path = os.path.join(os.fspath(base_dir), model_name, str(int(version)))
    with atomic_directory(path, owned=is_saved_model, flag="SavedModel folder") as tmp:
        tf.saved_model.save(root, tmp, signatures={SIGNATURE_KEY: concrete})
        write_warmup_file(os.path.join(tmp, WARMUP_FILE), requests)
    return path


# What tf.saved_model.save and our warm-up file write into a SavedModel folder.
_SAVED_MODEL_ENTRIES = {"saved_model.pb", "fingerprint.pb", "variables", "assets", "assets.extra"}


def is_saved_model(path):
    """Whether folder `path` holds a SavedModel and nothing else (so a new one may replace it)."""
    entries = set(os.listdir(path))
    return "saved_model.pb" in entries and entries <= _SAVED_MODEL_ENTRIES


def _default_warmup_images(model):
    height, width = tuple(model.input_shape)[1:3]
    if height is None or width is None:
        height, width = DEFAULT_WARMUP_SIZE
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(3)]


def warmup_requests(images, model_name="enet"):
    """`PredictRequest` protos for TF-Serving's warm-up, one per image (batch of 1).

    Args:
        images: iterable of uint8 (H, W, 3) images or (N, H, W, 3) batches.
        model_name: str. The model's name in TF-Serving. Defaults to `"enet"`.

    Returns:
        A list of `tensorflow_serving.apis.predict_pb2.PredictRequest`.

    Raises:
        ValueError: for an image that is not uint8 with 3 channels, or no images.
    """
    from tensorflow_serving.apis import predict_pb2

    requests = []
    for index, image in enumerate(images):
        image = np.asarray(image)
        if image.ndim == 3:
            image = image[None]
        if image.ndim != 4 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(
                "warmup_images must be uint8 images of shape (H, W, 3) or (N, H, W, 3). "
                f"Received: image {index} of shape {image.shape} and dtype {image.dtype}"
            )
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = SIGNATURE_KEY
        request.inputs[INPUT_KEY].CopyFrom(tf.make_tensor_proto(image))
        requests.append(request)
    if not requests:
        raise ValueError("warmup_images is empty: give at least one image, or None for random ones")
    return requests


def write_warmup_file(path, requests):
    """Writes `PredictRequest`s as a TFRecord of `PredictionLog`s (TF-Serving's warm-up format).

    Args:
        path: str. Usually `<version folder>/assets.extra/tf_serving_warmup_requests`.
        requests: iterable of `PredictRequest`.
    """
    from tensorflow_serving.apis import prediction_log_pb2

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def read_warmup_file(path):
    """Reads a warm-up file back.

    Args:
        path: str. A `tf_serving_warmup_requests` file.

    Returns:
        A list of `PredictionLog` protos.
    """
    from tensorflow_serving.apis import prediction_log_pb2

    return [
        prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for record in tf.data.TFRecordDataset(os.fspath(path))
    ]


def saved_model_cli_command(version_dir):
    """The `saved_model_cli` command that shows the exported signature."""
    return f"saved_model_cli show --dir {version_dir} --tag_set serve --signature_def {SIGNATURE_KEY}"
