"""Tests of processing/medbind_processing/cli.py: flags passed to the builder by name, the build saved with its
summary and card."""

import json

import datasets
from fixtures import LETTERS
from huggingface_hub import DatasetCard

from medbind_processing.building import build_dataset_dict
from medbind_processing.cli import cli_parser, run_cli


def _build_letters(root, count, build_dir):
    records = {"train": [{"text": f"{root.name}-{index}"} for index in range(count)]}
    features = datasets.Features({"text": datasets.Value("string")})
    return build_dataset_dict(records, features, "letters", build_dir=build_dir)


def test_run_cli_passes_each_flag_to_the_builder_by_name_and_saves_to_out(tmp_path, capsys):
    parser = cli_parser("letters")
    parser.add_argument("--count", type=int, default=1)
    out = tmp_path / "built" / "letters"
    argv = ["--root", str(tmp_path / "raw"), "--out", str(out), "--count", "2"]
    run_cli(_build_letters, parser, argv, source=LETTERS)
    assert datasets.load_from_disk(str(out))["train"]["text"] == ["raw-0", "raw-1"]
    assert list(out.parent.iterdir()) == [out]  # the on-disk build beside it is gone
    assert "train: 2 rows" in capsys.readouterr().out


def test_run_cli_saves_the_summary_and_the_card_beside_the_data(tmp_path):
    parser = cli_parser("letters")
    parser.add_argument("--count", type=int, default=1)
    out = tmp_path / "letters"
    run_cli(_build_letters, parser, ["--root", str(tmp_path / "raw"), "--out", str(out)], source=LETTERS)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"] == {"train": {"rows": 1, "paper": None}}
    assert summary["build_options"] == {"root": "<path>", "count": 1}  # whether a path was given, not the path
    assert DatasetCard.load(out / "README.md").data.pretty_name == "Letters"
