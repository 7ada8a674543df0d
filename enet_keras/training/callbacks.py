"""Callbacks that keep a run directory whole across crashes: history, curves, last and best."""

import csv
import io
import math
import os
import re

import keras

from enet_keras.faults import crash_point
from enet_keras.files import atomic_save, atomic_write_bytes, remove_stale_temporaries


def save_model_atomic(model, path):
    """`model.save(path)` through a temporary `.keras` file in the same folder, flushed to disk
    and renamed (`enet_keras.files.atomic_save`)."""
    atomic_save(path, model.save, suffix=".keras")


def read_history(path):
    """Rows of a `history.csv` as a list of dicts with float values (empty if missing).

    Raises:
        ValueError: naming the file, if it is not a history we wrote (each row needs an epoch).
    """
    if not os.path.exists(path):
        return []
    try:
        with open(path, newline="") as f:
            rows = [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
        if any("epoch" not in row for row in rows):
            raise ValueError("a row has no epoch")
    except (ValueError, TypeError, csv.Error, UnicodeDecodeError) as e:
        raise ValueError(
            f"{path} is not a readable training history ({e}). Delete it to resume: the run goes on "
            "from its backup and writes the history from that epoch on"
        ) from None
    return rows


def plot_curves(rows, path, title=""):
    """Writes a PNG of loss and mean IoU per epoch (train and validation) atomically."""
    # A bare Figure draws with Agg and leaves pyplot's backend (a notebook's) alone.
    from matplotlib.figure import Figure

    epochs = [int(r["epoch"]) + 1 for r in rows]
    figure = Figure(figsize=(10, 4))
    axes = figure.subplots(1, 2)
    for axis, metric in zip(axes, ("loss", "mean_iou")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [r.get(prefix + metric, math.nan) for r in rows]
            if not all(math.isnan(v) for v in values):
                axis.plot(epochs, values, style, marker="o", markersize=3, label=(prefix or "train_") + metric)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    atomic_write_bytes(path, buffer.getvalue())


class RunRecorder(keras.callbacks.Callback):
    """Writes `history.csv`, `curves.png`, `last.keras` and `best.keras` after every epoch,
    each atomically, so that a run folder is whole and consistent after a kill at any moment.

    Keras' `CSVLogger` and `ModelCheckpoint` write in place, so a kill during a write leaves a
    broken file, and an epoch repeated after a crash would be logged twice. This callback keeps
    one row per epoch, keyed by epoch number.

    An epoch counts as done once `keras.callbacks.BackupAndRestore` has backed it up; a kill
    before that repeats the epoch. So the recorder works on both sides of the backup:
    `on_epoch_end` (the recorder stands before BackupAndRestore in the callback list) writes the
    history row and saves the models under pending names `.last-<epoch>.keras` and
    `.best-<epoch>.keras`; its `committer` (placed after BackupAndRestore) renames them to
    `last.keras` and `best.keras`. When a run resumes at epoch E, pending models of epoch E - 1
    (backed up, not yet renamed) are put in place and any of epoch E (not backed up) are
    deleted, with the history rows from E on. So `best.keras` always holds the model of the
    best epoch in `history.csv`, and `last.keras` the last one.

    Args:
        run_dir: str. Folder of the outputs.
        monitor: str. Metric that picks the best model. Defaults to `"val_mean_iou"`.
        mode: str. `"max"` or `"min"`. Defaults to `"max"`.
        title: str. Title of the plot.
        barrier: callable or None. Called before an epoch's models are put in place; under
            multi-worker training it returns once every worker has backed the epoch up, and
            raises if a worker was lost, so the models stay pending and the epoch is redone.

    Example:

    >>> recorder = RunRecorder("runs/example/decoder")  # doctest: +SKIP
    >>> callbacks = [recorder, keras.callbacks.BackupAndRestore("runs/example/decoder/backup"),
    ...              recorder.committer]  # doctest: +SKIP
    """

    def __init__(self, run_dir, monitor="val_mean_iou", mode="max", title="", barrier=None):
        super().__init__()
        self.barrier = barrier
        self.run_dir = run_dir
        self.monitor = monitor
        self.mode = mode
        self.title = title
        self.history_path = os.path.join(run_dir, "history.csv")
        self.rows = []
        self.best = None
        self._resumed = False
        self.committer = _Committer(self)

    def _better(self, value):
        if value is None or math.isnan(value):
            return False
        return self.best is None or (value > self.best if self.mode == "max" else value < self.best)

    def _pending(self):
        """{epoch: [(pending path, final name)]} of the models saved but not yet in place."""
        pending = {}
        for name in os.listdir(self.run_dir) if os.path.isdir(self.run_dir) else []:
            match = _PENDING.fullmatch(name)
            if match:
                kind, epoch = match.groups()
                pending.setdefault(int(epoch), []).append((os.path.join(self.run_dir, name), f"{kind}.keras"))
        return pending

    def _resume(self, epoch):
        """Puts the run folder in the state of the end of `epoch - 1`, the last backed-up epoch."""
        self._resumed = True
        for done, items in sorted(self._pending().items()):
            for path, final in items:
                if done == epoch - 1:
                    os.replace(path, os.path.join(self.run_dir, final))
                else:
                    os.remove(path)
        remove_stale_temporaries(self.run_dir)  # left by a kill during a write
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch]
        self.best = None
        for row in self.rows:
            if self._better(row.get(self.monitor)):
                self.best = row[self.monitor]
        if self.rows:
            self._write_history()

    def _write_history(self):
        fields = sorted({k for r in self.rows for k in r}, key=lambda k: (k != "epoch", k))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields)
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: (int(v) if k == "epoch" else v) for k, v in r.items()})
        atomic_write_bytes(self.history_path, text.getvalue().encode())

    def on_train_begin(self, logs=None):
        self.rows = read_history(self.history_path)
        self._resumed = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._resumed:
            # The first epoch of this call is where the run resumes.
            self._resume(epoch)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        row = {"epoch": epoch, **{k: float(v) for k, v in logs.items()}}
        if "learning_rate" not in row and self.model.optimizer is not None:
            row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch] + [row]
        os.makedirs(self.run_dir, exist_ok=True)
        self._write_history()
        save_model_atomic(self.model, os.path.join(self.run_dir, f".last-{epoch}.keras"))
        if self._better(row.get(self.monitor)):
            self.best = row[self.monitor]
            save_model_atomic(self.model, os.path.join(self.run_dir, f".best-{epoch}.keras"))
        crash_point("epoch_recorded", epoch)

    def commit(self, epoch):
        """Puts the models of `epoch` in place; called once the epoch is backed up."""
        crash_point("epoch_backed_up", epoch)
        if self.barrier is not None:
            self.barrier()
        for path, final in self._pending().get(epoch, []):
            os.replace(path, os.path.join(self.run_dir, final))
        plot_curves(self.rows, os.path.join(self.run_dir, "curves.png"), self.title)
        crash_point("epoch_committed", epoch)

    def on_train_end(self, logs=None):
        if not self._resumed:  # no epoch ran: every epoch was already backed up
            self._resume(int(self.rows[-1]["epoch"]) + 1 if self.rows else 0)


_PENDING = re.compile(r"\.(last|best)-(\d+)\.keras")


class _Committer(keras.callbacks.Callback):
    """The half of `RunRecorder` that runs after `BackupAndRestore`."""

    def __init__(self, recorder):
        super().__init__()
        self.recorder = recorder

    def on_epoch_end(self, epoch, logs=None):
        self.recorder.commit(epoch)
