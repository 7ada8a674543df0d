"""Argument types shared by the command-line tools in `tools/`."""

import argparse
import json


def key_value(text):
    """argparse type of `--dataset_option KEY=VALUE`: returns `(key, value)`, the value parsed as
    JSON when it can be (`num_examples=20` gives the int 20), else kept as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expects KEY=VALUE. Received: {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


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
    group.add_argument(f"--no_{name}", dest=name, action="store_false", help=f"Turn --{name} off")
