"""A callback that keeps a run directory whole across crashes: history, curves, last and best."""

import csv
import io
import math
import os

import keras

from enet_keras.files import atomic_write_bytes


def save_model_atomic(model, path):
    """`model.save(path)` through a temporary `.keras` file in the same folder, then a rename."""
    path = os.fspath(path)
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def read_history(path):
    """Rows of a `history.csv` as a list of dicts with float values (empty if missing)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def plot_curves(rows, path, title=""):
    """Writes a PNG of loss and mean IoU per epoch (train and validation) atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(r["epoch"]) + 1 for r in rows]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
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
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


class RunRecorder(keras.callbacks.Callback):
    """Writes `history.csv`, `curves.png`, `last.keras` and `best.keras` after every epoch,
    each atomically, and picks up the earlier epochs' history when a run resumes.

    Keras' `CSVLogger` and `ModelCheckpoint` write in place, so a kill during a write leaves a
    broken file, and an epoch repeated after a crash would be logged twice. This callback keeps
    one row per epoch, keyed by epoch number. Place it before `keras.callbacks.BackupAndRestore`,
    so that an epoch is recorded before it counts as done.

    Args:
        run_dir: str. Folder of the outputs.
        monitor: str. Metric that picks the best model. Defaults to `"val_mean_iou"`.
        mode: str. `"max"` or `"min"`. Defaults to `"max"`.
        title: str. Title of the plot.
    """

    def __init__(self, run_dir, monitor="val_mean_iou", mode="max", title=""):
        super().__init__()
        self.run_dir = run_dir
        self.monitor = monitor
        self.mode = mode
        self.title = title
        self.history_path = os.path.join(run_dir, "history.csv")
        self.rows = []
        self.best = None

    def _better(self, value):
        if value is None or math.isnan(value):
            return False
        return self.best is None or (value > self.best if self.mode == "max" else value < self.best)

    def on_train_begin(self, logs=None):
        self.rows = read_history(self.history_path)
        self._resumed = False

    def on_epoch_begin(self, epoch, logs=None):
        if self._resumed:
            return
        # The first epoch of this call is where the run resumes: rows from later epochs belong
        # to an epoch that did not finish its backup and runs again.
        self._resumed = True
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch]
        self.best = None
        for row in self.rows:
            if self._better(row.get(self.monitor)):
                self.best = row[self.monitor]

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        row = {"epoch": epoch, **{k: float(v) for k, v in logs.items()}}
        if "learning_rate" not in row and self.model.optimizer is not None:
            row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch] + [row]
        os.makedirs(self.run_dir, exist_ok=True)
        save_model_atomic(self.model, os.path.join(self.run_dir, "last.keras"))
        if self._better(row.get(self.monitor)):
            self.best = row[self.monitor]
            save_model_atomic(self.model, os.path.join(self.run_dir, "best.keras"))
        fields = sorted({k for r in self.rows for k in r}, key=lambda k: (k != "epoch", k))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields)
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: (int(v) if k == "epoch" else v) for k, v in r.items()})
        atomic_write_bytes(self.history_path, text.getvalue().encode())
        plot_curves(self.rows, os.path.join(self.run_dir, "curves.png"), self.title)
