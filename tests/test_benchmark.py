"""Tests of enet_keras.benchmark (FLOP counting, tables) and tools/benchmark.py (a 64x64 smoke run)."""

import csv
import importlib.util
import io
import json
import math
import pathlib

import keras
import pytest

from enet_keras import ENet, benchmark, rewrite

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location("benchmark_tool", ROOT / "tools" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("use_bias", [False, True])
def test_count_flops_of_one_conv_equals_the_formula(use_bias):
    # 2 FLOPs per multiply-add: 2 * H_out * W_out * K * K * C_in * C_out, plus one per output for the bias.
    inputs = keras.Input((16, 24, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(5, 3, strides=2, padding="same", use_bias=use_bias)(inputs))
    expected = 2 * 8 * 12 * 3 * 3 * 3 * 5 + (8 * 12 * 5 if use_bias else 0)
    assert benchmark.count_flops(model, 16, 24) == pytest.approx(expected / 1e9)


def test_count_flops_of_enet_is_near_the_paper():
    # Paszke et al. (2016), Table 3: 3.83 GFLOPs at 3x360x640.
    gflops = benchmark.count_flops(ENet(num_classes=19), 360, 640)
    print(f"ENet(19) at 360x640: {gflops:.3f} GFLOPs (paper: 3.83)")
    # Batch normalization adds 0.03 GFLOPs; folded (as benchmarked) 3.61, docs/benchmarks.md.
    assert gflops == pytest.approx(3.64, abs=0.01)
    assert benchmark.count_flops(rewrite.fold_batch_norm(ENet(num_classes=19)), 360, 640) == pytest.approx(3.61, abs=0.01)


def test_a_model_litert_cannot_read_is_a_failed_row(monkeypatch):
    def unreadable(path, threads=1):
        raise ValueError(f"cannot read {path}")

    monkeypatch.setattr(benchmark, "xnnpack_delegation", unreadable)
    rows = benchmark.benchmark(ENet(num_classes=3), [(32, 32)], ["tflite_fp32"], threads=[1], runs=1, warmup=0,
                               verbose=0)
    assert len(rows) == 1 and rows[0]["note"].startswith("failed: ValueError: cannot read")
    assert math.isnan(rows[0]["median_ms"])


def test_count_flops_rejects_bad_sizes():
    with pytest.raises(ValueError, match="height must be a positive integer"):
        benchmark.count_flops(ENet(num_classes=3), 0, 64)


def test_parse_sizes():
    assert benchmark.parse_sizes("360x480, 720X1280") == [(360, 480), (720, 1280)]
    with pytest.raises(ValueError, match=r"--sizes 360x479: the width must be a positive multiple of 8 .* e.g. 472 or 480"):
        benchmark.parse_sizes("360x479")
    with pytest.raises(ValueError, match="HxW"):
        benchmark.parse_sizes("360")


def test_tables_hold_every_row_and_column():
    row = dict.fromkeys(benchmark.COLUMNS, "x")
    row.update(median_ms=math.nan, size_mb=1.234, threads=2, command="python tools/benchmark.py")
    text = benchmark.to_markdown([row, row], notes=["a note"])
    assert text.count("\n| ") == 2 and "a note" in text and "python tools/benchmark.py" in text
    assert "| - |" in text and "1.23" in text  # NaN prints as "-"
    parsed = list(csv.DictReader(io.StringIO(benchmark.to_csv([row]))))
    assert list(parsed[0]) == [*benchmark.COLUMNS, "command"]


def test_benchmark_rejects_unknown_formats():
    with pytest.raises(ValueError, match="formats must be names"):
        benchmark.benchmark(ENet(num_classes=3), [(64, 64)], ["tensorrt"], verbose=0)


@pytest.mark.slow
def test_tool_smoke_run_writes_tables(tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["--num_classes", "3", "--sizes", "64x64", "--runs", "2", "--warmup", "1",
            "--formats", "keras,tflite_fp32", "--threads", "1", "--output_dir", str(out)]
    rows = load_tool().main(argv)
    printed = capsys.readouterr().out
    assert "| keras |" in printed and "| tflite_fp32 |" in printed and "python tools/benchmark.py --num_classes 3" in printed

    assert sorted(p.name for p in out.iterdir()) == ["benchmark.csv", "benchmark.md", "benchmark_config.json"]
    table = list(csv.DictReader(io.StringIO((out / "benchmark.csv").read_text())))
    assert list(table[0]) == [*benchmark.COLUMNS, "command"]
    assert [(r["format"], r["precision"], r["resolution"], r["threads"]) for r in table] == [
        ("keras", "fp32", "64x64", str(rows[0]["threads"])), ("tflite_fp32", "fp32", "64x64", "1")]
    for r in table:
        assert r["device"] and r["runtime"] and r["command"].startswith("python tools/benchmark.py")
        assert float(r["min_ms"]) <= float(r["median_ms"]) <= float(r["max_ms"])
        assert float(r["size_mb"]) > 0 and float(r["gflops"]) > 0 and float(r["gflops_per_s"]) > 0
    assert "| tflite_fp32 | LiteRT" in (out / "benchmark.md").read_text()
    config = json.loads((out / "benchmark_config.json").read_text())
    assert config["sizes"] == ["64x64"] and config["formats"] == ["keras", "tflite_fp32"]


def _tflite_file(tmp_path, middle):
    import tensorflow as tf

    inputs = keras.Input(batch_shape=(1, 16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = middle(x)
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same")(x))
    path = tmp_path / "model.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def test_xnnpack_delegation_counts_nodes_left_outside(tmp_path):
    whole = benchmark.xnnpack_delegation(_tflite_file(tmp_path, keras.layers.ReLU()))
    assert whole == {"delegated_nodes": 2, "total_nodes": 2, "partitions": 1, "outside": {}}
    # XNNPACK has no EQUAL or SELECT: they run between two delegated partitions.
    select = keras.layers.Lambda(lambda x: keras.ops.where(keras.ops.equal(x, 0.5), x, x * 2.0))
    split = benchmark.xnnpack_delegation(_tflite_file(tmp_path, select))
    assert split["partitions"] == 2 and split["outside"] == {"EQUAL": 1, "SELECT": 1}
    assert split["delegated_nodes"] == split["total_nodes"] - 2
