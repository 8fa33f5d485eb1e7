"""Tests for processing/medbind_processing/cpsc2018.py on a miniature CPSC2018 (REFERENCE.csv + Challenge 2020 WFDB records)."""

import datasets
import numpy as np
import pytest
import wfdb
from fixtures import raw_and_built, rows_by_study
from fixtures.public import CPSC2018_RECORDS, ecg_signal, write_cpsc2018

from medbind_processing.cpsc2018 import CPSC2018_CLASSES, SPLIT_FRACTIONS, build_cpsc2018, main, reference_labels
from medbind_processing.splits import patient_split


cpsc_root, cpsc = raw_and_built("cpsc", write_cpsc2018, build_cpsc2018)


def test_every_recording_is_kept_with_all_its_labels_in_class_order(cpsc):
    names = cpsc["train"].features["labels"].feature.names
    labels = {recording: [names[i] for i in row["labels"]] for recording, (_, row) in rows_by_study(cpsc).items()}
    expected = {recording: sorted({CPSC2018_CLASSES[c - 1] for c in codes}, key=CPSC2018_CLASSES.index)
                for recording, codes, _ in CPSC2018_RECORDS}
    assert labels == expected
    assert labels["A0003"] == ["AF", "PVC"] and labels["A0005"] == ["LBBB", "STD", "STE"]
    assert names == ["Normal", "AF", "I-AVB", "LBBB", "RBBB", "PAC", "PVC", "STD", "STE"]


def test_fields_and_record_paths(cpsc, cpsc_root):
    _, row = rows_by_study(cpsc)["A0007"]
    assert row["ecg_path"] == str((cpsc_root / "TrainingSet1" / "A0007").resolve())
    assert row["sampling_rate"] == 500
    assert row["subject_id"] == 7 and row["hadm_id"] is None and row["ecg_time"] is None
    record = wfdb.rdrecord(row["ecg_path"])
    assert record.sig_len == 60 * 500  # the full record: cropping to 10 s is the processor's job
    np.testing.assert_allclose(record.p_signal, ecg_signal(60 * 500, seed=6), atol=1e-3)


def test_split_is_train_and_test_by_the_shared_seeded_hash(cpsc):
    assert set(cpsc) <= {"train", "test"}
    assert sum(ds.num_rows for ds in cpsc.values()) == len(CPSC2018_RECORDS)
    for split, row in rows_by_study(cpsc).values():
        assert split == patient_split(row["subject_id"], 0, SPLIT_FRACTIONS)


def test_printed_label_counts_match_the_reference(cpsc_root, tmp_path, capsys):
    main(["--root", str(cpsc_root), "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    reloaded = datasets.load_from_disk(str(tmp_path / "out"))
    total = {name: 0 for name in CPSC2018_CLASSES}
    for _, codes, _ in CPSC2018_RECORDS:
        for code in set(codes):
            total[CPSC2018_CLASSES[code - 1]] += 1
    counted = {name: 0 for name in CPSC2018_CLASSES}
    for split, dataset in reloaded.items():
        line = next(line for line in printed.splitlines() if line.startswith(f"{split}: "))
        assert line == f"{split}: {dataset.num_rows} rows"
        for row in dataset["labels"]:
            for index in row:
                counted[CPSC2018_CLASSES[index]] += 1
    assert counted == total
    assert total == {"Normal": 3, "AF": 1, "I-AVB": 1, "LBBB": 1, "RBBB": 1, "PAC": 1, "PVC": 2, "STD": 2, "STE": 2}


@pytest.mark.parametrize("bad", [0, 10, 2.5, "AF"])
def test_label_outside_one_to_nine_names_the_recording(bad):
    with pytest.raises(ValueError, match="A0042: First_label must be a class code 1-9"):
        reference_labels({"Recording": "A0042", "First_label": bad})


def test_blank_second_and_third_labels_are_skipped():
    row = {"Recording": "A0001", "First_label": 5, "Second_label": float("nan"), "Third_label": None}
    assert reference_labels(row) == ["RBBB"]


def test_recording_without_label_is_an_error():
    with pytest.raises(ValueError, match="A0001: no label"):
        reference_labels({"Recording": "A0001", "First_label": float("nan")})


def test_missing_header_explains_the_accepted_layout(tmp_path):
    root = write_cpsc2018(tmp_path, records=CPSC2018_RECORDS[:2])
    (root / "TrainingSet2" / "A0002.hea").unlink()
    with pytest.raises(FileNotFoundError, match="A0002: no A0002.hea .*Challenge 2020"):
        build_cpsc2018(root)
