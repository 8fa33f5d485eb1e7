"""benchmarks/paper_tables.py: the paper's tables, one row per model, from results.json files."""

import json

import pytest
from samples import load_benchmark

paper_tables = load_benchmark("paper_tables")


def evaluation_results() -> dict:
    """An evaluation's results.json: the main model, a baseline with CXR only, and the encoder zoo."""
    results = {"model": "somewhere", "protocol/retrieval_positives": "identical_text"}
    for prefix, recall in (("", 30.0), ("baselines/CLIP/", 10.0), ("zoo/", 20.0)):
        for k in (1, 5, 10):
            results[f"{prefix}retrieval/cxr/cxr_to_text/recall@{k}"] = recall + k
            results[f"{prefix}retrieval/cxr/cxr_to_text/chance@{k}"] = float(k)
        results[f"{prefix}retrieval/rsum_cxr"] = 2 * recall + 11
        results[f"{prefix}zero_shot/cxr/balanced_accuracy"] = recall + 40
        results[f"{prefix}zero_shot/cxr/balanced_accuracy/chance"] = 100 / 3
        for k in (1, 4):
            results[f"{prefix}few_shot/cxr/k{k}/balanced_accuracy"] = recall + k
            results[f"{prefix}few_shot/cxr/k{k}/chance"] = 100 / 3
    for prefix, value in (("", 80.0), ("zoo/", 60.0)):  # a CXR-only baseline has no cross-modality task
        results[f"{prefix}cross_modality/cardiomegaly_from_ecg/balanced_accuracy"] = value
        results[f"{prefix}cross_modality/cardiomegaly_from_ecg/balanced_accuracy/chance"] = 50.0
    return results


def prompt_tuning_results(mode: str, value: float, baseline: str | None = None) -> dict:
    results = {}
    for prefix, offset in (("", 0.0), *(((f"baselines/{baseline}/", -1.0),) if baseline else ())):
        path = f"{prefix}prompt_tuning/mortality" + ("" if prefix else f"/{mode}")
        for metric in ("accuracy", "balanced_accuracy", "auroc"):
            results[f"{path}/{metric}"] = value + offset
            results[f"{path}/{metric}/chance"] = 50.0
    return results


def test_every_model_gets_a_row_in_each_table_it_has_numbers_for(tmp_path, capsys):
    (tmp_path / "eval.json").write_text(json.dumps(evaluation_results()))
    (tmp_path / "text.json").write_text(json.dumps(prompt_tuning_results("text-only", 70.0)))
    (tmp_path / "bd.json").write_text(json.dumps(prompt_tuning_results("medbind", 72.0, baseline="NM")))
    text = paper_tables.main([
        "--evaluation", str(tmp_path / "eval.json"), "--prompt_tuning", str(tmp_path / "text.json"),
        str(tmp_path / "bd.json"), "--main_model", "BD", "--output", str(tmp_path / "tables.md"),
    ])  # fmt: skip
    assert (tmp_path / "tables.md").read_text() == text == capsys.readouterr().out
    assert "| BD | 31.0 / 35.0 / 40.0 | 71.0 |" in text
    assert "| CLIP | 11.0 / 15.0 / 20.0 | 31.0 |" in text
    assert "| encoder zoo | 21.0 / 25.0 / 30.0 | 51.0 |" in text
    assert "| chance | 1.0 / 5.0 / 10.0 |  |" in text
    assert "| model | cxr K = 1/4 |" in text and "| CLIP | 11.0 / 14.0 |" in text
    table_3 = text.split("Table 3")[1].split("Table 4")[0]
    assert "| BD | 80.0 |" in table_3 and "| encoder zoo | 60.0 |" in table_3 and "| CLIP | - |" in table_3
    assert "| mortality | text-only | 70.0 | 70.0 | 70.0 |" in text
    assert "| mortality | medbind | 72.0 | 72.0 | 72.0 |" in text and "| mortality | NM | 71.0 | 71.0 | 71.0 |" in text
    assert text.rstrip().endswith("| mortality | chance | 50.0 | 50.0 | 50.0 |")


def test_a_missing_results_file_or_two_modes_in_one_file_are_refused(tmp_path):
    with pytest.raises(ValueError, match="nothing to tabulate"):
        paper_tables.main([])
    with pytest.raises(ValueError, match="missing.json"):
        paper_tables.main(["--evaluation", str(tmp_path / "missing.json")])
    mixed = {**prompt_tuning_results("text-only", 70.0), **prompt_tuning_results("medbind", 72.0)}
    (tmp_path / "mixed.json").write_text(json.dumps(mixed))
    with pytest.raises(ValueError, match="one task and one mode"):
        paper_tables.main(["--prompt_tuning", str(tmp_path / "mixed.json")])
