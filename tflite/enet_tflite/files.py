"""Image files in and out: RGB images read with clear errors, PNGs written whole or not at all
(`atomic_file`, the one atomic writer that `enet_keras.files` builds on too)."""

import contextlib
import os
import secrets

from PIL import Image


def one_line(error):
    """An exception's message on one line (LiteRT's messages can span several)."""
    return " ".join(str(error).split()) or type(error).__name__


@contextlib.contextmanager
def atomic_file(path, suffix=""):
    """Yields a new hidden temporary path beside `path`; when the block ends it is flushed to
    disk and renamed over `path`, so `path` never holds half a file. On an error it is removed.

    The temporary is `.<name>.<random>.tmp<suffix>` (a writer that needs an extension, such as
    `model.save`, gets it from `suffix`), and the file ends with the usual mode (0o666 less the
    umask), as `open(path, "wb")` would give it; `tempfile.mkstemp` would leave it 0o600.

    Args:
        path: str or PathLike. The destination; its folder must exist.
        suffix: str. Appended to the temporary's name. Defaults to "".

    Raises:
        FileNotFoundError: if the folder of `path` does not exist.
        IsADirectoryError: if `path` is a folder.

    Example:

    >>> with atomic_file("out.txt") as tmp:  # doctest: +SKIP
    ...     open(tmp, "w").write("whole or not at all")
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Cannot write {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"Cannot write {path}: it is a folder; expected a file name")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp{suffix}")
        try:
            os.close(os.open(tmp, flags, 0o666))
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"Cannot create a temporary file for {name} in {folder}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # a writer that replaced the file keeps the mode it was given
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def save_png(image, path):
    """Saves a PIL image as PNG, whole or not at all (`atomic_file`).

    Args:
        image: PIL image.
        path: str. Where to write; its folder must exist.

    Returns:
        `path`.

    Raises:
        FileNotFoundError: if the folder of `path` does not exist.
        IsADirectoryError: if `path` is a folder.
    """
    with atomic_file(path) as tmp:
        image.save(tmp, format="PNG")
    return os.fspath(path)


def load_image(path, convert_rgb=False):
    """Reads an image file as an RGB PIL image.

    Args:
        path: str.
        convert_rgb: bool. Convert greyscale, palette or RGBA images to RGB instead of raising.
            Defaults to False.

    Raises:
        FileNotFoundError: if `path` does not exist or is a folder.
        ValueError: if the file is not an image Pillow can read (not an image, truncated), or
            the image is not RGB and `convert_rgb` is False.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No image at {path}" + (": it is a folder" if os.path.isdir(path) else ""))
    try:
        with Image.open(path) as image:
            if image.mode != "RGB" and not convert_rgb:
                raise ValueError(
                    f"{path} is a {image.mode!r} image, not RGB; pass --convert_rgb to convert it "
                    "(convert_rgb=True)"
                )
            return image.convert("RGB")  # decodes the pixels: a truncated file fails here
    except (OSError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        # Pillow raises UnidentifiedImageError (an OSError) for a file that is not an image,
        # OSError or SyntaxError for a truncated or corrupt one.
        raise ValueError(
            f"{path} is not a readable image ({one_line(error)}); expected an RGB PNG or JPEG"
        ) from error
