"""Every form a trained ENet takes, in one registry (`FORMATS`), and `export_all`, which writes
a set of them as one folder.

Each `Format` says how it is written (`export`), which `enet_keras.runtimes.Predictor` runs it
and with what options, its precision, its file suffix and whether it needs calibration images.
`export_all`, `enet_keras.runtimes.load_predictor` and `enet_keras.benchmark.benchmark` read
only this table, so a new format is one entry here (and a `Predictor` for a new runtime).
"""

import dataclasses
import json
import os
import time
from typing import Callable, Optional

from enet_keras.faults import crash_point
from enet_keras.files import atomic_directory, atomic_write_json, check_file_name, disk_size, resolve_output


@dataclasses.dataclass(frozen=True)
class ExportSettings:
    """What an export function needs besides the model (the arguments of `export_all`)."""

    height: int = 360
    width: int = 480
    calibration_images: Optional[list] = None
    num_calibration_images: int = 100
    model_name: str = "enet"
    version: int = 1
    opset: int = 17
    tftrt_precision: str = "FP16"
    class_names: Optional[tuple] = None
    license: str = "MIT"
    metadata: bool = True

    def tflite_metadata(self, num_classes):
        """`add_metadata`'s arguments for the TFLite files (None with `metadata` off)."""
        if not self.metadata:
            return None
        names = self.class_names or [f"class {i}" for i in range(num_classes)]
        return {"class_names": list(names), "name": self.model_name, "version": str(self.version),
                "license": self.license}

    def serving_dir(self, folder):
        """The TF-Serving version folder of the SavedModel in export folder `folder`."""
        return os.path.join(folder, "serving", self.model_name, str(self.version))


@dataclasses.dataclass(frozen=True)
class Format:
    """One form of a trained ENet.

    Attributes:
        name: str. The name `--formats` takes.
        description: str. What is written.
        predictor: str. The `enet_keras.runtimes` class that runs it.
        precision: str. `"fp32"`, `"fp16"` or `"int8"` (of the weights and compute).
        suffix: str or None. The file extension `load_predictor` knows it by (`""` for a
            folder); None when a path cannot tell it (the first format with a suffix wins).
        export: function `(model, folder, settings) -> path written`, or None for the `.keras`
            model itself, which is trained, not exported.
        calibrated: function `settings -> bool`: whether export needs calibration images.
        requires: tuple of format names exported before it into the same folder.
        fixed_size: bool. Whether the model takes only the size it was exported at.
        predictor_options: dict. Keyword arguments of the predictor.
        default: bool. Whether `export_all` (and `tools/export.py`) writes it by default.
        note: str. What the benchmark times.
    """

    name: str
    description: str
    predictor: str
    precision: str = "fp32"
    suffix: Optional[str] = None
    export: Optional[Callable] = None
    calibrated: Callable = lambda settings: False
    requires: tuple = ()
    fixed_size: bool = True
    predictor_options: dict = dataclasses.field(default_factory=dict)
    default: bool = False
    note: str = ""


def _export_saved_model(model, folder, settings):
    from enet_keras.export.saved_model import export_saved_model

    images = settings.calibration_images
    export_saved_model(model, os.path.join(folder, "serving"), settings.model_name, settings.version,
                       warmup_images=images[:3] if images else None)
    return settings.serving_dir(folder)


def _tflite_exporter(precision):
    def export(model, folder, settings):
        from enet_keras.export import tflite

        return tflite.export(
            model, os.path.join(folder, f"{settings.model_name}_{precision}.tflite"), settings.height,
            settings.width, precision, representative_images=settings.calibration_images if precision == "int8" else None,
            num_calibration_images=settings.num_calibration_images,
            metadata=settings.tflite_metadata(int(model.output_shape[-1])),
        )

    return export


def _export_onnx(model, folder, settings):
    from enet_keras.export.onnx import export_onnx

    return export_onnx(model, os.path.join(folder, f"{settings.model_name}.onnx"), settings.height, settings.width,
                       settings.opset, batch_size=1)


def _export_tftrt(model, folder, settings):
    from enet_keras.export.tensorrt import convert_tftrt

    return convert_tftrt(
        settings.serving_dir(folder), os.path.join(folder, f"tftrt_{settings.tftrt_precision.lower()}"),
        settings.tftrt_precision, calibration_images=settings.calibration_images,
        build_shapes=[(settings.height, settings.width)], num_calibration_images=settings.num_calibration_images,
    )


_TFLITE_NOTE = "invoke() only"
# In the order `export_all` writes them and the benchmark times them.
FORMATS = {f.name: f for f in (
    Format("keras", "the trained .keras model itself, run by Keras with batch normalization folded",
           "KerasPredictor", suffix=".keras", fixed_size=False, note="tf.function, BN folded"),
    Format("keras_xla", "the .keras model run by Keras with XLA (jit_compile=True)", "KerasPredictor",
           fixed_size=False, predictor_options={"jit_compile": True}, note="tf.function, BN folded"),
    Format("savedmodel", "TF-Serving SavedModel in serving/<model_name>/<version>/, any size, uint8 images in",
           "SavedModelPredictor", suffix="", export=_export_saved_model, fixed_size=False, default=True,
           note="uint8 in, pad+softmax+argmax"),
    Format("tflite_fp32", "<model_name>_fp32.tflite, float32 images in, float32 logits out", "TFLitePredictor",
           suffix=".tflite", export=_tflite_exporter("fp32"), default=True, note=_TFLITE_NOTE),
    Format("tflite_fp16", "<model_name>_fp16.tflite, fp16 weights, float32 compute", "TFLitePredictor",
           precision="fp16", suffix=".tflite", export=_tflite_exporter("fp16"), default=True, note=_TFLITE_NOTE),
    Format("tflite_int8", "<model_name>_int8.tflite, full integer: uint8 images in, int8 logits out",
           "TFLitePredictor", precision="int8", suffix=".tflite", export=_tflite_exporter("int8"),
           calibrated=lambda settings: True, default=True, note=_TFLITE_NOTE),
    Format("onnx", "<model_name>.onnx, float32 [1, H, W, 3] -> logits, for ONNX Runtime and trtexec",
           "OnnxPredictor", suffix=".onnx", export=_export_onnx, default=True),
    Format("tftrt", "tftrt_<precision>/, a TF-TRT SavedModel (needs TensorFlow built with TensorRT)",
           "SavedModelPredictor", export=_export_tftrt, requires=("savedmodel",), fixed_size=False,
           calibrated=lambda settings: settings.tftrt_precision == "INT8", note="TF-TRT signature"),
)}
EXPORTED = tuple(name for name, f in FORMATS.items() if f.export is not None)
DEFAULT_FORMATS = tuple(name for name, f in FORMATS.items() if f.default)


def check_formats(formats, allowed=None):
    """`formats` as a list without repeats, each a name from `allowed` (default: all of `FORMATS`).

    Raises:
        ValueError: for an empty list or an unknown name, listing the allowed ones.
    """
    allowed = tuple(FORMATS) if allowed is None else tuple(allowed)
    formats = list(dict.fromkeys(formats))
    if not formats or any(f not in allowed for f in formats):
        raise ValueError(f"formats must be names from {allowed}. Received: {formats}")
    return formats


def format_of_path(path):
    """The `Format` a model path is (the first with its suffix; a folder is a SavedModel).

    Raises:
        ValueError: for a suffix no format has, listing the ones that are known.
    """
    suffix = "" if os.path.isdir(path) else os.path.splitext(path)[1].lower()
    for fmt in FORMATS.values():
        if fmt.suffix == suffix:
            return fmt
    known = ", ".join(sorted({f.suffix for f in FORMATS.values() if f.suffix}))
    raise ValueError(f"Cannot tell the runtime of {path}: expected a file ending in {known} or a SavedModel "
                     f"folder. Received extension {suffix!r}")


SUMMARY = "export_summary.json"
# Written into the summary: a folder is an export (ours to replace) only if it has one.
FORMAT_VERSION = 1


def _manifest(path):
    """The `export_summary.json` of folder `path` if it is one we wrote (it has a
    `format_version`), else None."""
    try:
        with open(os.path.join(path, SUMMARY)) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or "format_version" not in summary \
            or not isinstance(summary.get("contents"), list):
        return None
    return summary


def _foreign_files(path, summary):
    """Files under `path` that the export described by `summary` did not write."""
    ours = set(summary["contents"]) | {SUMMARY}
    found = (os.path.relpath(os.path.join(d, f), path) for d, _, files in os.walk(path) for f in files)
    return sorted(f for f in found if f not in ours)


def is_export_folder(path):
    """Whether `path` is a folder an export wrote, holding nothing else (so it may be replaced)."""
    summary = _manifest(path)
    return summary is not None and not _foreign_files(path, summary)


def export_folder_of(path):
    """The export folder that holds `path` (a file or folder in it, or itself), or None."""
    folder = os.path.realpath(os.fspath(path))
    while True:
        if _manifest(folder) is not None:
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def check_destination(output_dir):
    """Checks an export destination before any work: an existing folder is replaced whole, so it
    must be empty or an export we wrote, holding nothing else.

    Args:
        output_dir: str or PathLike. The `--output_dir` given.

    Returns:
        The resolved path (`files.resolve_output`).

    Raises:
        ValueError: naming `--output_dir`, for an empty path, a file, a folder that is not an
            export (no `export_summary.json` with a format version), or an export folder that
            holds files the export did not write (naming them).
    """
    path = resolve_output(output_dir, "--output_dir")
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ValueError(f"--output_dir {output_dir} is a file, not a folder: choose a folder")
    if not os.path.isdir(path) or not os.listdir(path):
        return path
    summary = _manifest(path)
    if summary is None:
        raise ValueError(
            f"--output_dir {output_dir} exists and is not an export folder (it has no {SUMMARY} with a "
            "format_version); an export replaces its folder whole, so choose a new or empty folder"
        )
    foreign = _foreign_files(path, summary)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ValueError(
            f"--output_dir {output_dir} holds files the export did not write ({shown}); an export "
            "replaces its folder whole, so move them out or choose another folder"
        )
    return path


def export_all(model, output_dir, formats=DEFAULT_FORMATS, height=360, width=480, calibration_images=None,
               num_calibration_images=100, model_name="enet", version=1, opset=17, tftrt_precision="FP16",
               class_names=None, license="MIT", metadata=True, extra_files=None, config=None, verbose=1):
    """Exports `model` to several formats as one folder: everything is written into a hidden
    temporary folder beside `output_dir` and swapped in by rename when complete, so the folder
    never mixes two exports and a kill leaves the previous export (or nothing). A temporary
    folder left by a killed export is removed on the next run.

    Args:
        model: `keras.Model`, a trained ENet.
        output_dir: str. The export folder; an existing one must be an earlier export or empty.
        formats: iterable of names from `EXPORTED`. Defaults to `DEFAULT_FORMATS`.
        height, width: int. Input size of the TFLite and ONNX models (multiples of 8); the
            SavedModel takes any size. Default to 360, 480.
        calibration_images: list of uint8 (height, width, 3) training images, or None. Needed
            for tflite_int8 and INT8 TF-TRT; the first three also warm up TF-Serving.
        num_calibration_images: int. Images that calibrate int8. Defaults to 100.
        model_name: str. File name prefix and TF-Serving model name, a plain file name.
            Defaults to `"enet"`.
        version: int. TF-Serving version folder. Defaults to 1.
        opset: int. ONNX opset. Defaults to 17.
        tftrt_precision: str. `"FP32"`, `"FP16"` or `"INT8"`. Defaults to `"FP16"`.
        class_names: list of str or None. The labels in the TFLite metadata; None names them
            `class 0`, `class 1`, ... Defaults to None.
        license: str. The license in the TFLite metadata. Defaults to "MIT".
        metadata: bool. Write TFLite metadata (labels, normalization, name, version, license)
            into the TFLite files, as MediaPipe's ImageSegmenter needs. Defaults to True.
        extra_files: dict {file name: JSON-ready object} written beside the models (for
            example `palette.json`), or None.
        config: dict or None. Written as `export_config.json`.
        verbose: int. 1 prints a line per format. Defaults to 1.

    Returns:
        The summary written to `export_summary.json`: the files (format, path, size, seconds).

    Raises:
        ValueError: for an unknown format, int8 without calibration images, a `model_name`
            that is not a plain file name, or an `output_dir` that is not ours to replace
            (see `check_destination`).
        InUseError: if another process exports into `output_dir`.
        ImportError: for tftrt where TensorFlow has no TensorRT.
    """
    from enet_keras.model import check_full_network

    requested = check_formats(formats, EXPORTED)
    formats = [name for name in EXPORTED if name in requested]  # the registry's order: requirements first
    settings = ExportSettings(height, width, calibration_images, num_calibration_images, model_name, version,
                              opset, tftrt_precision, None if class_names is None else tuple(class_names), license,
                              metadata)
    for name in formats:
        fmt = FORMATS[name]
        if calibration_images is None and fmt.calibrated(settings):
            raise ValueError(f"{name} calibrates on training images: pass calibration_images (--dataset)")
        missing = [r for r in fmt.requires if r not in formats]
        if missing:
            raise ValueError(f"{name} is made from {', '.join(missing)}: add it to the formats")
    if "tftrt" in formats:
        from enet_keras.export.tensorrt import require_tensorrt

        require_tensorrt()
    check_file_name(model_name, "--model_name")
    check_full_network(model)
    num_classes = int(model.output_shape[-1])
    if metadata and class_names is not None and len(class_names) != num_classes:
        raise ValueError(
            f"The model has {num_classes} classes but the data {len(class_names)} class names (--dataset), which "
            f"would label the TFLite metadata wrongly: export with the model's own dataset, or --no_metadata "
            f"(metadata=False). Received: class_names={list(class_names)}")
    shown_dir = os.fspath(output_dir)
    check_destination(output_dir)

    written = []
    with atomic_directory(output_dir, owned=is_export_folder, flag="--output_dir") as tmp:
        for step, name in enumerate(formats, start=1):
            if verbose:
                print(f"[{step}/{len(formats)}] {name} ...", flush=True)
            start = time.time()
            path = FORMATS[name].export(model, tmp, settings)
            final = os.path.join(shown_dir, os.path.relpath(path, tmp))
            written.append({"format": name, "path": final, "size_MB": round(disk_size(path) / 1e6, 3),
                            "seconds": round(time.time() - start, 1)})
            crash_point("export_written", name)
        for file_name, obj in (extra_files or {}).items():
            atomic_write_json(os.path.join(tmp, file_name), obj)
        if config is not None:
            atomic_write_json(os.path.join(tmp, "export_config.json"), config)
        contents = sorted(os.path.relpath(os.path.join(d, f), tmp) for d, _, fs in os.walk(tmp) for f in fs)
        summary = {"format_version": FORMAT_VERSION, "height": height, "width": width, "files": written,
                   "contents": contents}
        atomic_write_json(os.path.join(tmp, SUMMARY), summary)
        crash_point("export_before_swap")
    return summary
