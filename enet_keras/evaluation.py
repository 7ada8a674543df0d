"""Evaluation of a trained ENet in any runtime (`enet_keras.runtimes`): confusion-matrix
metrics and the loop that scores a model on a data split.

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

import numpy as np

from enet_keras.runtimes import Predictor, TFLitePredictor, load_predictor


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
        are no labelled pixels), `chance_mean_iou` (the expected mIoU of guessing each pixel's
        class uniformly at random, for scale) and `num_pixels` (int).

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
    share = label_counts / total if total > 0 else label_counts
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, true_positives / union, np.nan)
        recall = np.where(label_counts > 0, true_positives / label_counts, np.nan)
    return {
        "per_class_iou": iou.tolist(),
        "per_class_accuracy": recall.tolist(),
        "mean_iou": _nanmean(iou),
        "pixel_accuracy": float(true_positives.sum() / total) if total > 0 else float("nan"),
        "class_average_accuracy": _nanmean(recall),
        # Guessing uniformly, a class with label share p of N pixels gets p*N/C true and
        # (1-p)*N/C false positives and misses p*N*(C-1)/C: IoU = p / (1 + p*(C-1)).
        "chance_mean_iou": float(np.mean(share / (1 + share * (len(share) - 1)))) if total > 0 else float("nan"),
        "num_pixels": int(total),
    }


def _nanmean(values):
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


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


def logit_offsets(class_weights, strength):
    """The per-class logit offsets that take `strength` of a class weighting back:
    `-strength * log(class_weights)`, shifted to mean 0 (a common shift changes no argmax).

    Args:
        class_weights: sequence of positive floats, the loss weights the model was trained with.
        strength: float. 0 keeps the model's logits; 1 takes the weighting's whole shift back.

    Returns:
        float32 numpy array [num_classes].

    Raises:
        ValueError: if a weight is not positive (its log is undefined).

    Example:

    >>> logit_offsets([1.0, np.e], 1.0).tolist()
    [0.5, -0.5]
    """
    weights = np.asarray(class_weights, np.float64).reshape(-1)
    if not (weights > 0).all():
        raise ValueError("class weights must all be positive to take a weighting back. "
                         f"Received: {weights.round(4).tolist()}")
    offsets = -strength * np.log(weights)
    return (offsets - offsets.mean()).astype(np.float32)


def fit_logit_adjustment(model, source, class_weights, strengths=None, batch_size=4, verbose=1):
    """Scores how much of its class weighting to take back from a trained model's logits.

    A cross-entropy weighted by `w` is lowest where the softmax is proportional to
    `w_c * p(c | pixel)`, so training with ENet's weights lifts each class's logit by about
    `log(w_c)`: rare classes are predicted too often, which costs their IoU precision.
    Subtracting `strength * log(w)` (Menon et al., "Long-tail learning via logit adjustment",
    ICLR 2021) trades some of their recall back (on CamVid val, strength 0.6 lifted mIoU from
    64.0 to 65.1, SignSymbol by 4 and Pedestrian by 6 IoU; docs/training.md). One pass over
    `source` scores every strength; `enet_keras.rewrite.shift_logits` then writes the chosen
    offsets into the model.

    Args:
        model: str (a `.keras` file), `keras.Model` or `KerasPredictor`: an ENet with logits out.
        source: `enet_keras.data.Source`, e.g. the val split.
        class_weights: sequence of positive floats: the loss weights the model was trained with
            (`enet_keras.data.class_weights`).
        strengths: sequence of floats to score. Defaults to 0, 0.05, ..., 1.
        batch_size: int. Images per batch. Defaults to 4.
        verbose: int. 1 shows a progress bar. Defaults to 1.

    Returns:
        A dict: `strengths` (list), `results` (per strength, the `segmentation_metrics` entries
        and `confusion_matrix`), `best_strength` (the highest mIoU; the first of equals) and
        `best_offsets` (list, `logit_offsets` at it).

    Raises:
        ValueError: if the class weights do not match the model's classes or are not positive.

    Example:

    >>> from enet_keras import data
    >>> val = data.get_source("camvid", "val", "../shared/data/camvid")  # doctest: +SKIP
    >>> fit = fit_logit_adjustment("runs/camvid/best.keras", val, weights)  # doctest: +SKIP
    >>> fit["best_strength"]  # doctest: +SKIP
    0.6
    """
    import keras

    from enet_keras import data
    from enet_keras.runtimes import KerasPredictor

    predictor = model if isinstance(model, KerasPredictor) else KerasPredictor(model)
    num_classes, ignore = source.num_classes, source.ignore_label
    if predictor.num_classes != num_classes or len(class_weights) != num_classes:
        raise ValueError(f"{predictor.path} predicts {predictor.num_classes} classes, {source.name!r} has "
                         f"{num_classes} and there are {len(class_weights)} class weights: they must agree")
    strengths = [round(0.05 * i, 2) for i in range(21)] if strengths is None else [float(v) for v in strengths]
    offsets = np.stack([logit_offsets(class_weights, strength) for strength in strengths])
    confusions = np.zeros((len(strengths), num_classes, num_classes), np.int64)
    dataset = data.make_pipeline(source, batch_size, crop_size=predictor.input_size, training=False, cache=False)
    progress = keras.utils.Progbar(source.num_examples, unit_name="image", verbose=verbose) if verbose else None
    seen = 0
    for images, labels in dataset:
        labels = np.asarray(labels).reshape(-1)
        keep = labels != ignore
        logits = predictor.logits(np.asarray(images).astype(np.uint8)).reshape(-1, num_classes)[keep]
        for k, shift in enumerate(offsets):
            confusions[k] += confusion_matrix(labels[keep], np.argmax(logits + shift, axis=-1), num_classes)
        seen += int(images.shape[0])
        if progress is not None:
            progress.update(seen)
    results = [dict(segmentation_metrics(confusion), confusion_matrix=confusion.tolist()) for confusion in confusions]
    best = int(np.argmax([r["mean_iou"] for r in results]))
    return {"strengths": strengths, "results": results, "best_strength": strengths[best],
            "best_offsets": offsets[best].tolist()}


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
        f"mIoU:                   {cell(results['mean_iou']).strip()} % "
        f"(guessing at random: {cell(results['chance_mean_iou']).strip()} %)",
        f"pixel accuracy:         {cell(results['pixel_accuracy']).strip()} %",
        f"class-average accuracy: {cell(results['class_average_accuracy']).strip()} %",
        *([f"agreement with {results['reference']}: {cell(results['agreement']).strip()} % of pixels"]
          if "agreement" in results else []),
        f"({results['num_images']} images, {results['num_pixels']} labelled pixels, "
        f"{results['runtime']} model {results['model']})",
    ]
    return "\n".join(lines)
