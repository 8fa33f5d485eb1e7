"""Tests for processing/medbind_processing/ptbxl.py on a miniature PTB-XL 1.0.3 folder and on the real scp_statements.csv."""

import datasets
import numpy as np
import pytest
import wfdb
from fixtures import raw_and_built, rows_by_study
from fixtures.public import PTBXL_RECORDS, ecg_signal, ptbxl_record_name, write_ptbxl

from medbind_processing.labels import ECG_SUPERCLASSES
from medbind_processing.ptbxl import (
    build_ptbxl,
    diagnostic_superclasses,
    fold_split,
    main,
    parse_scp_codes,
    read_diagnostic_classes,
)


ptbxl_root, ptbxl = raw_and_built("ptbxl", write_ptbxl, build_ptbxl)


def label_names(dataset_dict: datasets.DatasetDict, indices: list[int]) -> list[str]:
    return [dataset_dict["train"].features["labels"].feature.int2str(i) for i in indices]


def test_folds_one_to_eight_train_nine_validation_ten_test(ptbxl):
    assert {name: ds.num_rows for name, ds in ptbxl.items()} == {"train": 3, "validation": 1, "test": 1}
    splits = {study: split for study, (split, _) in rows_by_study(ptbxl).items()}
    assert splits == {1: "train", 2: "train", 3: "train", 1001: "validation", 1002: "test"}
    assert [fold_split(f) for f in (1, 8, 9, 10)] == ["train", "train", "validation", "test"]


@pytest.mark.parametrize("fold", [0, 11])
def test_fold_outside_one_to_ten_is_an_error(fold):
    with pytest.raises(ValueError, match="strat_fold"):
        fold_split(fold)


def test_every_field_comes_from_its_column(ptbxl, ptbxl_root):
    split, row = rows_by_study(ptbxl)[1001]
    assert row["ecg_path"] == str((ptbxl_root / "records100/01000/01001_lr").resolve())
    assert row["ecg_path_500hz"] == str((ptbxl_root / "records500/01000/01001_hr").resolve())
    assert row["sampling_rate"] == 100
    assert row["text"] == "sinus rhythm incomplete rbbb"  # stripped of the cell's surrounding blanks
    assert row["subject_id"] == 20372 and row["study_id"] == 1001 and row["hadm_id"] is None
    assert row["ecg_time"] == "1985-03-02T10:11:12"
    assert row["strat_fold"] == 9
    assert label_names(ptbxl, row["labels"]) == ["CD"]


def test_record_paths_open_with_wfdb_at_both_rates(ptbxl):
    _, row = rows_by_study(ptbxl)[2]
    low, high = wfdb.rdrecord(row["ecg_path"]), wfdb.rdrecord(row["ecg_path_500hz"])
    assert (low.fs, high.fs) == (100, 500)
    np.testing.assert_allclose(low.p_signal, ecg_signal(100, seed=2), atol=1e-3)


def test_superclasses_aggregate_every_diagnostic_code_whatever_its_likelihood(ptbxl):
    labels = {study: label_names(ptbxl, row["labels"]) for study, (_, row) in rows_by_study(ptbxl).items()}
    assert labels == {1: ["NORM"], 2: ["HYP", "MI"], 3: [], 1001: ["CD"], 1002: ["STTC"]}


def test_printed_label_counts_match_the_fixture(ptbxl_root, tmp_path, capsys):
    main(["--root", str(ptbxl_root), "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert "train: 3 rows" in printed and "validation: 1 rows" in printed and "test: 1 rows" in printed
    assert "labels: NORM=1, HYP=1, STTC=0, MI=1, CD=0, (none)=1" in printed
    reloaded = datasets.load_from_disk(str(tmp_path / "out"))
    assert reloaded["train"]["study_id"] == [1, 2, 3]


def test_real_statements_table_maps_to_the_five_superclasses(shared_data):
    classes = read_diagnostic_classes(shared_data / "ptbxl")
    assert set(classes.values()) == set(ECG_SUPERCLASSES)
    assert len(classes) == 44  # PTB-XL's 44 diagnostic statements
    assert {code: classes[code] for code in ("NORM", "IMI", "LVH", "NDT", "IRBBB")} == {
        "NORM": "NORM", "IMI": "MI", "LVH": "HYP", "NDT": "STTC", "IRBBB": "CD"}
    assert "SR" not in classes and "LVOLT" not in classes  # rhythm and form statements carry no superclass


def test_real_statements_aggregate_multi_class_records(shared_data):
    classes = read_diagnostic_classes(shared_data / "ptbxl")
    codes = parse_scp_codes("{'IMI': 15.0, 'ASMI': 100.0, 'ISC_': 0.0, 'CLBBB': 100.0, 'SR': 0.0}", ecg_id=7)
    assert diagnostic_superclasses(codes, classes) == ["STTC", "MI", "CD"]
    assert diagnostic_superclasses({"SR": 0.0, "LVOLT": 0.0, "PVC": 100.0}, classes) == []


def test_builder_runs_on_the_real_statements_table(tmp_path, shared_data):
    root = write_ptbxl(tmp_path, scp_statements=shared_data / "ptbxl" / "scp_statements.csv")
    built = build_ptbxl(root)
    labels = {study: label_names(built, row["labels"]) for study, (_, row) in rows_by_study(built).items()}
    assert labels == {1: ["NORM"], 2: ["HYP", "MI"], 3: [], 1001: ["CD"], 1002: ["STTC"]}


def test_malformed_scp_codes_name_the_record():
    with pytest.raises(ValueError, match="ecg_id 12.*scp_codes"):
        parse_scp_codes("NORM=100", ecg_id=12)


def test_missing_record_names_the_record_and_path(tmp_path):
    root = write_ptbxl(tmp_path, records=PTBXL_RECORDS[:2])
    (root / f"{ptbxl_record_name(2, 500)}.hea").unlink()
    with pytest.raises(FileNotFoundError, match="ecg_id 2: record header .*00002_hr.hea"):
        build_ptbxl(root)


def test_unknown_superclass_in_statements_table_is_an_error(tmp_path):
    root = write_ptbxl(tmp_path, records=PTBXL_RECORDS[:1])
    table = root / "scp_statements.csv"
    table.write_text(table.read_text().replace(",NORM,", ",NORMAL,"))
    with pytest.raises(ValueError, match="NORMAL"):
        build_ptbxl(root)
