"""Atomic file and folder writes: outputs appear whole or not at all."""

import contextlib
import json
import os
import shutil
import tempfile


def atomic_write_bytes(path, data):
    """Writes `data` to `path` through a temporary file in the same folder, then renames it.

    Args:
        path: str or PathLike. Destination; its folder is created if missing.
        data: bytes.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _normal_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def atomic_write_json(path, obj):
    """Writes `obj` as indented JSON to `path` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def _normal_mode(path, directory=False):
    """The mode a plain open() or mkdir() would give (mkstemp and mkdtemp make them private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


@contextlib.contextmanager
def atomic_directory(path):
    """Yields a temporary folder beside `path`; on success it replaces `path` whole.

    An existing `path` is only removed once the new folder is complete, so a failed export
    leaves the old one (or nothing), never a half-written model. Temporary folders of the same
    `path` left by a killed process are removed first. The folder gets the usual permissions.

    Args:
        path: str or PathLike. The destination folder.
    """
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    remove_stale_temporaries(parent, names=(name,))
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".tmp")
    try:
        yield tmp
        _normal_mode(tmp, directory=True)
        if os.path.exists(path):
            old = tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".old")
            os.rmdir(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temporaries(folder, names=None):
    """Deletes what a killed write left in `folder`: the hidden `.<name>.*.tmp` files and
    folders of `atomic_write_bytes` and `atomic_directory`, their `.old` folders, and the
    `.<name>.tmp.keras` files of model saves. Call it only where no other process is writing
    the same names.

    Args:
        folder: str or PathLike. A missing folder is fine.
        names: iterable of str or None. Only the temporaries of these file or folder names;
            None for all. Defaults to None.

    Returns:
        The list of paths removed.
    """
    folder = os.fspath(folder)
    removed = []
    if not os.path.isdir(folder):
        return removed
    prefixes = tuple(f".{n}." for n in names) if names is not None else (".",)
    for entry in os.listdir(folder):
        if entry.startswith(prefixes) and entry.endswith((".tmp", ".old", ".tmp.keras")):
            path = os.path.join(folder, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
            removed.append(path)
    return removed


def disk_size(path):
    """Bytes of a file, or of all files under a folder."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
