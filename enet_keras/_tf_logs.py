"""Native log lines of TensorFlow and its converter, filtered as `TF_CPP_MIN_LOG_LEVEL` asks.

TensorFlow 2.21 prints its first C++ log lines (the oneDNN notice, "Could not find cuda
drivers") through absl before absl's logging is initialised, and those lines ignore
`TF_CPP_MIN_LOG_LEVEL`; the TFLite quantizer prints a debug line of its own. `filtered_stderr`
captures the process's stderr (file descriptor 2, where C++ writes) around such a call and
passes on only the lines that the level lets through, so the variable works as TensorFlow
documents it. This module imports nothing heavy itself.
"""

import contextlib
import os
import re
import sys
import tempfile

_SEVERITY = re.compile(r"^([IWEF])\d{4} ")
_LEVELS = {"I": 0, "W": 1, "E": 2, "F": 3}
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def min_level():
    """`TF_CPP_MIN_LOG_LEVEL` as an int (0 when unset or not a number)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def _kept(lines, level, drop):
    """The lines at or above `level` that match no `drop` pattern; a line without a severity
    prefix continues the one before."""
    kept, shown = [], True
    for line in lines:
        if line.strip() == _ABSL_NOTICE or any(re.match(pattern, line) for pattern in drop):
            continue  # this line only: what follows is judged on its own
        match = _SEVERITY.match(line)
        if match:
            shown = _LEVELS[match.group(1)] >= level
        if shown:
            kept.append(line)
    return kept


@contextlib.contextmanager
def filtered_stderr(drop=()):
    """With `TF_CPP_MIN_LOG_LEVEL` >= 1, captures file descriptor 2 while the block runs and then
    writes back the lines below that level removed, and the lines matching a `drop` regex
    (informational prints that have no level). Everything else, Python's own output included,
    is passed on. With the level at 0 it does nothing."""
    level = min_level()
    if level <= 0:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(_kept(lines, level, drop)))
            sys.stderr.flush()


def import_tensorflow():
    """Imports TensorFlow once, its start-up lines filtered by `filtered_stderr`."""
    if "tensorflow" in sys.modules:
        return
    with filtered_stderr():
        import tensorflow  # noqa: F401
