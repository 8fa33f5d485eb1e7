"""The scripts in benchmarks/: each runs end to end on the tiny preset and reports what it measured."""

import importlib.util
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """Import `benchmarks/<name>.py` as a module (benchmarks/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the module body runs.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_train_step_benchmark_runs_tiny(tmp_path, capsys):
    bench = load_benchmark("bench_train_step")
    report_path = tmp_path / "nested" / "train_step.json"
    # Patch sizes 10 and 50 keep the ECG tower at 101 and 21 tokens, so the whole run takes a few seconds.
    argv = ["--presets", "tiny", "--ecg_patch_sizes", "10", "50", "--batch_size", "2", "--repeats", "1"]
    bench.main([*argv, "--warmup", "0", "--json", str(report_path)])

    report = json.loads(report_path.read_text())
    rows = report["measurements"]
    # The step and the ECG tower once per patch size; the CXR and text towers, which do not depend on it, once.
    assert [(row["workload"], row["ecg_patch_size"]) for row in rows] == [
        ("train_step", 10),
        ("train_step", 50),
        ("cxr", None),
        ("text", None),
        ("ecg", 10),
        ("ecg", 50),
    ]
    for row in rows:
        assert len(row["times_s"]) == 1 and row["median_s"] > 0
        assert row["parameters"] > 0
    assert {row["ecg_tokens"] for row in rows if row["workload"] == "ecg"} == {101, 21}
    assert report["settings"]["batch_size"] == 2

    table = capsys.readouterr().out
    assert table.count("| tiny |") == len(rows)
