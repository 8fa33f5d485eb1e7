"""The scripts in benchmarks/: each runs end to end on the tiny preset and reports what it measured."""

import json

import pytest
import torch
from samples import load_benchmark

bench = load_benchmark("bench_train_step")

# Patch sizes 50 and 100 keep the ECG tower at 21 and 11 tokens, so a whole run takes a few seconds.
TINY = ["--presets", "tiny", "--batch_size", "2", "--repeats", "1", "--warmup", "0", "--threads", "1"]


def test_train_step_benchmark_counts_flops_and_reports_mfu_and_memory(tmp_path, capsys):
    report_path = tmp_path / "nested" / "train_step.json"
    bench.main([*TINY, "--ecg_patch_sizes", "100", "--peak_tflops", "0.5", "--json", str(report_path)])

    report = json.loads(report_path.read_text())
    rows = {row["workload"]: row for row in report["measurements"]}
    assert list(rows) == ["train_step", "cxr", "text", "ecg"]
    for row in rows.values():
        assert len(row["times_s"]) == 1 and row["median_s"] > 0 and row["parameters"] > 0
        assert row["flops"] > 0 and row["mfu"] == pytest.approx(row["flops"] / row["median_s"] / 0.5e12)
        assert row["peak_memory_bytes"] > 0  # the process's peak RSS on the CPU
    towers = rows["cxr"]["flops"] + rows["text"]["flops"] + rows["ecg"]["flops"]
    assert rows["train_step"]["flops"] == pytest.approx(towers, rel=0.01)  # the towers, + the loss's small matmuls
    assert rows["train_step"]["flops"] > towers
    assert report["settings"]["batch_size"] == 2

    table = capsys.readouterr().out
    assert table.count("| tiny |") == len(rows) and "fp32" in table and "BERT attention sdpa" in table


def test_towers_that_do_not_run_the_ecg_are_timed_once_and_bf16_keeps_the_flop_count(capsys):
    # The towers without convolutions: bf16 is emulated, hence slow, on most CPUs.
    common = [*TINY, "--ecg_patch_sizes", "50", "100", "--workloads", "text", "ecg"]
    fp32 = bench.main(common)
    assert [(row.workload, row.ecg_patch_size, row.ecg_tokens) for row in fp32] == [
        ("text", None, None), ("ecg", 50, 21), ("ecg", 100, 11)
    ]  # fmt: skip
    assert fp32[1].flops > fp32[2].flops  # twice the ECG tokens: counted, not a constant
    bf16 = bench.main([*common, "--bf16"])
    assert [row.flops for row in bf16] == [row.flops for row in fp32]
    assert "bf16 autocast" in capsys.readouterr().out


def test_train_step_benchmark_defaults_to_the_paper_batch_on_an_accelerator_only():
    assert bench.BenchmarkArguments().batch_size == 8
    if torch.cuda.is_available():
        assert bench.BenchmarkArguments(device="cuda").batch_size == 128
    else:
        with pytest.raises(ValueError, match="no cuda accelerator"):
            bench.BenchmarkArguments(device="cuda")


def test_gradient_caching_is_timed_with_its_extra_forward():
    common = [*TINY, "--ecg_patch_sizes", "100", "--workloads", "train_step"]
    (whole,) = bench.main(common)
    (chunked,) = bench.main([*common, "--contrastive_chunk_size", "1"])
    # A second forward of every tower: more counted FLOPs than the whole-batch step, less than twice as many.
    assert whole.flops < chunked.flops < 2 * whole.flops


@pytest.mark.slow
def test_compiled_tower_runs():
    # aot_eager traces and partitions the graph as inductor does, without generating code (no compiler needed).
    options = ["--ecg_patch_sizes", "100", "--workloads", "ecg", "--compile", "--compile_backend", "aot_eager"]
    (row,) = bench.main([*TINY, *options])
    assert row.flops > 0 and row.median_s > 0


@pytest.mark.slow
def test_processor_benchmark_times_rows_of_a_built_dataset(tmp_path, capsys):
    arguments = ["--records", "2", "--images", "1", "--built-images", "2", "--json", str(tmp_path / "p.json")]
    results = load_benchmark("bench_processor").main(arguments)
    # Which is faster is the benchmark's finding, not a fact a test can rely on (it races on a loaded machine):
    # here, that every rate was measured.
    for source in ("png16", "jpeg8"):
        for stage in ("raw", "built", "decoded"):
            assert results[f"{stage}_{source}_images_per_s"] > 0
        assert results[f"raw_{source}_decodes_per_s"] > 0
    assert json.loads((tmp_path / "p.json").read_text())["batch_size"] == 128
    table = capsys.readouterr().out
    assert "stored at 614x512" in table and "goal >= 100" in table
