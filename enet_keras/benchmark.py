"""FLOPs, model sizes and CPU latency of ENet in every runtime we export to.

`count_flops` counts the floating-point operations of one forward pass with TensorFlow's graph
profiler; `benchmark` exports a model to each format and times batch-1 inference, returning
one row (a dict) per format, resolution and thread count; `to_markdown` and `to_csv` format
the rows. `tools/benchmark.py` is the command-line front end.

FLOPs. The paper (Paszke et al. 2016, Table 3) gives 3.83 GFLOPs for ENet at 3x360x640. We
freeze a batch-1 concrete function of the model and sum TensorFlow's per-op FLOP statistics
(`tf.compat.v1.profiler` with `ProfileOptionBuilder.float_operation()`). Those count a
multiply-add as 2 FLOPs (a convolution is 2*H_out*W_out*K_h*K_w*C_in*C_out, plus one FLOP per
output for a bias add; dilated convolutions are counted at their true cost) and also count
some elementwise ops (AddV2, Mul, Neg, Maximum, Equal, MaxPool); ops TensorFlow has no FLOP
statistics for count 0 (Relu, Pad, Select, Concat, reshapes). For ENet(19) at 360x640 with
BatchNormalization folded (`enet_keras.rewrite.fold_batch_norm`, as benchmarked) that is
3.61 GFLOPs: 3.32 in Conv2D, 0.16 in the transposed convolutions, 0.13 elementwise (3.64
without folding; ENet(11): 3.55 folded). The paper's 3.83 is on the same scale, which suggests it too
counts a multiply-add as 2 FLOPs (it does not say what else it counts).

Latency is the wall time of one batch-1 forward pass on CPU after warm-up, over `runs` runs:
the Keras model with BatchNormalization folded and dropout removed, in a `tf.function` with
and without XLA (`jit_compile=True`); the TF-Serving SavedModel signature (uint8 in, includes
padding, softmax and argmax); LiteRT fp32, fp16 and int8 (`invoke()` only, XNNPACK as LiteRT
applies it by default) at each thread count, with how many of the model's nodes XNNPACK took
and in how many partitions (`xnnpack_delegation`); and ONNX Runtime's CPU provider at each thread
count. TensorFlow's thread pools are fixed once per process, so the TensorFlow rows report the
intra-op threads in force (`configure_tensorflow_threads` sets them before TensorFlow starts).
Each format is written by the export registry (`enet_keras.export.formats.export_all`) and
timed through its runtime's `Predictor.runner` (`enet_keras.runtimes`), so the benchmark runs
exactly what evaluation and prediction run.
"""

import collections
import csv
import io
import math
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

from enet_keras import _internals, runtimes
from enet_keras.export.formats import FORMATS as REGISTRY
from enet_keras.export.formats import ExportSettings, check_formats, export_all
from enet_keras.files import disk_size
from enet_keras.model import check_memory, check_size

# Every registered format this machine can run (TF-TRT needs TensorFlow built with TensorRT).
FORMATS = tuple(name for name in REGISTRY if name != "tftrt")
COLUMNS = (
    "device", "runtime", "format", "precision", "resolution", "threads", "batch", "size_mb",
    "median_ms", "min_ms", "max_ms", "runs", "warmup", "gflops", "gflops_per_s",
    "delegated_nodes", "total_nodes", "partitions", "note",
)
MARKDOWN_COLUMNS = (
    ("format", "Format"), ("runtime", "Runtime"), ("precision", "Precision"), ("resolution", "Resolution"),
    ("threads", "Threads"), ("size_mb", "Size (MB)"), ("median_ms", "Median (ms)"), ("min_ms", "Min (ms)"),
    ("max_ms", "Max (ms)"), ("gflops", "GFLOPs"), ("gflops_per_s", "GFLOP/s"),
    ("xnnpack", "XNNPACK nodes (partitions)"), ("device", "Device"), ("note", "Note"),
)


def count_flops(model, height, width):
    """GFLOPs of one forward pass of `model` on a (1, height, width, 3) image.

    Sums TensorFlow's per-op FLOP statistics over a frozen batch-1 graph of the model in
    inference mode (see the module docstring: a multiply-add counts as 2 FLOPs).

    Args:
        model: `keras.Model` taking (B, H, W, 3) images, e.g. `ENet(num_classes)`.
        height: int. Input height (a multiple of 8 for ENet).
        width: int. Input width (a multiple of 8 for ENet).

    Returns:
        float, GFLOPs (1e9 FLOPs).

    Raises:
        ValueError: if height or width is not a positive integer.

    Example:

    >>> from enet_keras import ENet
    >>> round(count_flops(ENet(num_classes=19), 360, 640), 1)
    3.6
    """
    for size, what in ((height, "height"), (width, "width")):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
            raise ValueError(f"{what} must be a positive integer. Received: {what}={size!r}")
    function = tf.function(lambda images: model(images, training=False), autograph=False)
    concrete = function.get_concrete_function(tf.TensorSpec((1, int(height), int(width), 3), tf.float32))
    frozen = _internals.freeze(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=frozen.graph, options=options)
    return profile.total_float_ops / 1e9


def parse_sizes(text):
    """`"360x480,360x640"` -> `[(360, 480), (360, 640)]`; raises `ValueError` naming a bad size."""
    sizes = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        parts = item.split("x")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"sizes must be HxW pairs such as 360x480. Received: {item!r}")
        height, width = int(parts[0]), int(parts[1])
        check_size(height, f"--sizes {item}: the height")
        check_size(width, f"--sizes {item}: the width")
        check_memory(height, width, flag="--sizes")
        sizes.append((height, width))
    if not sizes:
        raise ValueError(f"sizes is empty. Received: {text!r}")
    return sizes


def device_name():
    """The CPU as `"<model name> (<n> cores)"`, from /proc/cpuinfo where there is one."""
    name = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name or platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def configure_tensorflow_threads(threads):
    """Sets TensorFlow's intra-op threads (inter-op 1) if TensorFlow has not started yet.

    Returns:
        The intra-op thread count in force afterwards (os.cpu_count() when TensorFlow chooses).
    """
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow is already initialised: its thread pools are fixed for this process.
    return tensorflow_threads()


def tensorflow_threads():
    """TensorFlow's intra-op threads in force (os.cpu_count() when TensorFlow chooses)."""
    return tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()


def time_ms(fn, runs, warmup):
    """Calls `fn` `warmup` times, then times `runs` calls; returns (median, min, max) in ms."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0. Received: runs={runs}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times), max(times)


def xnnpack_delegation(path, threads=1):
    """How much of a `.tflite` model LiteRT's default XNNPACK delegate takes.

    Nodes left outside the delegate run in LiteRT's own kernels, and every stretch of them
    splits the delegated graph into one more partition; both cost time (this is what made
    int8 ENet slow). The interpreter lists the original nodes and the delegate's partition
    nodes but not its execution plan, so a node counts as outside when it produces a tensor
    that a partition or the model output reads from outside, or that an outside node reads.

    Args:
        path: str. A `.tflite` file.
        threads: int. Interpreter threads. Defaults to 1.

    Returns:
        A dict: `delegated_nodes`, `total_nodes`, `partitions` (int) and `outside`, a dict of
        op name -> count for the nodes left to LiteRT's kernels.

    Example:

    >>> info = xnnpack_delegation("enet_int8.tflite")  # doctest: +SKIP
    >>> info["partitions"], info["outside"]["MAXIMUM"]  # doctest: +SKIP
    (83, 82)
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=os.fspath(path), num_threads=int(threads))
    interpreter.allocate_tensors()
    details = _internals.ops_details(interpreter)
    partitions = [d for d in details if d["op_name"] == "DELEGATE"]
    nodes = [d for d in details if d["op_name"] != "DELEGATE"]
    delegate_inputs = {int(t) for d in partitions for t in d["inputs"]}
    delegate_outputs = {int(t) for d in partitions for t in d["outputs"]}
    model_outputs = {int(d["index"]) for d in interpreter.get_output_details()}
    readers = collections.defaultdict(list)
    for i, node in enumerate(nodes):
        for t in node["inputs"]:
            readers[int(t)].append(i)

    def produced_outside(tensor, outside):
        return tensor not in delegate_outputs and (
            tensor in delegate_inputs or tensor in model_outputs or any(r in outside for r in readers[tensor])
        )

    outside, changed = set(), True
    while changed:  # walk back from the partitions' inputs and the outputs until nothing changes
        changed = False
        for i, node in enumerate(nodes):
            if i not in outside and any(produced_outside(int(t), outside) for t in node["outputs"]):
                outside.add(i)
                changed = True
    counts = collections.Counter(nodes[i]["op_name"] for i in outside)
    return {
        "delegated_nodes": len(nodes) - len(outside), "total_nodes": len(nodes),
        "partitions": len(partitions), "outside": dict(counts.most_common()),
    }


def benchmark(
    model,
    sizes=((360, 480), (360, 640), (720, 1280)),
    formats=FORMATS,
    threads=(1, 2),
    runs=20,
    warmup=3,
    work_dir=None,
    num_calibration_images=8,
    command=None,
    verbose=1,
):
    """Exports `model` to each format at each size and times batch-1 CPU inference.

    Every format runs the inference-optimised model (`fold_batch_norm`: BatchNormalization
    folded into the convolutions, dropout removed), so all rows time the same network.

    Args:
        model: functional `keras.Model` taking float (B, H, W, 3) images in [0, 255], e.g. a
            trained `ENet(num_classes)`.
        sizes: iterable of (height, width), multiples of 8. Defaults to the paper's Table 2
            sizes, 360x480, 360x640 and 720x1280.
        formats: iterable of names from `FORMATS`. Defaults to all.
        threads: iterable of int. Thread counts for LiteRT and ONNX Runtime (one row each);
            TensorFlow rows use the threads in force in the process (see
            `configure_tensorflow_threads`). Defaults to (1, 2).
        runs: int. Timed runs per row (>= 1). Defaults to 20.
        warmup: int. Untimed runs first (>= 0). Defaults to 3.
        work_dir: str or None. Folder for the exports (kept); None uses a temporary folder,
            removed afterwards. Defaults to None.
        num_calibration_images: int. Random uint8 images calibrating int8 (random images are
            enough for latency, not for accuracy). Defaults to 8.
        command: str or None. The command line that produced the rows, stored in each row's
            `command`. Defaults to None (not stored).
        verbose: int. 1 prints one line per row to stderr. Defaults to 1.

    Returns:
        A list of dicts with the keys of `COLUMNS` (and `command` when given): times in ms,
        sizes in MB (NaN for a format with no file of its own), GFLOPs of one forward pass
        and GFLOP/s at the median latency. A format that fails gives a row with NaN times
        and the error in `note`.

    Raises:
        ValueError: for an unknown format, bad sizes, threads, runs or warmup.

    Example:

    >>> from enet_keras import ENet
    >>> rows = benchmark(ENet(num_classes=3), [(64, 64)], ["keras"], runs=2, warmup=1, verbose=0)
    >>> rows[0]["format"], rows[0]["resolution"]
    ('keras', '64x64')
    """
    from enet_keras.rewrite import fold_batch_norm

    formats = check_formats(formats, FORMATS)
    threads = [int(t) for t in threads]
    if not threads or any(t < 1 for t in threads):
        raise ValueError(f"threads must be integers >= 1. Received: threads={threads!r}")
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0. Received: runs={runs}, warmup={warmup}")
    sizes = [(int(h), int(w)) for h, w in sizes]
    for height, width in sizes:
        check_size(height, f"sizes {height}x{width}: the height")
        check_size(width, f"sizes {height}x{width}: the width")

    temporary = tempfile.TemporaryDirectory(prefix="enet_bench_") if work_dir is None else None
    work = pathlib.Path(temporary.name if temporary else work_dir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        folded = fold_batch_norm(model)
        device, tf_threads = device_name(), tensorflow_threads()
        models, rows = {}, []
        for height, width in sizes:
            resolution = f"{height}x{width}"
            gflops = count_flops(folded, height, width)
            image = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
            for name in formats:
                fmt = REGISTRY[name]
                cls = getattr(runtimes, fmt.predictor)
                key = (name, resolution if fmt.fixed_size else None)
                if key not in models:  # a model of any size is written (and its tf.function kept) once
                    try:
                        models[key] = (_model_for(fmt, folded, work / f"{name}_{resolution}", height, width,
                                                  num_calibration_images), None)
                    except Exception as error:  # noqa: BLE001 - a failing export is a row, not a crash
                        models[key] = ((None, math.nan), error)
                (source, size), failure = models[key]
                note = fmt.note + (f"; calibrated on {num_calibration_images} random images"
                                   if fmt.calibrated(ExportSettings()) else "")
                for n in threads if cls.takes_threads else [tf_threads]:
                    if verbose:
                        print(f"{resolution} {name} {n} threads ...", file=sys.stderr, flush=True)
                    row = {
                        "device": device, "runtime": cls.versions(**fmt.predictor_options), "format": name,
                        "precision": fmt.precision, "resolution": resolution, "threads": n, "batch": 1,
                        "size_mb": size, "runs": runs, "warmup": warmup, "gflops": gflops, "note": note,
                        **_time(fmt, source, failure, n, image, runs, warmup),
                    }
                    row["gflops_per_s"] = gflops / (row["median_ms"] / 1000)
                    if "partitions" in row:
                        row["xnnpack"] = f"{row['delegated_nodes']}/{row['total_nodes']} ({row['partitions']})"
                    if command is not None:
                        row["command"] = command
                    rows.append(row)
        return rows
    finally:
        if temporary is not None:
            temporary.cleanup()


def _model_for(fmt, folded, folder, height, width, num_calibration_images):
    """What the benchmark runs for `fmt` and its size in MB: the folded model itself (its
    `.keras` size), or the file the export registry writes into `folder`."""
    if fmt.export is None:
        path = folder.parent / "enet_folded.keras"
        if not path.exists():
            folded.save(path)
        return folded, disk_size(path) / 1e6
    calibration = None
    if fmt.calibrated(ExportSettings()):
        rng = np.random.default_rng(1)  # random images: enough for latency, not for accuracy
        calibration = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(num_calibration_images)]
    formats = [*fmt.requires, fmt.name]
    summary = export_all(folded, folder, formats, height, width, calibration_images=calibration,
                         num_calibration_images=num_calibration_images, verbose=0)
    written = summary["files"][-1]
    return written["path"], written["size_MB"]


def _time(fmt, source, failure, threads, image, runs, warmup):
    """Times and XNNPACK share of one row; a runtime that cannot load or run `source` gives
    NaN times and the error in the note."""
    try:
        if failure is not None:
            raise failure
        predictor = runtimes.make_predictor(fmt, source, threads)
        median, fastest, slowest = time_ms(predictor.runner(image), runs, warmup)
        times = {"median_ms": median, "min_ms": fastest, "max_ms": slowest}
        if isinstance(predictor, runtimes.TFLitePredictor):
            delegation = xnnpack_delegation(source, threads)
            times.update({k: delegation[k] for k in ("delegated_nodes", "total_nodes", "partitions")})
        return times
    except Exception as error:  # noqa: BLE001 - a failing runtime is a row, not a crash
        message = str(error).splitlines()[0][:200] if str(error) else ""
        return {"median_ms": math.nan, "min_ms": math.nan, "max_ms": math.nan,
                "note": f"failed: {type(error).__name__}: {message}"}


def _cell(value, key):
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.2f}" if key in ("size_mb", "gflops") else f"{value:.1f}"
    return str(value).replace("|", "\\|")


def to_markdown(rows, notes=()):
    """A Markdown table of benchmark rows, followed by `notes` (lines) and the rows' command.

    Args:
        rows: list of dicts from `benchmark`.
        notes: iterable of str. Lines printed under the table. Defaults to none.

    Returns:
        str.
    """
    lines = ["| " + " | ".join(title for _, title in MARKDOWN_COLUMNS) + " |",
             "|" + "---|" * len(MARKDOWN_COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(key, ""), key) for key, _ in MARKDOWN_COLUMNS) + " |")
    lines += [""] + [f"{line}" for line in notes]
    commands = list(dict.fromkeys(row["command"] for row in rows if row.get("command")))
    if commands:
        lines += ["", "Produced by:", ""] + [f"    {c}" for c in commands]
    return "\n".join(lines).rstrip("\n") + "\n"


def to_csv(rows):
    """The rows as CSV text, columns `COLUMNS` (plus `command` when the rows have it)."""
    columns = list(COLUMNS) + (["command"] if any("command" in row for row in rows) else [])
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{row[k]:.6g}" if isinstance(row.get(k), float) else row.get(k, "") for k in columns})
    return out.getvalue()
