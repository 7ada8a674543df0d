"""Arguments and the error handling shared by the command-line tools in `tools/`."""

import argparse
import json
import math
import sys
import traceback


class ArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose usage errors are one line, `error: ... (see --help)`,
    with exit status 2, like the tools' other user errors. The `Example:` block of the
    description (a tool's docstring) is shown last, after the flags and their defaults."""

    def __init__(self, description=None, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        if description and "epilog" not in kwargs:
            description, kwargs["epilog"] = _split_example(description)
        super().__init__(description=description, **kwargs)

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _split_example(doc):
    """(`doc` without its `Example:` block, the block or None): the block is the `Example:` line
    and the indented or blank lines after it."""
    lines = doc.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Example:"]
    if not starts:
        return doc, None
    start = starts[0]
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith((" ", "\t"))):
        end += 1
    return "\n".join(lines[:start] + lines[end:]).strip(), "\n".join(lines[start:end]).rstrip()


def finite_float(text):
    """argparse type of a float flag: a finite number (not nan, inf or 1e999)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a number. Received: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expects a finite number. Received: {text!r}")
    return value


def _reject_constant(name):
    raise ValueError(name)


def key_value(text):
    """argparse type of `--dataset_option KEY=VALUE`: returns `(key, value)`, the value parsed as
    JSON when it can be (`num_examples=20` gives the int 20), else kept as a string. Non-finite
    numbers (NaN, Infinity, 1e999) are refused."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expects KEY=VALUE. Received: {text!r}")
    try:
        parsed = json.loads(value, parse_constant=_reject_constant)
    except ValueError:  # JSONDecodeError, or NaN / Infinity
        parsed = value
        if value.strip().lstrip("+-").lower() in ("nan", "inf", "infinity"):
            raise argparse.ArgumentTypeError(f"expects a finite number for {key}. Received: {text!r}") from None
    if isinstance(parsed, float) and not math.isfinite(parsed):
        raise argparse.ArgumentTypeError(f"expects a finite number for {key}. Received: {text!r}")
    return key, parsed


def comma_list(choices):
    """argparse type of a comma-separated subset of `choices`, e.g. `--formats onnx,tflite_fp32`;
    returns the list without repeats, in the given order."""

    def parse(text):
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"unknown value(s) {unknown}; choose from {','.join(choices)}")
        return list(dict.fromkeys(items))

    return parse


def add_switch(parser, name, default, help):
    """Adds `--NAME` and `--no_NAME` (one spelling style with the other flags) for a bool that
    is `default` when neither is given; `help` should end with the default."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{name}", dest=name, action="store_true", default=default, help=help)
    group.add_argument(f"--no_{name}", dest=name, action="store_false", help=f"Turn --{name} off (default: see --{name})")


def add_data_args(parser, default="camvid", needed_for=None, shown=None):
    """Adds `--dataset` (a name from the data registry), `--data_dir` and `--dataset_option`.

    Args:
        parser: `argparse.ArgumentParser`.
        default: str or None. Default of `--dataset`. Defaults to `"camvid"`.
        needed_for: str or None. With a None default, what the data is for (shown in the help).
        shown: str or None. The default as the help shows it, where it is not `default`.
    """
    from enet_keras.data import SOURCE_NAMES

    if shown is None:
        shown = default if default is not None else f"none; needed for {needed_for}"
    parser.add_argument("--dataset", default=default, choices=SOURCE_NAMES,
                        help=f"Data source (default: {shown})")
    parser.add_argument("--data_dir", default=None,
                        help="Folder of the dataset; not needed for synthetic (default: none)")
    parser.add_argument("--dataset_option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="Option of the data source, repeatable, JSON values, e.g. num_examples=20 or "
                             "invalid_labels=ignore (default: none)")


def get_source(args, split):
    """The `split` of the source that `add_data_args` flags name."""
    from enet_keras import data

    return data.get_source(args.dataset, split, args.data_dir, **dict(args.dataset_option))


# What a user can cause: a bad flag value, a missing or unreadable file, a wrong model. Bad data
# found inside a tf.data pipeline (a corrupt image, a label value out of range, a truncated
# TFRecord) arrives as TensorFlow's InvalidArgumentError or DataLossError.
# A RuntimeError is not one: it is TensorFlow's or ours, a bug, and keeps its traceback.
USER_ERRORS = (ValueError, OSError)
_TF_DATA_ERRORS = ("InvalidArgumentError", "DataLossError")
# Modules of the optional extras (setup.cfg) -> the extra that installs them.
EXTRAS = {
    "tf_keras": "qat", "tensorflow_model_optimization": "qat", "ai_edge_litert": "litert",
    "onnx": "onnx", "onnxruntime": "onnx", "tf2onnx": "onnx", "tensorflow_datasets": "tfds",
    "tensorflow_serving": "serving", "cv2": "video", "mediapipe": "mediapipe",
}


def missing_extra_message(error):
    """For an `ImportError` of a module of an optional extra: the one line that says which
    `pip install "enet_keras[extra]"` brings it; for one we raised (no module name: TensorRT,
    OpenCV) its message; None otherwise."""
    name = (getattr(error, "name", None) or "").split(".")[0]
    if name in EXTRAS:
        return f'{name} is not installed; it comes with pip install "enet_keras[{EXTRAS[name]}]"'
    if getattr(error, "name", None) is None and str(error):  # raised by us, saying what to install
        return str(error)
    return None


def _user_message(error):
    """The one-line message of a user error, or None for anything else (a bug)."""
    if isinstance(error, USER_ERRORS):
        message = str(error)
    elif isinstance(error, ImportError) and missing_extra_message(error):
        message = missing_extra_message(error)
    elif type(error).__name__ in _TF_DATA_ERRORS and type(error).__module__.startswith("tensorflow"):
        # Drop TensorFlow's graph context ("[[{{node ...}}]]", "Op:...") after the message.
        message = error.message.split("\n\t [[")[0].split(" [Op:")[0]
        message = message.replace("assertion failed: ", "")
    else:
        return None
    return " ".join(message.split()) or type(error).__name__


def add_debug_flag(parser):
    parser.add_argument("--debug", action="store_true",
                        help="Show the full traceback of an error (default: one line)")


def run(main, argv=None):
    """Runs a tool's `main(argv)` and exits: status 0 on success; a user error (see
    `USER_ERRORS`) prints one line `error: ...` and exits with status 2, or its traceback
    with `--debug`; anything else is a bug and shows its traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        main(argv)
    except Exception as error:  # noqa: BLE001 - user errors become one line, the rest raises
        message = _user_message(error)
        if message is None:
            raise
        if "--debug" in argv:
            traceback.print_exc()
        else:
            print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0)
