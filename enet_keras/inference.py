"""Segmenting images, folders and videos into files (class-id PNGs and overlays) with any
runtime's `Predictor` (`enet_keras.runtimes`). The inference-optimised model itself (batch
normalization folded) is `enet_keras.rewrite.fold_batch_norm`."""

import os

import keras
import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")


def list_inputs(path):
    """The image files of a folder (sorted), or `[path]` for an image or video file.

    Raises:
        FileNotFoundError: if `path` does not exist or a folder holds no images.
        ValueError: for a file that is neither an image nor a video (by extension).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        files = sorted(
            os.path.join(path, f) for f in os.listdir(path) if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
        )
        if not files:
            raise FileNotFoundError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in the folder {path}")
        return files
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No image, folder or video at {path}")
    extension = os.path.splitext(path)[1].lower()
    if extension not in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS:
        raise ValueError(
            f"{path}: expected an image ({', '.join(IMAGE_EXTENSIONS)}), a video "
            f"({', '.join(VIDEO_EXTENSIONS)}) or a folder of images. Received extension {extension!r}"
        )
    return [path]


def read_image(path):
    """An image file as a uint8 RGB array (H, W, 3).

    Raises:
        ValueError: if the file cannot be read as an image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"Cannot read the image {path}: {error}") from error


def read_video_frames(path, every=1):
    """The frames of a video as uint8 RGB arrays, read with OpenCV.

    The video is opened (and OpenCV imported) when this is called, so a missing OpenCV or an
    unreadable file fails at once, before any frame is asked for.

    Args:
        path: str. The video file.
        every: int. Keep every `every`-th frame. Defaults to 1.

    Returns:
        An iterator of (frame index, uint8 array (H, W, 3)).

    Raises:
        ImportError: if OpenCV is not installed.
        ValueError: if the file cannot be opened or holds no frame (the latter when iterating).
    """
    try:
        import cv2
    except ImportError as error:
        raise ImportError(
            f'Reading the video {path} needs OpenCV: pip install "enet_keras[video]"'
        ) from error
    capture = cv2.VideoCapture(os.fspath(path))
    if not capture.isOpened():
        capture.release()
        raise ValueError(f"Cannot read the video {path}: OpenCV could not open it")

    def frames():
        try:
            index = 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                if index % every == 0:
                    yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                index += 1
            if index == 0:
                raise ValueError(f"Cannot read the video {path}: no frames could be decoded")
        finally:
            capture.release()

    return frames()


def check_inputs(path):
    """`list_inputs(path)`, after checking that every video among them can be opened, so bad
    inputs fail before a model is loaded.

    Raises:
        As `list_inputs` and `read_video_frames`.
    """
    inputs = list_inputs(path)
    for item in inputs:
        if os.path.splitext(item)[1].lower() in VIDEO_EXTENSIONS:
            read_video_frames(item).close()
    return inputs


def segment(predictor, image):
    """Class ids for one image of any size.

    Models of dynamic size run at the image's size; fixed-size models (TFLite) get the image
    resized (bilinear) to their input size and their class ids resized back (nearest).

    Args:
        predictor: `enet_keras.runtimes.Predictor`.
        image: uint8 array (H, W, 3).

    Returns:
        int32 array (H, W).
    """
    from PIL import Image

    image = np.asarray(image)
    if predictor.input_size is None or tuple(predictor.input_size) == image.shape[:2]:
        return predictor.predict(image[None])[0]
    height, width = predictor.input_size
    resized = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
    ids = predictor.predict(resized[None])[0]
    back = Image.fromarray(ids.astype(np.uint8 if predictor.num_classes <= 256 else np.int32))
    return np.asarray(back.resize((image.shape[1], image.shape[0]), Image.NEAREST)).astype(np.int32)


def predict_to_files(predictor, input_path, output_dir, palette, class_names, alpha=0.5, every=1, verbose=1):
    """Segments an image, a folder of images or a video and writes, per image (or frame):

    - `<name>_class_ids.png`: the class ids as an 8-bit greyscale PNG of the input's size;
    - `<name>_overlay.png`: the input, and the colour overlay beside it, with a legend of the
      classes present.

    Args:
        predictor: `enet_keras.runtimes.Predictor`.
        input_path: str. An image, a folder of images or a video (.mp4, .avi, .mov, .mkv).
        output_dir: str. Output folder (created).
        palette: sequence of (r, g, b), at least one per class.
        class_names: sequence of str, one per class.
        alpha: float. Overlay opacity. Defaults to 0.5.
        every: int. For videos, segment every `every`-th frame. Defaults to 1.
        verbose: int. 1 shows a progress bar. Defaults to 1.

    Returns:
        A list of the files written.

    Raises:
        FileNotFoundError, ValueError, ImportError: see `list_inputs`, `read_image` and
            `read_video_frames`; ValueError if the palette has fewer colours than classes.
    """
    from enet_keras import visualize
    from enet_keras.files import atomic_write_bytes

    if len(palette) < predictor.num_classes:
        raise ValueError(
            f"The palette has {len(palette)} colours but the model {predictor.path} predicts "
            f"{predictor.num_classes} classes: choose a palette with at least {predictor.num_classes}"
        )
    inputs = list_inputs(input_path)

    def frames():
        for path in inputs:
            stem = os.path.splitext(os.path.basename(path))[0]
            if os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS:
                for index, frame in read_video_frames(path, every):
                    yield f"{stem}_frame{index:06d}", frame
            else:
                yield stem, read_image(path)

    has_video = any(os.path.splitext(p)[1].lower() in VIDEO_EXTENSIONS for p in inputs)
    total = None if has_video else len(inputs)
    progress = keras.utils.Progbar(total, unit_name="image", verbose=verbose) if verbose else None
    written = []
    for count, (name, image) in enumerate(frames(), start=1):
        ids = segment(predictor, image)
        ids_path = os.path.join(output_dir, f"{name}_class_ids.png")
        atomic_write_bytes(ids_path, visualize.png_bytes(ids.astype(np.uint8)))
        overlaid = visualize.overlay(image, ids, palette, alpha)
        present = sorted(set(np.unique(ids).tolist()))
        legend = [(class_names[i], tuple(palette[i])) for i in present if i < len(class_names)]
        overlay_path = os.path.join(output_dir, f"{name}_overlay.png")
        atomic_write_bytes(overlay_path, visualize.png_bytes(visualize.side_by_side(image, overlaid, legend)))
        written += [ids_path, overlay_path]
        if progress is not None:
            progress.update(count)
    return written

