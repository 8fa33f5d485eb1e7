"""Tests of processing/common.py: time parsing, tables, dataset building, label counts, admission linking."""

from datetime import datetime

import datasets
import pandas as pd
import pytest

from processing import common


def test_parse_time_reads_iso_and_blanks():
    assert common.parse_time("2180-07-23 08:44:00") == datetime(2180, 7, 23, 8, 44)
    assert common.parse_time(pd.Timestamp("2180-07-23T08:44:00")) == datetime(2180, 7, 23, 8, 44)
    assert common.parse_time(float("nan")) is None and common.parse_time("") is None
    with pytest.raises(ValueError, match="ecg_time"):
        common.parse_time("yesterday", "ecg_time")


def test_read_table_finds_gzipped_tables_and_names_missing_columns(tmp_path):
    pd.DataFrame({"a": [1], "b": [2]}).to_csv(tmp_path / "t.csv.gz", index=False)
    assert list(common.read_table(tmp_path, "t.csv", ["a"])["b"]) == [2]
    with pytest.raises(ValueError, match=r"t.csv.gz: missing column\(s\) \['c'\]"):
        common.read_table(tmp_path, "t.csv", ["a", "c"])
    with pytest.raises(FileNotFoundError, match="u.csv"):
        common.find_table(tmp_path, "u.csv")


def test_built_datasets_count_single_and_multi_label_classes():
    features = datasets.Features(
        {
            "label": datasets.ClassLabel(names=["no", "yes"]),
            "labels": datasets.Sequence(datasets.ClassLabel(names=["A", "B"])),
        }
    )
    records = {
        "train": [{"label": 1, "labels": ["A", "B"]}, {"label": 1, "labels": []}],
        "test": [{"label": 0, "labels": ["B"]}],
    }
    built = common.build_dataset_dict(records, features, "unit test")
    assert list(built) == ["train", "test"] and built["train"].info.description == "unit test"
    assert common.class_label_counts(built["train"]) == {
        "label": {"no": 0, "yes": 2},
        "labels": {"A": 1, "B": 1, "(none)": 1},
    }
    assert "test: 1 rows\n  label: no=1, yes=0\n  labels: A=0, B=1, (none)=0" in common.format_summary(built)


def test_link_admissions_uses_the_ed_stay_and_prefers_the_latest_admission():
    admissions = pd.DataFrame(
        {
            "subject_id": [1, 1],
            "hadm_id": [10, 11],
            "visit_start": pd.to_datetime(["2180-01-01 08:00", "2180-01-02 00:00"]),
            "dischtime": pd.to_datetime(["2180-01-03 00:00", "2180-01-04 00:00"]),
        }
    )
    times = [datetime(2180, 1, 1, 8), datetime(2180, 1, 2, 12), datetime(2180, 1, 5), datetime(2180, 1, 1, 9)]
    assert common.link_admissions([1, 1, 1, 2], times, admissions) == [10, 11, None, None]


def test_match_greedy_uses_each_row_once_best_first():
    assert common.match_greedy([(2.0, 0, 0), (1.0, 1, 0), (3.0, 0, 1)]) == [(0, 1), (1, 0)]
