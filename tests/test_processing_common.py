"""Tests of processing/common.py: time parsing, tables, column conventions, dataset building, label counts, command
line, admission linking."""

from datetime import datetime
from pathlib import Path

import datasets
import pandas as pd
import pytest

from medbind.processing import common


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
            "labels": datasets.List(datasets.ClassLabel(names=["A", "B"])),
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


def _read_note(record: dict) -> dict:
    return {"text": Path(record["path"]).read_text()}


def test_rebuilding_after_a_raw_file_changes_gives_the_new_content(tmp_path):
    # The record holds only the file's path, as the DICOM and image builders' records do: a cache keyed on the
    # generator's arguments would hand back the first build.
    note = tmp_path / "note.txt"
    records = {"train": [{"path": str(note)}]}
    features = datasets.Features({"text": datasets.Value("string")})
    note.write_text("first version")
    assert common.build_dataset_dict(records, features, "unit test", _read_note)["train"]["text"] == ["first version"]
    note.write_text("second version")
    rebuilt = common.build_dataset_dict(records, features, "unit test", _read_note)
    assert rebuilt["train"]["text"] == ["second version"]


def test_a_build_lives_in_memory_and_leaves_no_files_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(common.tempfile, "tempdir", str(tmp_path))  # where the build's temporary folder goes
    features = datasets.Features({"text": datasets.Value("string")})
    built = common.build_dataset_dict({"train": [{"text": "a"}]}, features, "")
    assert built["train"].cache_files == [] and list(tmp_path.iterdir()) == []
    assert built["train"]["text"] == ["a"]


def test_building_on_disk_keeps_the_arrow_files_until_the_block_ends(tmp_path):
    features = datasets.Features({"text": datasets.Value("string")})
    with common.building_on_disk(tmp_path):
        built = common.build_dataset_dict({"train": [{"text": "a"}], "test": [{"text": "b"}]}, features, "")
        files = [Path(f["filename"]) for split in built.values() for f in split.cache_files]
        assert len(files) == 2 and all(tmp_path in f.parents and f.is_file() for f in files)
        assert built["test"]["text"] == ["b"]
    assert list(tmp_path.iterdir()) == []


def test_cxr_features_put_the_standard_columns_first_with_a_sources_differences():
    features = common.cxr_features(label=["no", "yes"], drop=["text", "hadm_id"], study_id=datasets.Value("string"),
                                   site=datasets.Value("int64"))
    assert list(features) == ["image", "subject_id", "study_id", "study_time", "view", "site", "label"]
    assert isinstance(features["image"], datasets.Image) and features["study_id"] == datasets.Value("string")
    assert features["label"] == datasets.ClassLabel(names=["no", "yes"])
    assert common.cxr_features(labels=["A", "B"])["labels"] == datasets.List(datasets.ClassLabel(names=["A", "B"]))
    with pytest.raises(ValueError, match=r"cannot drop \['report'\]"):
        common.cxr_features(drop=["report"])


def test_ecg_features_hold_the_record_path_or_the_signal_itself():
    assert list(common.ecg_features()) == [
        "ecg_path", "sampling_rate", "text", "subject_id", "study_id", "hadm_id", "ecg_time"
    ]
    signal = datasets.Array2D((12, 1000), "float32")
    with_signal = common.ecg_features(ecg=signal, labels=common.ECG_SUPERCLASSES)
    assert list(with_signal)[0] == "ecg" and with_signal["ecg"] == signal and "ecg_path" not in with_signal
    assert with_signal["labels"].feature.names == list(common.ECG_SUPERCLASSES)


def _build_letters(root: Path, count: int) -> datasets.DatasetDict:
    records = {"train": [{"text": f"{root.name}-{index}"} for index in range(count)]}
    return common.build_dataset_dict(records, datasets.Features({"text": datasets.Value("string")}), "letters")


def test_run_cli_passes_each_flag_to_the_builder_by_name_and_saves_to_out(tmp_path, capsys):
    parser = common.cli_parser("letters")
    parser.add_argument("--count", type=int, default=1)
    out = tmp_path / "built" / "letters"
    common.run_cli(_build_letters, parser, ["--root", str(tmp_path / "raw"), "--out", str(out), "--count", "2"])
    assert datasets.load_from_disk(str(out))["train"]["text"] == ["raw-0", "raw-1"]
    assert list(out.parent.iterdir()) == [out]  # the on-disk build beside it is gone
    assert "train: 2 rows" in capsys.readouterr().out
