"""Evaluation of a trained ENet in any runtime: confusion-matrix metrics and one `Predictor`
interface over `.keras` models, SavedModels, `.tflite` and `.onnx` files.

Metrics (Paszke et al. 2016, Sec. 5, Tables 4-6) are computed in numpy from one confusion
matrix accumulated over the whole split, so every runtime is scored by the same code:

- IoU per class: TP / (TP + FP + FN);
- mIoU: the mean IoU over classes present in the labels or the predictions (a class absent from
  both has no IoU, NaN, and is left out of the mean);
- pixel accuracy ("global avg." in the paper): correct pixels / labelled pixels;
- class-average accuracy ("class avg." in the paper's CamVid table): the mean over classes
  present in the labels of each class's recall, TP / (TP + FN).

Pixels with the ignore label count nowhere.
"""

import os

import numpy as np


# ----------------------------------------------------------------------------------------------
# Metrics.


def confusion_matrix(labels, predictions, num_classes, ignore_label=None):
    """Counts (label, prediction) pairs of pixels, leaving out pixels with the ignore label.

    Args:
        labels: integer array of any shape. Ground-truth class ids.
        predictions: integer array of the same shape. Predicted class ids.
        num_classes: int. Number of classes.
        ignore_label: int or None. Label id of pixels to leave out. Defaults to None.

    Returns:
        An int64 array (num_classes, num_classes): rows are labels, columns predictions.

    Raises:
        ValueError: if the shapes differ, or a label (other than the ignore label) or a
            prediction is outside [0, num_classes).

    Example:

    >>> confusion_matrix(np.array([0, 1, 1, 255]), np.array([0, 1, 0, 1]), 2, 255).tolist()
    [[1, 0], [1, 1]]
    """
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels and predictions must have the same shape. Received: labels {labels.shape}, "
            f"predictions {predictions.shape}"
        )
    labels = labels.astype(np.int64).ravel()
    predictions = predictions.astype(np.int64).ravel()
    if ignore_label is not None:
        keep = labels != ignore_label
        labels, predictions = labels[keep], predictions[keep]
    for values, what in ((labels, "labels"), (predictions, "predictions")):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{what} must be class ids in [0, {num_classes}) (ignore label {ignore_label}). "
                f"Received: values in [{values.min()}, {values.max()}]"
            )
    counts = np.bincount(num_classes * labels + predictions, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def segmentation_metrics(confusion):
    """Per-class IoU, mIoU, pixel accuracy and class-average accuracy from a confusion matrix.

    Args:
        confusion: array (C, C), rows labels, columns predictions (as `confusion_matrix`).

    Returns:
        A dict with `per_class_iou` (list of C floats, NaN for a class absent from both labels
        and predictions), `per_class_accuracy` (recall; NaN for a class absent from the
        labels), `mean_iou`, `pixel_accuracy`, `class_average_accuracy` (floats, NaN if there
        are no labelled pixels) and `num_pixels` (int).

    Raises:
        ValueError: if `confusion` is not square.

    Example:

    >>> m = segmentation_metrics(np.array([[2, 0, 0], [1, 1, 0], [0, 0, 0]]))
    >>> round(m["mean_iou"], 4), m["pixel_accuracy"], m["class_average_accuracy"]
    (0.5833, 0.75, 0.75)
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be a square (C, C) matrix. Received: shape {confusion.shape}")
    true_positives = np.diag(confusion)
    label_counts = confusion.sum(axis=1)
    prediction_counts = confusion.sum(axis=0)
    union = label_counts + prediction_counts - true_positives
    total = confusion.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, true_positives / union, np.nan)
        recall = np.where(label_counts > 0, true_positives / label_counts, np.nan)
    return {
        "per_class_iou": iou.tolist(),
        "per_class_accuracy": recall.tolist(),
        "mean_iou": _nanmean(iou),
        "pixel_accuracy": float(true_positives.sum() / total) if total > 0 else float("nan"),
        "class_average_accuracy": _nanmean(recall),
        "num_pixels": int(total),
    }


def _nanmean(values):
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


# ----------------------------------------------------------------------------------------------
# Predictors: one interface for every runtime.


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
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"{self.path}: expected images of shape (batch, height, width, 3). Received: shape {images.shape}"
            )
        if images.dtype != np.uint8:
            images = np.clip(np.round(images), 0, 255).astype(np.uint8)
        height, width = images.shape[1:3]
        if self.input_size is not None:
            if (height, width) != tuple(self.input_size):
                raise ValueError(
                    f"{self.path}: this {self.runtime} model has a fixed input size "
                    f"{tuple(self.input_size)} (height, width). Received: images of shape {images.shape}; "
                    "resize, crop or pad them to the model's size (evaluate() centre-crops/pads the data)"
                )
            return np.asarray(self._predict(images)).astype(np.int32)
        pad_h, pad_w = (-height) % 8, (-width) % 8
        if pad_h or pad_w:
            images = np.pad(images, [(0, 0), (0, pad_h), (0, pad_w), (0, 0)])
        return np.asarray(self._predict(images))[:, :height, :width].astype(np.int32)

    def _predict(self, images):
        raise NotImplementedError


def _fixed_size(shape):
    height, width = shape[1], shape[2]
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        return (height, width)
    return None


class KerasPredictor(Predictor):
    """A `.keras` ENet (logits out), run with Keras as its inference-optimised copy
    (`enet_keras.inference.fold_batch_norm`: batch normalization folded, no dropout).

    Args:
        path_or_model: str (a `.keras` file) or a `keras.Model`.
    """

    runtime = "Keras"

    def __init__(self, path_or_model):
        import keras

        from enet_keras.inference import fold_batch_norm
        from enet_keras.model import load_model

        if isinstance(path_or_model, keras.Model):
            model, self.path = path_or_model, path_or_model.name
        else:
            self.path = os.fspath(path_or_model)
            model = load_model(self.path)
        self.model = fold_batch_norm(model)
        self.num_classes = int(self.model.output_shape[-1])
        self.input_size = _fixed_size(self.model.input_shape)

    def _predict(self, images):
        import keras

        logits = self.model(images.astype(np.float32), training=False)
        return keras.ops.convert_to_numpy(keras.ops.argmax(logits, axis=-1))


class SavedModelPredictor(Predictor):
    """A SavedModel from `enet_keras.export.saved_model.export_saved_model`, through its
    `serving_default` signature (uint8 `images` -> `class_ids`).

    Args:
        path: str. The version folder (holding `saved_model.pb`), or the model folder above
            it (`<base>/<name>`), in which case the highest numeric version is used.
    """

    runtime = "SavedModel"

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
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"{self.path}: expected images of shape (batch, height, width, 3). Received: shape {images.shape}"
            )
        images = np.clip(np.round(images), 0, 255).astype(np.uint8) if images.dtype != np.uint8 else images
        return self._signature(images=images)["class_ids"].numpy().astype(np.int32)


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

    def __init__(self, path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = os.fspath(path)
        self.interpreter = Interpreter(model_path=self.path, num_threads=num_threads)
        self.interpreter.allocate_tensors()
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


class OnnxPredictor(Predictor):
    """A `.onnx` ENet (float32 pixels in, logits out) run with ONNX Runtime.

    Args:
        path: str. The `.onnx` file.
        num_threads: int or None. Intra-op threads. Defaults to None.
    """

    runtime = "ONNX"

    def __init__(self, path, num_threads=None):
        from enet_keras.export.onnx import OnnxSegmenter

        self.path = os.fspath(path)
        self.segmenter = OnnxSegmenter(self.path, num_threads=num_threads)
        self.input_size = _fixed_size(self.segmenter.input_shape)
        self._fixed_batch = self.segmenter.input_shape[0]
        self.num_classes = int(self.segmenter.session.get_outputs()[0].shape[-1])

    def _predict(self, images):
        if self._fixed_batch is not None and images.shape[0] != self._fixed_batch:
            return np.concatenate([self._predict(images[i : i + 1]) for i in range(images.shape[0])])
        return np.argmax(self.segmenter.predict(images), axis=-1)


def load_predictor(model_path, num_threads=None):
    """A `Predictor` for a model file or folder, chosen by its extension.

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
    path = os.fspath(model_path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model at {path} (expected a .keras, .tflite or .onnx file or a SavedModel folder)")
    if os.path.isdir(path):
        return SavedModelPredictor(path)
    extension = os.path.splitext(path)[1].lower()
    if extension == ".keras":
        return KerasPredictor(path)
    if extension == ".tflite":
        return TFLitePredictor(path, num_threads)
    if extension == ".onnx":
        return OnnxPredictor(path, num_threads)
    raise ValueError(
        f"Cannot tell the runtime of {path}: expected a .keras, .tflite or .onnx file or a SavedModel "
        f"folder. Received extension {extension!r}"
    )


# ----------------------------------------------------------------------------------------------
# Evaluation.


def evaluate(model, source, batch_size=4, limit=None, verbose=1, reference=None, examples=0):
    """Scores a model on a data source: confusion matrix and the paper's metrics.

    Images are evaluated at their own size (padded to a multiple of 8 for the model and cropped
    back), except for models with a fixed input size (TFLite, fixed ONNX), for which every
    image and label is centre-cropped or padded to that size (padded label pixels get the
    ignore label, so they do not count).

    Args:
        model: str (any path `load_predictor` takes) or a `Predictor`.
        source: `enet_keras.data.Source`, e.g. `data.get_source("camvid", "val", data_dir)`.
        batch_size: int. Images per batch. Defaults to 4.
        limit: int or None. Evaluate only the first `limit` images. Defaults to None (all).
        verbose: int. 1 shows a progress bar. Defaults to 1.
        reference: str, `Predictor` or None. Another model (say the fp32 one, for an int8
            model) run on the same images; the result then holds `agreement`, the fraction of
            pixels where both predict the same class. Defaults to None.
        examples: int. Keep the first `examples` images with their labels and predictions
            (for `visualize.examples_grid`). Defaults to 0.

    Returns:
        A dict: the `segmentation_metrics` entries plus `confusion_matrix` (nested lists),
        `class_names`, `num_images`, `model`, `runtime`, `dataset`, `split`, `ignore_label`
        (and `agreement`, `reference` with a reference; `examples`, a list of (image, label,
        prediction) numpy arrays, when asked for).

    Raises:
        FileNotFoundError: if the model file does not exist.
        ValueError: if the model's class count differs from the dataset's, or for a bad
            `batch_size` or `limit`.

    Example:

    >>> from enet_keras import data
    >>> src = data.get_source("synthetic", "val", num_examples=4, height=64, width=64)
    >>> results = evaluate("runs/synthetic/best.keras", src)  # doctest: +SKIP
    >>> sorted(results)[:3]  # doctest: +SKIP
    ['class_average_accuracy', 'class_names', 'confusion_matrix']
    """
    import keras

    from enet_keras import data

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1. Received: batch_size={batch_size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be None or an integer >= 1. Received: limit={limit!r}")
    predictor = model if isinstance(model, Predictor) else load_predictor(model)
    if predictor.num_classes != source.num_classes:
        raise ValueError(
            f"The model {predictor.path} predicts {predictor.num_classes} classes but the dataset "
            f"{source.name!r} ({source.split}) has {source.num_classes}: evaluate a model trained on this dataset"
        )
    if reference is not None:
        reference = reference if isinstance(reference, Predictor) else load_predictor(reference)
        if reference.num_classes != predictor.num_classes:
            raise ValueError(
                f"The reference {reference.path} predicts {reference.num_classes} classes but the model "
                f"{predictor.path} predicts {predictor.num_classes}"
            )
    num_classes, ignore = source.num_classes, source.ignore_label
    total = source.num_examples
    if limit is not None:
        total = limit if total is None else min(total, limit)
    if any(isinstance(p, TFLitePredictor) for p in (predictor, reference)):
        batch_size = 1
    crop_size = predictor.input_size or (reference.input_size if reference is not None else None)
    dataset = data.make_pipeline(source, batch_size, crop_size=crop_size, training=False, cache=False)
    if limit is not None:
        dataset = dataset.unbatch().take(limit).batch(batch_size)
    progress = keras.utils.Progbar(total, unit_name="image", verbose=verbose) if verbose else None
    confusion = np.zeros((num_classes, num_classes), np.int64)
    seen = same = pixels = 0
    kept = []
    for images, labels in dataset:
        images, labels = np.asarray(images).astype(np.uint8), np.asarray(labels)
        predictions = predictor.predict(images)
        confusion += confusion_matrix(labels, predictions, num_classes, ignore)
        kept += list(zip(images, labels, predictions))[: max(0, examples - len(kept))]
        if reference is not None:
            same += int((reference.predict(images) == predictions).sum())
            pixels += predictions.size
        seen += images.shape[0]
        if progress is not None:
            progress.update(seen)
    results = segmentation_metrics(confusion)
    results.update(
        confusion_matrix=confusion.tolist(),
        class_names=list(source.class_names),
        num_images=seen,
        model=predictor.path,
        runtime=predictor.runtime,
        dataset=source.name,
        split=source.split,
        ignore_label=int(ignore),
    )
    if reference is not None:
        results.update(agreement=same / max(pixels, 1), reference=reference.path)
    if examples:
        results["examples"] = kept
    return results


def json_ready(results):
    """`results` with NaN floats replaced by None (JSON has no NaN), recursively."""
    if isinstance(results, dict):
        return {key: json_ready(value) for key, value in results.items()}
    if isinstance(results, (list, tuple)):
        return [json_ready(value) for value in results]
    if isinstance(results, float) and np.isnan(results):
        return None
    return results


def format_results(results):
    """A plain-text table of per-class IoU and recall plus the summary metrics.

    Args:
        results: dict from `evaluate`.

    Returns:
        str.
    """
    names = results["class_names"]
    width = max([len("class")] + [len(n) for n in names])

    def cell(value):
        return "     -" if value is None or np.isnan(value) else f"{100 * value:6.2f}"

    lines = [f"{'class':<{width}}  {'IoU %':>6}  {'acc %':>6}"]
    for name, iou, accuracy in zip(names, results["per_class_iou"], results["per_class_accuracy"]):
        lines.append(f"{name:<{width}}  {cell(iou)}  {cell(accuracy)}")
    lines += [
        "",
        f"mIoU:                   {cell(results['mean_iou']).strip()} %",
        f"pixel accuracy:         {cell(results['pixel_accuracy']).strip()} %",
        f"class-average accuracy: {cell(results['class_average_accuracy']).strip()} %",
        *([f"agreement with {results['reference']}: {cell(results['agreement']).strip()} % of pixels"]
          if "agreement" in results else []),
        f"({results['num_images']} images, {results['num_pixels']} labelled pixels, "
        f"{results['runtime']} model {results['model']})",
    ]
    return "\n".join(lines)
