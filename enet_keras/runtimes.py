"""Runtimes: one `Predictor` interface over every form a trained ENet takes — a `.keras` model
(run by Keras, BN folded, optionally with XLA), a TF-Serving SavedModel, a `.tflite` file
(LiteRT) and a `.onnx` file (ONNX Runtime). Evaluation (`enet_keras.evaluation`), prediction
(`enet_keras.inference`, `tools/predict.py`) and the benchmark (`enet_keras.benchmark`) all run
models through here.
"""

import os

import numpy as np

from enet_keras import _tf_logs


class Predictor:
    """Base class: `predict(uint8 images (B, H, W, 3)) -> int32 class ids (B, H, W)`.

    Subclasses set `path`, `num_classes` and `input_size` ((height, width) for a model with a
    fixed input size, else None) and implement `_predict(images)` for images whose size the
    model accepts. Models of dynamic size get images padded with zeros at the bottom and
    right to a multiple of 8 (ENet downsamples by 8) and their class ids cropped back, like the
    SavedModel signature; fixed-size models need images of exactly their size.
    """

    path = None
    num_classes = None
    input_size = None
    runtime = None
    # Whether the constructor takes `num_threads` (TensorFlow's runtimes use the process's threads).
    takes_threads = False

    @staticmethod
    def versions(**options):
        """The runtime and its version, as the benchmark names it (`options`: the
        constructor's, from the format registry)."""
        raise NotImplementedError

    def predict(self, images):
        """Class ids for a batch of images.

        Args:
            images: uint8 array (B, H, W, 3) of raw RGB pixels (float arrays of integral values
                in [0, 255] are accepted and cast).

        Returns:
            int32 array (B, H, W).

        Raises:
            ValueError: for a wrong rank or channel count, or a size a fixed-size model does
                not take.
        """
        images = _check_images(images, self.path)
        height, width = images.shape[1:3]
        if self.input_size is not None:
            if (height, width) != tuple(self.input_size):
                raise ValueError(
                    f"{self.path}: this {self.runtime} model has a fixed input size "
                    f"{tuple(self.input_size)} (height, width). Received: images of shape {images.shape}; "
                    "resize, crop or pad them to the model's size (evaluate() centre-crops/pads the data)"
                )
            return np.asarray(self._predict(images)).astype(np.int32)
        return np.asarray(self._predict(_pad_to_multiple_of_8(images)))[:, :height, :width].astype(np.int32)

    def _predict(self, images):
        raise NotImplementedError

    def runner(self, images):
        """A function of no arguments that runs the model once on `images` (a batch of the
        size the model takes), leaving out the argmax and copies: what the benchmark times."""
        raise NotImplementedError


def _check_images(images, path):
    """`images` as uint8 (B, H, W, 3), or a `ValueError` that says what is wrong with them."""
    images = np.asarray(images)
    if images.dtype.kind not in "uif":
        raise ValueError(f"{path}: expected uint8 or float images of raw pixels in [0, 255]. "
                         f"Received: dtype {images.dtype}")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"{path}: expected images of shape (batch, height, width, 3) (RGB, channels last). "
            f"Received: shape {images.shape}"
        )
    if images.dtype != np.uint8:
        images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    return images


def _version(distribution):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "?"


def _pad_to_multiple_of_8(images):
    """`images` (B, H, W, C) zero-padded at the bottom and right to multiples of 8."""
    pad_h, pad_w = (-images.shape[1]) % 8, (-images.shape[2]) % 8
    return np.pad(images, [(0, 0), (0, pad_h), (0, pad_w), (0, 0)]) if pad_h or pad_w else images


def _fixed_size(shape):
    height, width = shape[1], shape[2]
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        return (height, width)
    return None


class KerasPredictor(Predictor):
    """A `.keras` ENet (logits out), run with Keras as its inference-optimised copy
    (`enet_keras.rewrite.fold_batch_norm`: batch normalization folded, no dropout).

    Args:
        path_or_model: str (a `.keras` file) or a `keras.Model`.
        jit_compile: bool. Compile with XLA. Defaults to False.
    """

    runtime = "Keras"

    @staticmethod
    def versions(jit_compile=False, **options):
        import keras
        import tensorflow as tf

        return f"TensorFlow {tf.__version__} / Keras {keras.__version__}" + (" XLA" if jit_compile else "")

    def __init__(self, path_or_model, jit_compile=False):
        import keras
        import tensorflow as tf

        from enet_keras.rewrite import fold_batch_norm
        from enet_keras.model import check_full_network, load_model

        if isinstance(path_or_model, keras.Model):
            model, self.path = path_or_model, path_or_model.name
        else:
            self.path = os.fspath(path_or_model)
            model = load_model(self.path)
        check_full_network(model, f"model {self.path}")
        self.model = fold_batch_norm(model)
        self.num_classes = int(self.model.output_shape[-1])
        self.input_size = _fixed_size(self.model.input_shape)
        if jit_compile:
            self.runtime = "Keras XLA"
        self._call = tf.function(lambda x: self.model(x, training=False), jit_compile=jit_compile,
                                 reduce_retracing=True)

    def _predict(self, images):
        return np.argmax(self._call(images.astype(np.float32)).numpy(), axis=-1)

    def logits(self, images):
        """float32 logits (B, H, W, classes) of uint8 images (B, H, W, 3) of the model's size,
        or of any size for a model of dynamic size (padded as `predict` pads, cropped back)."""
        images = _check_images(images, self.path)
        height, width = images.shape[1:3]
        if self.input_size is None:
            images = _pad_to_multiple_of_8(images)
        return self._call(images.astype(np.float32)).numpy()[:, :height, :width]

    def runner(self, images):
        import tensorflow as tf

        x = tf.constant(np.asarray(images, np.float32))
        return lambda: self._call(x).numpy()


class SavedModelPredictor(Predictor):
    """A SavedModel from `enet_keras.export.saved_model.export_saved_model`, through its
    `serving_default` signature (uint8 `images` -> `class_ids`).

    Args:
        path: str. The version folder (holding `saved_model.pb`), or the model folder above
            it (`<base>/<name>`), in which case the highest numeric version is used.
    """

    runtime = "SavedModel"

    @staticmethod
    def versions(**options):
        import tensorflow as tf

        return f"TensorFlow {tf.__version__} SavedModel"

    def __init__(self, path):
        import tensorflow as tf

        path = os.fspath(path)
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            versions = [d for d in os.listdir(path) if d.isdigit() and os.path.isdir(os.path.join(path, d))]
            if not versions:
                raise FileNotFoundError(
                    f"{path} is neither a SavedModel folder (no saved_model.pb) nor a TF-Serving model "
                    "folder with numeric version subfolders"
                )
            path = os.path.join(path, max(versions, key=int))
        self.path = path
        self._loaded = tf.saved_model.load(path)
        if "serving_default" not in self._loaded.signatures:
            raise ValueError(
                f"{path}: the SavedModel has no 'serving_default' signature. "
                f"Received signatures: {sorted(self._loaded.signatures)}"
            )
        self._signature = self._loaded.signatures["serving_default"]
        outputs = self._signature.structured_outputs
        if "class_ids" not in outputs or "probabilities" not in outputs:
            raise ValueError(
                f"{path}: serving_default must return 'class_ids' and 'probabilities' "
                f"(as export_saved_model writes). Received outputs: {sorted(outputs)}"
            )
        self.num_classes = int(outputs["probabilities"].shape[-1])
        self.input_size = None

    def predict(self, images):
        # The signature pads and crops itself; skip the base class padding.
        images = _check_images(images, self.path)
        return self._signature(images=images)["class_ids"].numpy().astype(np.int32)

    def runner(self, images):
        import tensorflow as tf

        x = tf.constant(np.asarray(images, np.uint8))
        return lambda: self._signature(images=x)["class_ids"].numpy()


class TFLitePredictor(Predictor):
    """A `.tflite` ENet run with the LiteRT interpreter, one image at a time.

    fp32/fp16 models get float32 pixels; full-integer (int8) models get uint8 pixels (their
    input is quantized with scale 1) and return int8 logits, whose argmax is that of the
    dequantized logits (the output scale is positive).

    Args:
        path: str. The `.tflite` file.
        num_threads: int or None. Interpreter threads. Defaults to None.
    """

    runtime = "TFLite"
    takes_threads = True

    @staticmethod
    def versions(**options):
        return f"LiteRT {_version('ai-edge-litert')}"

    def __init__(self, path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = os.fspath(path)
        try:
            # LiteRT announces its default delegate on stderr ("INFO: Created TensorFlow Lite
            # XNNPACK delegate for CPU."), an info line that TF_CPP_MIN_LOG_LEVEL >= 1 hides.
            with _tf_logs.filtered_stderr(drop=(r"INFO: Created TensorFlow Lite XNNPACK delegate",)):
                self.interpreter = Interpreter(model_path=self.path, num_threads=num_threads)
                self.interpreter.allocate_tensors()
        except ValueError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
            raise ValueError(f"{self.path} is not a .tflite model LiteRT can run: {first}") from error
        (self._input,) = self.interpreter.get_input_details()
        self._output = self.interpreter.get_output_details()[0]
        shape = [int(d) for d in self._input["shape"]]
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(f"{self.path}: expected a model taking (1, H, W, 3) images. Received: input shape {shape}")
        self.input_size = (shape[1], shape[2])
        self.num_classes = int(self._output["shape"][-1])

    def _predict(self, images):
        dtype = self._input["dtype"]
        results = []
        for image in images:
            self.interpreter.set_tensor(self._input["index"], image[None].astype(dtype))
            self.interpreter.invoke()
            logits = self.interpreter.get_tensor(self._output["index"])[0]
            results.append(np.argmax(logits, axis=-1))
        return np.stack(results)

    def runner(self, images):
        self.interpreter.set_tensor(self._input["index"], np.asarray(images)[:1].astype(self._input["dtype"]))
        return self.interpreter.invoke


class OnnxPredictor(Predictor):
    """A `.onnx` ENet (float32 pixels in [0, 255], logits out) run with ONNX Runtime's CPU
    provider.

    Args:
        path: str. The `.onnx` file.
        num_threads: int or None. Intra-op threads; None lets ONNX Runtime choose. Defaults
            to None.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if ONNX Runtime cannot load it.
    """

    runtime = "ONNX"
    takes_threads = True

    @staticmethod
    def versions(**options):
        return f"ONNX Runtime {_version('onnxruntime')} CPU"

    def __init__(self, path, num_threads=None):
        import onnxruntime

        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"No ONNX model at {self.path}")
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
            options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - ONNX Runtime raises its own classes
            raise ValueError(f"{self.path} is not an ONNX model ONNX Runtime can run: {error}") from error
        (self._input,) = self.session.get_inputs()
        self.input_shape = tuple(d if isinstance(d, int) else None for d in self._input.shape)
        self.input_size = _fixed_size(self.input_shape)
        self.num_classes = int(self.session.get_outputs()[0].shape[-1])

    def logits(self, images):
        """Float32 logits (B, H, W, num_classes) for (B, H, W, 3) images of the model's size."""
        return self.session.run(None, {self._input.name: np.asarray(images, np.float32)})[0]

    def _predict(self, images):
        if self.input_shape[0] is not None and images.shape[0] != self.input_shape[0]:
            return np.concatenate([self._predict(images[i : i + 1]) for i in range(images.shape[0])])
        return np.argmax(self.logits(images), axis=-1)

    def runner(self, images):
        feed = {self._input.name: np.asarray(images, np.float32)}
        return lambda: self.session.run(None, feed)


def make_predictor(fmt, path_or_model, num_threads=None):
    """The `Predictor` that runs format `fmt` (a name or an `export.formats.Format`).

    Args:
        fmt: str or `Format`. A name from `enet_keras.export.formats.FORMATS`.
        path_or_model: str, the model file or folder; or a `keras.Model` for the Keras formats.
        num_threads: int or None. Threads of runtimes that take a count (`takes_threads`);
            the TensorFlow ones use the process's threads. Defaults to None.

    Returns:
        A `Predictor`.
    """
    from enet_keras.export.formats import FORMATS

    fmt = FORMATS[fmt] if isinstance(fmt, str) else fmt
    cls = globals()[fmt.predictor]
    options = dict(fmt.predictor_options)
    if cls.takes_threads:
        options["num_threads"] = num_threads
    return cls(path_or_model, **options)


def load_predictor(model_path, num_threads=None):
    """A `Predictor` for a model file or folder, chosen by its suffix in the format registry
    (`enet_keras.export.formats.format_of_path`).

    Args:
        model_path: str. A `.keras` file, a SavedModel folder (or TF-Serving model folder with
            numeric versions), a `.tflite` file or a `.onnx` file.
        num_threads: int or None. Threads for the TFLite and ONNX runtimes. Defaults to None.

    Returns:
        A `Predictor` with `predict(images)`, `num_classes` and `input_size`.

    Raises:
        FileNotFoundError: if `model_path` does not exist.
        ValueError: for an unknown extension.

    Example:

    >>> predictor = load_predictor("runs/synthetic/best.keras")  # doctest: +SKIP
    >>> predictor.predict(np.zeros((1, 64, 64, 3), np.uint8)).shape  # doctest: +SKIP
    (1, 64, 64)
    """
    from enet_keras.export.formats import format_of_path

    path = os.fspath(model_path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"--model: no model file at {path} (expected a .keras, .tflite or .onnx file or a "
                                "SavedModel folder)")
    return make_predictor(format_of_path(path), path, num_threads)
