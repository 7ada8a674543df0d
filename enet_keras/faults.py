"""Opt-in crash points, so tests can kill a run at an exact moment instead of at random.

With the environment variable `ENET_KERAS_FAULT` set to `NAME=VALUE` (several separated by
commas; `NAME` alone matches any value), `crash_point(NAME, value)` ends the process there with
`os._exit`, as `kill -9` would: no `finally` block, no `atexit`, no flushing. Unset, it does
nothing. The points are listed in `POINTS`.
"""

import os

ENV = "ENET_KERAS_FAULT"
EXIT_STATUS = 137  # what a shell reports for a process killed by SIGKILL

POINTS = {
    "epoch_recorded": "an epoch's history row and models are written, before its backup (value: epoch)",
    "epoch_backed_up": "BackupAndRestore has saved the epoch, its models are not yet in place (value: epoch)",
    "epoch_committed": "last.keras and best.keras hold the epoch (value: epoch)",
    "stage_trained": "a stage's epochs are done, done.json is not written (value: stage)",
    "stage_done": "a stage's done.json is written (value: stage)",
    "run_best_copied": "the run's best.keras is copied, summary.json is not written",
    "export_written": "one format is written into the export's temporary folder (value: format)",
    "export_before_swap": "every format is written, the folder is not yet swapped in",
}


def crash_point(name, value=None):
    """Ends the process here if `ENET_KERAS_FAULT` names this point (and value)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    if name not in POINTS:
        raise ValueError(f"Unknown crash point {name!r}; known: {sorted(POINTS)}")
    for item in spec.split(","):
        key, sep, wanted = item.strip().partition("=")
        if key == name and (not sep or wanted == str(value)):
            os._exit(EXIT_STATUS)
