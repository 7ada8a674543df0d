"""ENet's training with `model.fit`: the paper's two stages (Paszke et al. 2016, Sec. 5), the
encoder alone on labels at 1/8 resolution and then the whole network with the encoder's
weights, or the whole network alone (`encoder_epochs=0`, PyTorch-ENet's recipe and the camvid
preset of tools/train.py)."""

import contextlib
import dataclasses
import json
import math
import os
import shutil
import time

import keras
import tensorflow as tf

from enet_keras import _internals, data
from enet_keras.faults import crash_point
from enet_keras.files import (atomic_write_bytes, atomic_write_json, exclusive, make_folder,
                              remove_stale_temporaries, resolve_output)
from enet_keras.model import ENet, check_memory, check_model_file, check_size, load_model, transfer_weights
from enet_keras.training.callbacks import RunRecorder, read_history
from enet_keras.training.presets import get_preset
from enet_keras.losses import LovaszSoftmax, WeightedSparseCategoricalCrossentropy
from enet_keras.metrics import PixelAccuracy, mean_iou

STAGES = ("encoder", "decoder", "both")
LOSSES = ("crossentropy", "lovasz")
CLASS_WEIGHTINGS = ("enet", "median", "none")
STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
# Fields of the configuration that may change when a run is resumed.
_RESUMABLE_FIELDS = ("strategy", "verbose", "jit_compile", "stage", "encoder_weights", "validation_freq",
                     "cache", "cache_budget_mb")


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on; written to `<run_dir>/config.json`.

    Defaults are the paper's and the authors' code's (Adam, learning rate 5e-4, weight decay
    2e-4, batch 10, ENet class weighting with c = 1.2 for the encoder stage and 1.02 for the
    whole network), except the learning-rate schedule: polynomial decay to 0 with power 0.9
    over the stage (the authors decayed in steps at fixed epochs; "poly" needs no tuning of step
    epochs when the number of epochs changes, which on a CPU it always does).

    `height`/`width` are the training crop; validation runs at the data's full size
    (`val_height`/`val_width` None) or at a given size.
    """

    dataset: str = "synthetic"
    data_dir: str = None
    run_dir: str = "runs/enet"
    stage: str = "both"
    encoder_weights: str = None
    num_classes: int = None
    height: int = 360
    width: int = 480
    val_height: int = None
    val_width: int = None
    batch_size: int = 10
    encoder_epochs: int = 100
    decoder_epochs: int = 100
    learning_rate: float = 5e-4
    weight_decay: float = 2e-4
    loss: str = "crossentropy"
    class_weighting: str = "enet"
    encoder_c: float = 1.2
    decoder_c: float = 1.02
    activation: str = "prelu"
    strategy: str = "default"
    scale_range: tuple = (0.5, 2.0)
    flip: bool = True
    color_jitter: bool = True
    mixed_precision: bool = False
    jit_compile: bool = False
    seed: int = 0
    steps_per_epoch: int = None
    validation_steps: int = None
    validation_freq: int = 1
    dataset_options: dict = dataclasses.field(default_factory=dict)
    cache: str = "auto"
    cache_budget_mb: int = None
    verbose: int = 1

    @classmethod
    def from_preset(cls, name, **overrides):
        """The configuration of a named recipe (`enet_keras.training.presets`), with overrides.

        Args:
            name: str. One of `list_presets()`: "synthetic", "camvid", "cityscapes".
            **overrides: `TrainConfig` fields to change; `dataset_options` are merged into the
                preset's.

        Returns:
            A `TrainConfig`.

        Raises:
            ValueError: for an unknown preset or field (listing the valid ones).

        Example:

        >>> config = TrainConfig.from_preset("camvid", data_dir="../shared/data/camvid", decoder_epochs=30)
        >>> config.encoder_epochs, config.decoder_epochs, config.scale_range
        (0, 30, (1.0, 1.0))
        """
        values = dict(get_preset(name)["config"])
        options = dict(values.pop("dataset_options", {}))
        options.update(overrides.pop("dataset_options", None) or {})
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(f"Unknown TrainConfig field(s) {unknown}; valid fields: {sorted(fields)}")
        values.update(overrides)
        return cls(**values, dataset_options=options)

    def check(self):
        """Checks every field; run before the run folder is created or changed.

        Raises:
            ValueError: naming the flag and the value received.
        """
        for name in ("learning_rate", "weight_decay", "encoder_c", "decoder_c"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"--{name} must be a finite number. Received: {value!r}")
        for name in ("height", "width", "val_height", "val_width", "batch_size", "encoder_epochs",
                     "decoder_epochs", "validation_freq", "steps_per_epoch", "validation_steps", "seed",
                     "cache_budget_mb"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"--{name} must be an integer. Received: {value!r}")
        if len(self.scale_range) != 2 or not all(
                isinstance(v, (int, float)) and math.isfinite(v) for v in self.scale_range):
            raise ValueError(f"--scale_range must be LOW,HIGH, two finite numbers. Received: {self.scale_range!r}")
        if self.stage not in STAGES:
            raise ValueError(f"--stage must be one of {STAGES}. Received: {self.stage!r}")
        if self.cache not in data.CACHE_MODES:
            raise ValueError(f"--cache must be one of {data.CACHE_MODES}. Received: {self.cache!r}")
        if self.cache_budget_mb is not None and self.cache_budget_mb < 0:
            raise ValueError(f"--cache_budget_mb must be >= 0. Received: {self.cache_budget_mb}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"--strategy must be one of {STRATEGIES}. Received: {self.strategy!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"--loss must be one of {LOSSES}. Received: {self.loss!r}")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise ValueError(f"--class_weighting must be one of {CLASS_WEIGHTINGS}. Received: {self.class_weighting!r}")
        for name in ("height", "width", "val_height", "val_width"):
            if getattr(self, name) is not None:
                check_size(getattr(self, name), f"--{name}")
        for name, least in (("batch_size", 1), ("encoder_epochs", 0), ("decoder_epochs", 1), ("validation_freq", 1)):
            if getattr(self, name) < least:
                raise ValueError(f"--{name} must be >= {least}. Received: {getattr(self, name)}")
        for name in ("steps_per_epoch", "validation_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, or left out for the whole split. Received: {value}")
        if not self.learning_rate > 0:
            raise ValueError(f"--learning_rate must be > 0. Received: {self.learning_rate}")
        if not self.weight_decay >= 0:
            raise ValueError(f"--weight_decay must be >= 0. Received: {self.weight_decay}")
        for name in ("encoder_c", "decoder_c"):
            if self.class_weighting == "enet" and not getattr(self, name) > 1:
                raise ValueError(f"--{name} must be > 1 (weights are 1/ln(c + p)). Received: {getattr(self, name)}")
        if self.stage == "encoder" and self.encoder_epochs == 0:
            raise ValueError("--stage encoder needs --encoder_epochs >= 1 (0 means: no encoder stage)")
        if self.mixed_precision and self.strategy == "multiworker":
            raise ValueError("--mixed_precision does not work with --strategy multiworker: float16 loss "
                             "scaling across workers is untested here (use --strategy mirrored on one machine)")
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"--scale_range must be LOW,HIGH with 0 < LOW <= HIGH. Received: {low},{high}")
        check_memory(self.height, self.width, self.batch_size, training=True, flag="--height/--width")
        if self.val_height and self.val_width:
            check_memory(self.val_height, self.val_width, self.batch_size, flag="--val_height/--val_width")


def _loss(config, weights, ignore_label, num_classes):
    if config.loss == "lovasz":  # IoU weighs the classes itself: no class weights
        return LovaszSoftmax(num_classes, ignore_label, seed=config.seed)
    return WeightedSparseCategoricalCrossentropy(
        None if weights is None else list(map(float, weights)), ignore_label, num_classes
    )


def _strategy(name):
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multiworker needs the TF_CONFIG environment variable (cluster and task)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def _is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    return resolver.task_type in (None, "chief") or (resolver.task_type == "worker" and resolver.task_id == 0)


def _write_dir(run_dir, strategy):
    """Where this process writes: the run folder on the chief, a private folder elsewhere."""
    if _is_chief(strategy):
        return run_dir
    resolver = strategy.cluster_resolver
    return os.path.join(run_dir, "workers", f"{resolver.task_type}_{resolver.task_id}")


def add_weight_decay(model, weight_decay):
    """L2 on every trainable weight (kernels, biases, batch-norm scales and shifts, PReLU
    slopes), as Torch's and PyTorch's Adam `weight_decay` in the authors' and PyTorch-ENet's
    training: gradient += weight_decay * w, i.e. loss += wd/2 * |w|^2. Keras'
    `Adam(weight_decay=...)` is decoupled (AdamW), a different recipe."""
    if weight_decay <= 0:
        return
    for variable in model.trainable_weights:
        variable.regularizer = keras.regularizers.L2(weight_decay / 2)


def training_steps(num_examples, batch_size, limit=None, drop_remainder=False):
    """Steps per epoch: the batches of `num_examples` (a source's count, known without reading
    the data, unlike `tf.data`'s cardinality of a TFRecord or TFDS pipeline), at most `limit`.

    Raises:
        ValueError: if both the number of examples and the limit are unknown.
    """
    if num_examples:
        steps = num_examples // batch_size if drop_remainder else math.ceil(num_examples / batch_size)
        return min(limit, steps) if limit else steps
    if limit:
        return limit
    raise ValueError("The number of training examples is unknown, so an epoch has no length: pass --steps_per_epoch")


def poly_decay(learning_rate, epochs, steps_per_epoch, schedules=None):
    """The learning-rate schedule of every stage and of QAT: polynomial decay (power 0.9) from
    `learning_rate` to 0 over `epochs * steps_per_epoch` steps. `schedules` is the schedules
    module to build it with (Keras 3's by default; QAT passes tf_keras')."""
    schedules = schedules or keras.optimizers.schedules
    return schedules.PolynomialDecay(
        learning_rate, decay_steps=max(1, epochs * steps_per_epoch), end_learning_rate=0.0, power=0.9
    )


def _check_num_classes(config, source):
    if config.num_classes is not None and config.num_classes != source.num_classes:
        raise ValueError(
            f"--num_classes {config.num_classes} disagrees with the data: dataset {source.name!r} "
            f"({source.split} split) has {source.num_classes} classes"
        )


def _check_resume(config, run_dir):
    """Refuses to resume a run folder that holds a run with another configuration, unless
    nothing was trained in it yet (a run stopped by bad data or a bad flag before its first
    epoch): then the new configuration replaces the old."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path) or not _trained_anything(run_dir):
        return
    try:
        with open(path) as f:
            previous = json.load(f)
        if not isinstance(previous, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise ValueError(
            f"{path} is unreadable ({e}); it records the configuration of the run in {run_dir}. "
            "Restore it, or delete it to resume with the arguments given now"
        ) from None
    current = json.loads(json.dumps(dataclasses.asdict(config), default=str))
    changed = sorted(
        k for k in current if k not in _RESUMABLE_FIELDS and k in previous and previous[k] != current[k]
    )
    if changed:
        raise ValueError(
            f"{path} holds a run with another configuration ({', '.join(changed)} differ). "
            "Rerun with the same arguments to resume it, or choose a new --run_dir"
        )


def _trained_anything(run_dir):
    """Whether any stage in `run_dir` has trained an epoch (a history row, a backup, a model)."""
    for stage in ("encoder", "decoder"):
        stage_dir = _stage_dir(run_dir, stage)
        if any(os.path.exists(os.path.join(stage_dir, name))
               for name in ("history.csv", "backup", "last.keras", "done.json")):
            return True
        if os.path.isdir(stage_dir) and any(n.startswith((".last-", ".best-")) for n in os.listdir(stage_dir)):
            return True
    return False


def repair_backup(backup):
    """Makes a `BackupAndRestore` backup loadable again after a kill or a full disk during its
    write: Keras writes its metadata JSON in place, and an empty one stops every resume.

    A metadata file that is not valid JSON is replaced by the previous epoch's backup (weights
    and metadata, kept by `double_checkpoint`), so that epoch is trained again; without one
    (the first epoch) the backup is removed and the stage starts over.

    Args:
        backup: `keras.callbacks.BackupAndRestore`, before `fit`.

    Returns:
        None if the backup was fine or absent, else a sentence saying what was done.
    """
    weights, metadata = _internals.backup_files(backup)
    if not os.path.exists(metadata) or _epoch_of(metadata) is not None:
        return None
    if _epoch_of(metadata + ".bkp") is not None and os.path.exists(weights + ".bkp"):
        for path in (weights, metadata):
            with open(path + ".bkp", "rb") as f:
                atomic_write_bytes(path, f.read())
        return (f"{metadata} was unreadable (a kill or a full disk while it was written); resumed "
                f"from the previous epoch's backup ({metadata}.bkp)")
    shutil.rmtree(backup.backup_dir)
    return f"{metadata} was unreadable and has no previous copy; the stage starts again from epoch 1"


def _epoch_of(metadata_path):
    try:
        with open(metadata_path) as f:
            epoch = json.load(f)["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return epoch if isinstance(epoch, int) else None


def agree_on_backup(backup, strategy):
    """Brings every worker's backup to the same epoch before a multi-worker run resumes.

    Workers train in lock step, but each saves its own backup after the epoch's last
    all-reduce, so a worker killed at that moment is one epoch behind the others. The ones
    ahead go back to their previous epoch's copy (kept by `double_checkpoint`), and that epoch
    is trained again by all. Every worker must call this, in the same order.

    Args:
        backup: `keras.callbacks.BackupAndRestore` of this worker, before `fit`.
        strategy: `tf.distribute.MultiWorkerMirroredStrategy`.

    Returns:
        None if this worker's backup was kept, else a sentence saying what was done.

    Raises:
        ValueError: if the backups are further apart than one epoch (not one run's folders).
    """
    weights, metadata = _internals.backup_files(backup)
    mine = _epoch_of(metadata) if os.path.exists(weights) else None
    mine = 0 if mine is None else mine  # epochs this worker finished
    lowest = _lowest(strategy, mine)
    if mine == lowest:
        return None
    if mine - lowest == 1 and lowest == 0:
        shutil.rmtree(backup.backup_dir)
        return "another worker had not finished the first epoch; this worker starts the stage again with it"
    if mine - lowest == 1 and _epoch_of(metadata + ".bkp") == lowest and os.path.exists(weights + ".bkp"):
        for path in (weights, metadata):
            with open(path + ".bkp", "rb") as f:
                atomic_write_bytes(path, f.read())
        return f"another worker had finished {lowest} epochs, this one {mine}: epoch {mine} is trained again"
    raise ValueError(
        f"{backup.backup_dir} holds {mine} finished epochs and another worker's backup {lowest}: "
        "the workers' run folders are not from one run. Give every worker the same --run_dir of one run"
    )


def _lowest(strategy, value):
    """The smallest of `value` over all workers (a collective: every worker calls it)."""
    per_replica = strategy.run(lambda: tf.constant([value], tf.int64))
    return int(tf.reduce_min(strategy.gather(per_replica, axis=0)))


def _stage_dir(run_dir, stage):
    return os.path.join(run_dir, stage)


def _done(stage_dir, epochs):
    """Whether a stage finished: its done.json, or one history row per epoch with the backup
    already removed by BackupAndRestore at the end (a kill just before done.json was written;
    it is written now)."""
    path = os.path.join(stage_dir, "done.json")
    if os.path.exists(path):
        return True
    rows = read_history(os.path.join(stage_dir, "history.csv"))
    finished = [int(r["epoch"]) for r in rows] == list(range(epochs)) \
        and os.path.exists(os.path.join(stage_dir, "last.keras")) \
        and not os.path.exists(os.path.join(stage_dir, "backup"))
    if finished:
        atomic_write_json(path, {"epochs": epochs, "finished": time.time()})
    return finished


def train(config):
    """Runs the training stages of `config` and returns a summary dict.

    Stage `encoder` trains `ENet(encoder_only=True)` on labels downsampled by 8 (nearest
    neighbour, as in the authors' code) and writes `<run_dir>/encoder/`; stage `decoder`
    starts the full ENet from the encoder's best weights (by layer name), or from random
    weights with `encoder_epochs=0`, and writes `<run_dir>/decoder/`, whose best model is copied
    to `<run_dir>/best.keras`. Each stage folder holds `best.keras`, `last.keras`,
    `history.csv`, `curves.png` and TensorBoard `logs/`.

    A run killed at any moment (SIGKILL included) continues from its last finished epoch when
    the same call is made again: `keras.callbacks.BackupAndRestore` keeps the weights, the
    optimizer and the epoch, `RunRecorder` keeps the folder consistent with it; finished stages
    are skipped.

    Args:
        config: `TrainConfig`.

    Returns:
        A dict with the stages run, their best validation mIoU and the paths written.

    Raises:
        ValueError: for a bad configuration, data that disagree with it, or a decoder stage
            without encoder weights.

    Example:

    >>> summary = train(TrainConfig(dataset="synthetic", height=64, width=64, encoder_epochs=1,
    ...                             decoder_epochs=1, dataset_options={"num_examples": 4}))
    """
    config.check()
    train_source = data.get_source(config.dataset, "train", config.data_dir, **config.dataset_options)
    val_source = data.get_source(config.dataset, "val", config.data_dir, **config.dataset_options)
    _check_num_classes(config, train_source)
    encoder_dir = _stage_dir(config.run_dir, "encoder")
    # With --encoder_epochs 0 there is no encoder stage: the whole network starts from random
    # weights (PyTorch-ENet's one-stage recipe) or from --encoder_weights.
    encoder_best = config.encoder_weights or (
        os.path.join(encoder_dir, "best.keras") if config.encoder_epochs else None
    )
    if config.stage == "decoder" and encoder_best is not None and not os.path.exists(encoder_best):
        raise ValueError(
            f"--stage decoder starts from trained encoder weights, but {encoder_best} does not exist. "
            "Train the encoder first (--stage encoder) or pass --encoder_weights PATH.keras"
        )
    if config.encoder_weights:
        check_model_file(config.encoder_weights, "--encoder_weights")
    run_dir = resolve_output(config.run_dir, "--run_dir")
    if os.path.lexists(run_dir) and not os.path.isdir(run_dir):
        raise ValueError(f"--run_dir {config.run_dir} is a file, not a folder: choose a folder")
    _check_resume(config, run_dir)

    keras.utils.set_random_seed(config.seed)
    strategy = _strategy(config.strategy)
    out_dir = _write_dir(config.run_dir, strategy)
    with exclusive(out_dir, f"--run_dir {out_dir}"):
        _check_resume(config, out_dir)  # again, now that no other process can write it
        make_folder(out_dir)
        return _train_locked(config, strategy, out_dir, train_source, val_source, encoder_best)


def _train_locked(config, strategy, out_dir, train_source, val_source, encoder_best):
    remove_stale_temporaries(out_dir, names=("config.json", "summary.json", "best.keras"))
    atomic_write_json(os.path.join(out_dir, "config.json"), dataclasses.asdict(config))

    summary = {"run_dir": config.run_dir, "stages": {}}
    stages = ["encoder", "decoder"] if config.stage == "both" else [config.stage]
    if config.encoder_epochs == 0:
        stages = ["decoder"]
    for stage in stages:
        stage_dir = _stage_dir(out_dir, stage)
        if _done(stage_dir, config.encoder_epochs if stage == "encoder" else config.decoder_epochs):
            if config.verbose:
                print(f"Stage {stage}: already finished in {stage_dir}, skipped.")
        else:
            init = encoder_best if stage == "decoder" else None
            _run_stage(config, stage, strategy, train_source, val_source, stage_dir, init)
        rows = read_history(os.path.join(stage_dir, "history.csv"))
        summary["stages"][stage] = {"dir": stage_dir, "epochs": len(rows), "best_val_mean_iou": best_val_mean_iou(rows)}
    if "decoder" in stages and _is_chief(strategy):
        best_path = os.path.join(out_dir, "decoder", "best.keras")
        if os.path.exists(best_path):
            with open(best_path, "rb") as f:
                atomic_write_bytes(os.path.join(out_dir, "best.keras"), f.read())
            summary["best_model"] = os.path.join(out_dir, "best.keras")
            crash_point("run_best_copied")
    atomic_write_json(os.path.join(out_dir, "summary.json"), summary)
    return summary


@contextlib.contextmanager
def _dtype_policy(mixed_precision):
    """mixed_float16 while a stage builds and trains, then the caller's policy again."""
    previous = keras.mixed_precision.global_policy()
    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _run_stage(config, stage, strategy, train_source, val_source, stage_dir, init):
    with _dtype_policy(config.mixed_precision):
        _train_stage(config, stage, strategy, train_source, val_source, stage_dir, init)


def best_val_mean_iou(rows):
    """The best val mIoU of `read_history` rows, NaN if none was validated. Epochs that
    `validation_freq` skips have no value (a NaN among them would make `max` order-dependent)."""
    return max((row["val_mean_iou"] for row in rows if "val_mean_iou" in row), default=math.nan)


def _train_stage(config, stage, strategy, train_source, val_source, stage_dir, init):
    encoder = stage == "encoder"
    downsample = 8 if encoder else 1
    epochs = config.encoder_epochs if encoder else config.decoder_epochs
    batch = config.batch_size
    # Under this process's own folder (a worker's, with --strategy multiworker): no two writers.
    cache = {"cache": config.cache, "cache_dir": os.path.join(os.path.dirname(stage_dir), "cache"),
             "cache_budget": None if config.cache_budget_mb is None else config.cache_budget_mb * 2**20}
    train_ds = data.make_pipeline(
        train_source, batch, (config.height, config.width), training=True, label_downsample=downsample,
        seed=config.seed, drop_remainder=config.strategy != "default",
        scale_range=tuple(config.scale_range), flip=config.flip, color_jitter=config.color_jitter, **cache,
    )
    val_size = (config.val_height, config.val_width) if config.val_height and config.val_width else None
    val_ds = data.make_pipeline(val_source, batch, val_size, training=False, label_downsample=downsample,
                                pad_to_multiple=8, **cache)
    steps = training_steps(train_source.num_examples, batch, config.steps_per_epoch,
                           drop_remainder=config.strategy != "default")
    if config.steps_per_epoch:
        train_ds = train_ds.repeat()
    weights = None
    if config.class_weighting != "none" and config.loss == "crossentropy":
        c = config.encoder_c if encoder else config.decoder_c
        weights = data.class_weights(
            train_source, method=config.class_weighting, c=c, cache_dir=config.run_dir
        )
    num_classes = train_source.num_classes

    with strategy.scope():
        model = ENet(num_classes, encoder_only=encoder, activation=config.activation,
                     name="enet_encoder" if encoder else "enet")
        if init is not None:
            transfer_weights(load_model(init, flag="--encoder_weights"), model)
        if config.strategy in ("mirrored", "multiworker"):
            # Batch statistics over the global batch, and identical moving statistics on every
            # replica and worker.
            for layer in model.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized = True
        add_weight_decay(model, config.weight_decay)
        schedule = poly_decay(config.learning_rate, epochs, steps)
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss=_loss(config, weights, train_source.ignore_label, num_classes),
            metrics=[mean_iou(num_classes, train_source.ignore_label), PixelAccuracy(train_source.ignore_label)],
            jit_compile=config.jit_compile,
        )
        # Without a distribution strategy Keras builds the optimizer inside the first traced
        # step; TensorFlow then traces the step again on the next call, because the first trace
        # created variables (about 20 s more at each stage's start for ENet on 2 cores).
        model.optimizer.build(model.trainable_variables)
    multiworker = config.strategy == "multiworker"
    # An epoch is done once BackupAndRestore has saved it: the recorder writes the epoch's files
    # before that and puts its models in place after (see RunRecorder); with several workers,
    # only once every worker has saved it.
    recorder = RunRecorder(stage_dir, title=f"ENet {stage} stage on {config.dataset}",
                           barrier=(lambda: _lowest(strategy, 0)) if multiworker else None)
    backup = keras.callbacks.BackupAndRestore(os.path.join(stage_dir, "backup"), double_checkpoint=True)
    for note in (repair_backup(backup), multiworker and agree_on_backup(backup, strategy)):
        if note:
            print(f"Note: {note}.", flush=True)
    callbacks = [recorder, backup, recorder.committer, keras.callbacks.TensorBoard(os.path.join(stage_dir, "logs"))]
    # Keras 3's model.fit needs two mends under MultiWorkerMirroredStrategy (keras-team/keras#20585).
    with _internals.fit_under_multi_worker(model) if multiworker else contextlib.nullcontext():
        try:
            model.fit(
                train_ds, validation_data=val_ds, epochs=epochs, steps_per_epoch=config.steps_per_epoch,
                validation_steps=config.validation_steps, validation_freq=config.validation_freq,
                callbacks=callbacks, verbose=config.verbose, shuffle=False,  # the pipeline shuffles
            )
        except (tf.errors.UnavailableError, tf.errors.AbortedError):
            if multiworker:
                print("A worker was lost. Start every worker again with the same command: the run resumes "
                      "from the last epoch that all of them finished.", flush=True)
            raise
    crash_point("stage_trained", stage)
    atomic_write_json(os.path.join(stage_dir, "done.json"), {"epochs": epochs, "finished": time.time()})
    crash_point("stage_done", stage)
