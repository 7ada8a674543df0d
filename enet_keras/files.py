"""Our outputs, safely: paths resolved and checked before a write, one writer at a time, and
files and folders that appear whole or not at all."""

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
import time

from enet_tflite.files import atomic_file


def resolve_output(path, flag):
    """The absolute, symlink-free path of an output, checked to be a path at all.

    An empty path would otherwise become the current folder (`os.path.abspath("")`), and
    `dir/missing/..` is `dir`: both must be checked as what they resolve to.

    Args:
        path: str or PathLike. The path the user gave.
        flag: str. The flag or argument that gave it, for messages.

    Returns:
        The resolved path (`os.path.realpath`).

    Raises:
        ValueError: naming `flag` if `path` is None, empty or blank.
    """
    if path is None or not os.fspath(path).strip():
        raise ValueError(f"{flag} is empty: give the path of the output (an unset shell variable?). "
                         f"Received: {flag} {path!r}")
    return os.path.realpath(os.fspath(path))


def check_file_name(name, flag):
    """Raises ValueError unless `name` is a plain file name: no folder part, not `.` or `..`."""
    if not isinstance(name, str) or not name.strip() or name in (".", "..") \
            or os.sep in name or (os.altsep and os.altsep in name) or name.startswith("."):
        raise ValueError(f"{flag} must be a plain file name (no folder, not hidden). Received: {flag} {name!r}")


class InUseError(OSError):
    """Another process holds the lock of a run or export folder."""


@contextlib.contextmanager
def exclusive(path, what=None):
    """Holds an advisory lock on `path` (a run or export folder) for the `with` block.

    The lock is `fcntl.flock` on the hidden file `.<name>.lock` beside `path` (beside, not
    inside, because an export folder is swapped whole), which holds the owner's process id and
    start time for the message a second process gets. The file is removed on release; a kill
    leaves it behind, unlocked, and the next process takes it. The lock is released by the
    kernel when the process dies, so a crash never leaves the folder locked.

    Args:
        path: str or PathLike. The folder to lock (need not exist).
        what: str or None. How to name the folder in the message. Defaults to `path`.

    Raises:
        InUseError: `"<what> is in use by process <pid> (started <time>)"` if another process
            holds the lock.
    """
    path = os.path.realpath(os.fspath(path))
    parent, name = os.path.split(path)
    make_folder(parent)
    lock_path = os.path.join(parent, f".{name}.lock")
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with os.fdopen(fd) as f:
                owner = f.read().strip() or "unknown"
            raise InUseError(f"{what or path} is in use by process {owner}") from None
        # The holder before us may have removed the file after we opened it: lock the file that
        # is at the path now.
        try:
            if os.path.samestat(os.fstat(fd), os.stat(lock_path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} (started {time.strftime('%Y-%m-%d %H:%M:%S')})".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(lock_path)
        os.close(fd)


def check_writable(path, flag):
    """Checks, before long work, that the file `path` can be written: its nearest existing
    folder is writable (the rest is created) and `path` is not a folder.

    Raises:
        ValueError: naming `flag` if `path` is a folder.
        OSError: naming `flag` and the folder if it cannot be written.
    """
    path = os.path.realpath(os.fspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path} is a folder; give a file path")
    folder = os.path.dirname(path)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, f"{flag} {path}: cannot write in {folder}")


def make_folder(path):
    """`os.makedirs(path, exist_ok=True)` with an error that names the path."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise OSError(e.errno, f"cannot create folder {path}: {e.strerror or e}") from None


def atomic_write_bytes(path, data):
    """Writes `data` to `path` through a temporary file in the same folder, flushed to disk,
    then renamed (`enet_tflite.atomic_file`, the runtime's writer: one implementation).

    Args:
        path: str or PathLike. Destination; its folder is created if missing.
        data: bytes.

    Raises:
        OSError: naming `path`, if it cannot be written (a full disk, a read-only folder, ...).
    """
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_save(path, write)


def atomic_save(path, save, suffix=""):
    """Calls `save(temporary_path)`, then puts the file in place whole: the temporary sits in
    the folder of `path` (created if missing) and is flushed to disk and renamed.

    Args:
        path: str or PathLike. Destination.
        save: function of one path that writes the file, e.g. `model.save`.
        suffix: str. The temporary's extension, for writers that check it (`".keras"`).
            Defaults to "".

    Raises:
        OSError: naming `path`, if it cannot be written (a full disk, a read-only folder, ...).
    """
    path = os.fspath(path)
    make_folder(os.path.dirname(os.path.abspath(path)))
    try:
        with atomic_file(path, suffix) as tmp:
            save(tmp)
    except OSError as e:
        if isinstance(e, InUseError):
            raise
        raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from None


def atomic_write_json(path, obj):
    """Writes `obj` as indented JSON to `path` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def _normal_mode(path):
    """The mode a plain mkdir() would give a folder (mkdtemp makes it private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)


@contextlib.contextmanager
def atomic_directory(path, owned=None, flag="path"):
    """Yields a temporary folder beside `path`; on success it replaces `path` whole.

    An existing `path` is only removed once the new folder is complete, so a failed export
    leaves the old one (or nothing), never a half-written model. It is replaced only if it is
    empty or `owned(path)` says we wrote it: a user's folder is never moved or deleted. The
    whole write holds the lock of `path` (`exclusive`), so temporary folders of the same `path`
    left by a killed process can be removed first. The folder gets the usual permissions.

    Args:
        path: str or PathLike. The destination folder (resolved with `resolve_output`).
        owned: callable or None. `owned(path)` is True for an existing folder that may be
            replaced. None replaces only an empty folder. Defaults to None.
        flag: str. The flag or argument that gave `path`, for messages. Defaults to "path".

    Raises:
        ValueError: naming `flag`, for an empty path, a file, or a folder that is not ours.
        InUseError: if another process writes `path`.
    """
    path = resolve_output(path, flag)
    parent, name = os.path.split(path)
    with exclusive(path, f"{flag} {path}"):
        check_replaceable(path, owned, flag)
        remove_stale_temporaries(parent, names=(name,))
        with _swap_in(path) as tmp:
            yield tmp


def check_replaceable(path, owned=None, flag="path"):
    """Raises ValueError naming `flag` unless `path` is new, an empty folder, or a folder that
    `owned(path)` accepts."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ValueError(f"{flag} {path} is a file, not a folder: choose a folder")
    if os.path.isdir(path) and os.listdir(path) and not (owned and owned(path)):
        raise ValueError(f"{flag} {path} is a folder that holds files we did not write; it would be "
                         "replaced whole, so choose a new or empty folder")


@contextlib.contextmanager
def _swap_in(path):
    parent, name = os.path.split(path)
    try:
        tmp = tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".tmp")
    except OSError as e:
        raise OSError(e.errno, f"cannot write in {parent}: {e.strerror or e}") from None
    try:
        yield tmp
        _normal_mode(tmp)
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
    `.<name>.*.tmp.keras` files of model saves. Call it only where no other process is writing
    the same names: hold the folder's lock (`exclusive`).

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
