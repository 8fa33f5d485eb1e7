"""The `medbind` command line (medbind/cli.py) on the real records of ../shared/data, with a tiny saved model."""

import argparse
import json
import re
from importlib.resources import files

import pytest
import torch
from safetensors import safe_open
from transformers import pipeline

from medbind.cli import EXIT_BAD_INPUT, EXIT_OK, build_parser, main
from medbind_model_cards.medbind_pretrained import render_model_card
from modeling_medbind import MedBindConfig

LABELS = ["myocardial infarction", "normal sinus rhythm"]


@pytest.fixture(scope="module")
def embed(loaded):
    model, processor = loaded
    return pipeline("medbind-feature-extraction", model=model, processor=processor, device="cpu")


@pytest.fixture
def record(shared_data):
    return str(shared_data / "ecg" / "s0010_re")


@pytest.fixture
def radiographs(shared_data):
    return [str(path) for path in sorted((shared_data / "cxr").iterdir()) if path.suffix in (".png", ".jpg", ".dcm")]


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def table(out: str) -> list[list[str]]:
    """The rows of a printed table, cells split on runs of two or more spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.strip().splitlines()]


def test_embed_writes_each_inputs_embedding_with_its_source_and_modality(
    model_dir, embed, record, radiographs, tmp_path, capsys
):
    output = tmp_path / "embeddings.safetensors"
    texts = ["Sinus rhythm. Acute inferior myocardial infarction.", "Heart size is normal and the lungs are clear."]
    status, out, _ = run(capsys, "embed", "--model", model_dir, "--cxr", *radiographs, "--ecg", record,
                         "--text", *texts, "--output", output)  # fmt: skip
    assert status == EXIT_OK and f"wrote {len(radiographs) + 3} embeddings" in out
    with safe_open(output, framework="pt") as file:
        embeddings, metadata = file.get_tensor("embeddings"), file.metadata()
    assert json.loads(metadata["sources"]) == [*radiographs, record, *texts]
    assert json.loads(metadata["modalities"]) == ["cxr"] * len(radiographs) + ["ecg"] + ["text"] * 2
    expected = [embed(item, modality="cxr", return_tensors=True) for item in radiographs]
    expected += [embed(record, modality="ecg", return_tensors=True)]
    expected += [embed(text, modality="text", return_tensors=True) for text in texts]
    torch.testing.assert_close(embeddings, torch.stack(expected), rtol=1e-4, atol=1e-5)


def test_zero_shot_prints_each_records_class_probabilities(model_dir, loaded, record, capsys):
    records = [record, f"{record}.hea"]  # a record with or without its header's suffix
    status, out, _ = run(capsys, "zero-shot", "--model", model_dir, "--ecg", *records, "--labels", *LABELS)
    header, *rows = table(out)
    assert status == EXIT_OK and header == ["ECG", *LABELS, "most probable"]
    classify = pipeline("zero-shot-ecg-classification", model=loaded[0], processor=loaded[1], device="cpu")
    scores = {entry["label"]: entry["score"] for entry in classify(record, candidate_labels=LABELS)}
    for row, source in zip(rows, records):
        assert row[0] == source and row[3] == max(scores, key=scores.get)
        assert [float(cell) for cell in row[1:3]] == pytest.approx([scores[label] for label in LABELS], abs=1e-3)


def test_zero_shot_reads_a_prompt_file_of_the_package(model_dir, radiographs, capsys):
    prompts = files("medbind_training") / "prompts" / "rsna.yaml"
    status, out, _ = run(capsys, "zero-shot", "--model", model_dir, "--cxr", *radiographs, "--prompts", prompts)
    header, *rows = table(out)
    assert status == EXIT_OK and header[0] == "CXR" and len(rows) == len(radiographs)
    assert all(sum(float(cell) for cell in row[1:-1]) == pytest.approx(1.0, abs=3e-3) for row in rows)


def test_card_renders_the_model_card_again_from_results(tmp_path, capsys):
    config = MedBindConfig.from_preset("tiny")
    config.save_pretrained(tmp_path)
    card = render_model_card(config, {}, {"epochs": 1}, "org/m", "Synthetic patients.", synthetic=True)
    card.save(tmp_path / "README.md")
    (tmp_path / "results.json").write_text(json.dumps({"split": "test", "zero_shot/ptbxl/balanced_accuracy": 42.5}))
    status, out, _ = run(capsys, "card", "--model", tmp_path, "--results", tmp_path / "results.json")
    assert status == EXIT_OK and str(tmp_path / "README.md") in out
    card = (tmp_path / "README.md").read_text()
    assert "| PTB-XL | 42.5 |" in card and "Synthetic patients." in card


def test_each_unreadable_input_is_named_with_its_reason_and_nothing_is_written(
    model_dir, record, shared_data, tmp_path, capsys
):
    output = tmp_path / "embeddings.safetensors"
    not_an_image = shared_data / "README.md"
    status, out, err = run(capsys, "embed", "--model", model_dir, "--ecg", record, tmp_path / "missing",
                           "--cxr", not_an_image, "--output", output)  # fmt: skip
    assert status == EXIT_BAD_INPUT and not output.exists() and out == ""
    problems = err.strip().splitlines()
    assert len(problems) == 2
    assert problems[0].startswith(f"medbind embed: error: {not_an_image}: could not decode image file")
    assert problems[1].startswith(f"medbind embed: error: {tmp_path / 'missing'}: WFDB header not found")


def test_a_folder_that_is_not_a_model_and_a_bad_command_line_exit_with_status_2(tmp_path, capsys):
    status, _, err = run(capsys, "zero-shot", "--model", tmp_path, "--ecg", "x", "--labels", "a", "b")
    assert status == EXIT_BAD_INPUT and f"--model {tmp_path}" in err
    with pytest.raises(SystemExit) as exit_:
        main(["zero-shot", "--model", str(tmp_path), "--ecg", "x"])  # neither --labels nor --prompts
    assert exit_.value.code == EXIT_BAD_INPUT and "--labels" in capsys.readouterr().err


def test_every_command_and_flag_has_help():
    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    assert set(commands.choices) == {"embed", "zero-shot", "index", "search", "card", "export"}
    for name, command in commands.choices.items():
        undocumented = [action.dest for action in command._actions if not action.help]
        assert undocumented == [], f"medbind {name}: flags without help: {undocumented}"
