"""TFLite metadata for ENet exports, so that MediaPipe Tasks' `ImageSegmenter` (Android, iOS,
web, Python) and other metadata readers load a `.tflite` as it is.

The metadata is a `ModelMetadata` flatbuffer (TFLite support's `metadata_schema.fbs`, file
identifier "M001") stored in a model buffer named `TFLITE_METADATA`, and its associated files
(the labels) are a zip archive appended to the model, as TFLite support's `MetadataPopulator`
writes them. We build it with the `flatbuffers` package from the published schema instead of a
metadata writer: MediaPipe's fails to import in mediapipe 1.2 (`mediapipe.tasks.cc`), and
tflite-support's pins an old numpy.

What is written: the model's name, description, version, author and license; for the input,
an RGB image with normalization mean 0 and std 1 (the model scales its own pixels in [0, 255])
and its value range; for the output, per-class scores over the last axis (logits: their argmax
is the class, as MediaPipe's category mask takes it) with `labels.txt`, one class name per line.
"""

import io
import zipfile

import flatbuffers

from enet_keras import _internals

METADATA_NAME = "TFLITE_METADATA"
LABELS_FILE = "labels.txt"
# The schema's field slots (declaration order; a union takes two: type, then value) and enums.
_MODEL = {"name": 0, "description": 1, "version": 2, "subgraph_metadata": 3, "author": 4, "license": 5,
          "min_parser_version": 7}
_SUBGRAPH = {"name": 0, "description": 1, "input_tensor_metadata": 2, "output_tensor_metadata": 3}
_TENSOR = {"name": 0, "description": 1, "content": 3, "process_units": 4, "stats": 5, "associated_files": 6}
_CONTENT = {"content_properties_type": 0, "content_properties": 1, "range": 2}
_IMAGE_PROPERTIES, _RGB, _GRAYSCALE = 2, 1, 2  # ContentProperties.ImageProperties, ColorSpaceType
_NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions.NormalizationOptions
_TENSOR_AXIS_LABELS = 2  # AssociatedFileType
_MIN_PARSER_VERSION = "1.0.0"  # every field written exists since schema 1.0.0


def add_metadata(flatbuffer, class_names, name="enet", description=None, version="1", author="enet_keras",
                 license="MIT"):
    """A `.tflite` model with ENet's TFLite metadata and `labels.txt` added.

    Args:
        flatbuffer: bytes of a `.tflite` model with one input (1, H, W, 3) and one output
            (1, H, W, classes), as `enet_keras.export.tflite.convert` returns.
        class_names: list of str, one per class (the labels MediaPipe reports).
        name: str. The model's name. Defaults to "enet".
        description: str or None. Defaults to a sentence naming ENet and the classes.
        version: str. The model's version. Defaults to "1".
        author: str. Defaults to "enet_keras".
        license: str. Defaults to "MIT".

    Returns:
        bytes: the model, its metadata and the labels zip after it.

    Raises:
        ValueError: if the model's output does not have one score per class name, or a class
            name is empty or holds a line break.

    Example:

    >>> flatbuffer = add_metadata(convert(model, 360, 480), CAMVID_CLASSES)  # doctest: +SKIP
    """
    schema, flatbuffer_utils = _internals.tflite_schema()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    subgraph = model.subgraphs[0]
    (output_index,) = subgraph.outputs
    num_classes = int(subgraph.tensors[output_index].shape[-1])
    class_names = [str(c) for c in class_names]
    if len(class_names) != num_classes:
        raise ValueError(f"The model scores {num_classes} classes but {len(class_names)} class names were given. "
                         f"Received: class_names={class_names}")
    if any(not c.strip() or "\n" in c or "\r" in c for c in class_names):
        raise ValueError(f"Class names must be non-empty single lines (one per line of {LABELS_FILE}). "
                         f"Received: class_names={class_names}")
    if description is None:
        description = f"ENet semantic segmentation (Paszke et al. 2016) of {num_classes} classes: " + ", ".join(class_names)
    metadata = _model_metadata(name, description, version, author, license)

    buffer = schema.BufferT()
    buffer.data = list(metadata)
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() != METADATA_NAME]
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME.encode()
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    packed = io.BytesIO(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    packed.seek(0, io.SEEK_END)
    # Appended as MetadataPopulator appends it: zipfile in append mode after the flatbuffer.
    # A fixed date keeps the export's bytes the same from run to run.
    with zipfile.ZipFile(packed, "a") as archive:
        archive.writestr(zipfile.ZipInfo(LABELS_FILE, date_time=(1980, 1, 1, 0, 0, 0)), "\n".join(class_names) + "\n")
    return packed.getvalue()


def _model_metadata(name, description, version, author, license):
    builder = flatbuffers.Builder(1024)
    strings = {k: builder.CreateString(v) for k, v in (
        ("name", name), ("description", description), ("version", str(version)), ("author", author),
        ("license", license), ("min_parser_version", _MIN_PARSER_VERSION))}
    inputs = _vector(builder, [_tensor(
        builder, "image", "RGB image, raw pixels in [0, 255] (the model scales them itself)", _RGB,
        normalization=([0.0], [1.0]), stats=([255.0], [0.0]))])
    outputs = _vector(builder, [_tensor(
        builder, "segmentation_masks", "Per-pixel class scores (logits); the class is their argmax",
        _GRAYSCALE, value_range=(1, 2), labels=LABELS_FILE)])
    subgraph_name = builder.CreateString(name)
    builder.StartObject(len(_SUBGRAPH))
    builder.PrependUOffsetTRelativeSlot(_SUBGRAPH["name"], subgraph_name, 0)
    builder.PrependUOffsetTRelativeSlot(_SUBGRAPH["input_tensor_metadata"], inputs, 0)
    builder.PrependUOffsetTRelativeSlot(_SUBGRAPH["output_tensor_metadata"], outputs, 0)
    subgraphs = _vector(builder, [builder.EndObject()])
    builder.StartObject(8)
    for key, offset in strings.items():
        builder.PrependUOffsetTRelativeSlot(_MODEL[key], offset, 0)
    builder.PrependUOffsetTRelativeSlot(_MODEL["subgraph_metadata"], subgraphs, 0)
    builder.Finish(builder.EndObject(), file_identifier=b"M001")
    return bytes(builder.Output())


def _tensor(builder, name, description, color_space, normalization=None, stats=None, value_range=None, labels=None):
    """One TensorMetadata: an image content, and optionally normalization, stats, a value range
    over dimensions and a label file."""
    name, description = builder.CreateString(name), builder.CreateString(description)
    process_units = stats_offset = files = range_offset = None
    if normalization is not None:
        mean, std = (_floats(builder, v) for v in normalization)
        builder.StartObject(2)  # NormalizationOptions
        builder.PrependUOffsetTRelativeSlot(0, mean, 0)
        builder.PrependUOffsetTRelativeSlot(1, std, 0)
        options = builder.EndObject()
        builder.StartObject(2)  # ProcessUnit
        builder.PrependUint8Slot(0, _NORMALIZATION_OPTIONS, 0)
        builder.PrependUOffsetTRelativeSlot(1, options, 0)
        process_units = _vector(builder, [builder.EndObject()])
    if stats is not None:
        high, low = (_floats(builder, v) for v in stats)
        builder.StartObject(2)  # Stats: max, min
        builder.PrependUOffsetTRelativeSlot(0, high, 0)
        builder.PrependUOffsetTRelativeSlot(1, low, 0)
        stats_offset = builder.EndObject()
    if labels is not None:
        file_name = builder.CreateString(labels)
        file_description = builder.CreateString("One class name per line, in class id order")
        builder.StartObject(4)  # AssociatedFile
        builder.PrependUOffsetTRelativeSlot(0, file_name, 0)
        builder.PrependUOffsetTRelativeSlot(1, file_description, 0)
        builder.PrependInt8Slot(2, _TENSOR_AXIS_LABELS, 0)
        files = _vector(builder, [builder.EndObject()])
    if value_range is not None:
        builder.StartObject(2)  # ValueRange: min, max
        builder.PrependInt32Slot(0, value_range[0], 0)
        builder.PrependInt32Slot(1, value_range[1], 0)
        range_offset = builder.EndObject()
    builder.StartObject(2)  # ImageProperties
    builder.PrependInt8Slot(0, color_space, 0)
    properties = builder.EndObject()
    builder.StartObject(3)  # Content
    builder.PrependUint8Slot(_CONTENT["content_properties_type"], _IMAGE_PROPERTIES, 0)
    builder.PrependUOffsetTRelativeSlot(_CONTENT["content_properties"], properties, 0)
    if range_offset is not None:
        builder.PrependUOffsetTRelativeSlot(_CONTENT["range"], range_offset, 0)
    content = builder.EndObject()
    builder.StartObject(7)  # TensorMetadata
    builder.PrependUOffsetTRelativeSlot(_TENSOR["name"], name, 0)
    builder.PrependUOffsetTRelativeSlot(_TENSOR["description"], description, 0)
    builder.PrependUOffsetTRelativeSlot(_TENSOR["content"], content, 0)
    for key, offset in (("process_units", process_units), ("stats", stats_offset), ("associated_files", files)):
        if offset is not None:
            builder.PrependUOffsetTRelativeSlot(_TENSOR[key], offset, 0)
    return builder.EndObject()


def _vector(builder, offsets):
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _floats(builder, values):
    builder.StartVector(4, len(values), 4)
    for value in reversed(values):
        builder.PrependFloat32(value)
    return builder.EndVector()


def read_metadata(flatbuffer):
    """What `add_metadata` wrote, read back: `{"name", "version", "license", "labels"}`, or None
    for a model without metadata.

    Args:
        flatbuffer: bytes of a `.tflite` file.
    """
    _, flatbuffer_utils = _internals.tflite_schema()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    entry = next((m for m in model.metadata or [] if m.name.decode() == METADATA_NAME), None)
    if entry is None:
        return None
    data = bytes(bytearray(model.buffers[entry.buffer].data))
    table = flatbuffers.table.Table(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0))

    def string(slot):
        offset = table.Offset(4 + 2 * slot)
        return table.String(offset + table.Pos).decode() if offset else None

    with zipfile.ZipFile(io.BytesIO(flatbuffer)) as archive:
        labels = archive.read(LABELS_FILE).decode().splitlines()
    return {"name": string(_MODEL["name"]), "version": string(_MODEL["version"]),
            "license": string(_MODEL["license"]), "identifier": data[4:8].decode(), "labels": labels}
