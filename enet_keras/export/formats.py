"""The export formats in one registry, and `export_all`, which writes a set of them as one folder."""

import json
import os
import time

from enet_keras.faults import crash_point
from enet_keras.files import atomic_directory, atomic_write_json, check_file_name, disk_size, resolve_output

# name: what the file is (in the order `export_all` writes them).
FORMATS = {
    "savedmodel": "TF-Serving SavedModel in serving/<model_name>/<version>/, any size, uint8 images in",
    "tflite_fp32": "<model_name>_fp32.tflite, float32 images in, float32 logits out",
    "tflite_fp16": "<model_name>_fp16.tflite, fp16 weights, float32 compute",
    "tflite_int8": "<model_name>_int8.tflite, full integer: uint8 images in, int8 logits out",
    "onnx": "<model_name>.onnx, float32 [1, H, W, 3] -> logits, for ONNX Runtime and trtexec",
    "tftrt": "tftrt_<precision>/, a TF-TRT SavedModel (needs TensorFlow built with TensorRT)",
}
DEFAULT_FORMATS = ("savedmodel", "tflite_fp32", "tflite_fp16", "tflite_int8", "onnx")
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
               extra_files=None, config=None, verbose=1):
    """Exports `model` to several formats as one folder: everything is written into a hidden
    temporary folder beside `output_dir` and swapped in by rename when complete, so the folder
    never mixes two exports and a kill leaves the previous export (or nothing). A temporary
    folder left by a killed export is removed on the next run.

    Args:
        model: `keras.Model`, a trained ENet.
        output_dir: str. The export folder; an existing one must be an earlier export or empty.
        formats: iterable of names from `FORMATS`. Defaults to `DEFAULT_FORMATS`.
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
    from enet_keras import export
    from enet_keras.model import check_full_network

    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats must be names from {tuple(FORMATS)}. Received: {formats}")
    if calibration_images is None and ("tflite_int8" in formats or ("tftrt" in formats and tftrt_precision == "INT8")):
        raise ValueError("int8 calibrates on training images: pass calibration_images (--dataset)")
    if "tftrt" in formats and "savedmodel" not in formats:
        raise ValueError("tftrt converts the SavedModel: add savedmodel to the formats")
    if "tftrt" in formats:
        export.tensorrt.require_tensorrt()
    check_file_name(model_name, "--model_name")
    check_full_network(model)
    shown_dir = os.fspath(output_dir)
    check_destination(output_dir)

    written = []
    with atomic_directory(output_dir, owned=is_export_folder, flag="--output_dir") as tmp:
        serving_dir = os.path.join(tmp, "serving", model_name, str(version))
        for step, fmt in enumerate(formats, start=1):
            if verbose:
                print(f"[{step}/{len(formats)}] {fmt} ...", flush=True)
            start = time.time()
            prefix = os.path.join(tmp, model_name)
            if fmt == "savedmodel":
                export.export_saved_model(
                    model, os.path.join(tmp, "serving"), model_name, version,
                    warmup_images=calibration_images[:3] if calibration_images else None,
                )
                path = serving_dir
            elif fmt.startswith("tflite_"):
                precision = fmt.split("_", 1)[1]
                path = export.tflite.export(
                    model, f"{prefix}_{precision}.tflite", height, width, precision,
                    representative_images=calibration_images if precision == "int8" else None,
                    num_calibration_images=num_calibration_images,
                )
            elif fmt == "onnx":
                path = export.export_onnx(model, f"{prefix}.onnx", height, width, opset, batch_size=1)
            else:
                path = export.convert_tftrt(
                    serving_dir, os.path.join(tmp, f"tftrt_{tftrt_precision.lower()}"), tftrt_precision,
                    calibration_images=calibration_images, build_shapes=[(height, width)],
                    num_calibration_images=num_calibration_images,
                )
            final = os.path.join(shown_dir, os.path.relpath(path, tmp))
            written.append({"format": fmt, "path": final, "size_MB": round(disk_size(path) / 1e6, 3),
                            "seconds": round(time.time() - start, 1)})
            crash_point("export_written", fmt)
        for name, obj in (extra_files or {}).items():
            atomic_write_json(os.path.join(tmp, name), obj)
        if config is not None:
            atomic_write_json(os.path.join(tmp, "export_config.json"), config)
        contents = sorted(os.path.relpath(os.path.join(d, f), tmp) for d, _, fs in os.walk(tmp) for f in fs)
        summary = {"format_version": FORMAT_VERSION, "height": height, "width": width, "files": written,
                   "contents": contents}
        atomic_write_json(os.path.join(tmp, SUMMARY), summary)
        crash_point("export_before_swap")
    return summary
