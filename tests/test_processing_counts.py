"""Tests of processing/medbind_processing/counts.py and paper_counts.py: rows and classes next to the paper's."""

import re

import datasets

from medbind_processing.building import build_dataset_dict
from medbind_processing.counts import class_label_counts, count_summary, format_counts, format_summary
from medbind_processing.labels import ECG_SUPERCLASSES
from medbind_processing.paper_counts import PAPER_LABEL_ROWS, PAPER_REFERENCE, PAPER_SPLIT_ROWS


def test_built_datasets_count_single_and_multi_label_classes():
    features = datasets.Features({"label": datasets.ClassLabel(names=["no", "yes"]),
                                  "labels": datasets.List(datasets.ClassLabel(names=["A", "B"]))})
    records = {"train": [{"label": 1, "labels": ["A", "B"]}, {"label": 1, "labels": []}],
               "test": [{"label": 0, "labels": ["B"]}]}  # fmt: skip
    built = build_dataset_dict(records, features, "unit test")
    assert list(built) == ["train", "test"] and built["train"].info.description == "unit test"
    assert class_label_counts(built["train"]) == {"label": {"no": 0, "yes": 2}, "labels": {"A": 1, "B": 1, "(none)": 1}}
    assert "test: 1 rows\n  label: no=1, yes=0\n  labels: A=0, B=1, (none)=0" in format_summary(built)


def _ecg_labels(split_labels: dict) -> datasets.DatasetDict:
    features = datasets.Features({"labels": datasets.List(datasets.ClassLabel(names=list(ECG_SUPERCLASSES)))})
    records = {split: [{"labels": labels} for labels in rows] for split, rows in split_labels.items()}
    return build_dataset_dict(records, features, "unit test")


def test_the_papers_class_counts_add_up_to_its_split_counts():
    for name, classes in PAPER_LABEL_ROWS.items():
        assert sum(classes.values()) == sum(rows or 0 for rows in PAPER_SPLIT_ROWS[name].values()), name
    assert sum(PAPER_SPLIT_ROWS["mimic_ecg"].values()) == 125_000


def test_counts_stand_next_to_the_papers_and_a_split_the_build_lacks_shows_zero():
    summary = count_summary(_ecg_labels({"train": [["NORM"], ["CD"]], "test": [["NORM"]]}), "mimic_ecg")
    assert summary["paper"] == PAPER_REFERENCE
    assert summary["splits"] == {
        "train": {"rows": 2, "paper": 88_291}, "test": {"rows": 1, "paper": 24_644},
        "validation": {"rows": 0, "paper": 12_065},
    }
    assert summary["total"] == {"rows": 3, "paper": 125_000}
    assert summary["labels"]["labels"]["NORM"] == {"rows": 2, "paper": 34_097}
    assert summary["labels"]["labels"]["(none)"] == {"rows": 0, "paper": None}
    assert summary["labels_by_split"]["test"]["labels"]["NORM"] == 1
    table = format_counts(summary)
    assert re.search(r"^train +2 +88,291$", table, re.MULTILINE)
    assert re.search(r"^  HYP +0 +11,305$", table, re.MULTILINE)
    assert re.search(r"^all splits +3 +125,000$", table, re.MULTILINE)


def test_a_dataset_without_paper_numbers_says_so():
    summary = count_summary(_ecg_labels({"train": [["MI"]]}), "demo_ecg")
    assert summary["paper"] is None and summary["splits"] == {"train": {"rows": 1, "paper": None}}
    assert summary["total"] == {"rows": 1, "paper": None}
    assert "no published numbers" in format_counts(summary)
