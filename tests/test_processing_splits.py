"""Tests of processing/medbind_processing/splits.py: the shared patient-level split and the exact-size split."""

import pytest

from medbind_processing.splits import SPLIT_NAMES, patient_split, split_by_patient, split_exactly


def test_a_patient_lands_in_the_same_split_whatever_the_dataset_or_id_type():
    for subject in range(10000000, 10000200):
        assert patient_split(subject) == patient_split(str(subject)) == patient_split(float(subject))


def test_fractions_are_followed_on_many_patients_and_the_seed_changes_the_assignment():
    splits = [patient_split(subject) for subject in range(20000)]
    shares = [splits.count(name) / len(splits) for name in SPLIT_NAMES]
    assert shares == pytest.approx([0.7, 0.1, 0.2], abs=0.015)
    assert splits != [patient_split(subject, seed=1) for subject in range(20000)]
    assert {patient_split(subject, fractions=(0.0, 0.0, 1.0)) for subject in range(100)} == {"test"}


def test_split_by_patient_keeps_every_record_once_and_never_splits_a_patient():
    records = [{"subject_id": subject, "study_id": study} for subject in range(50) for study in range(3)]
    groups = split_by_patient(records)
    assert list(groups) == [name for name in SPLIT_NAMES if name in groups]
    kept = [(r["subject_id"], r["study_id"]) for rows in groups.values() for r in rows]
    assert sorted(kept) == [(r["subject_id"], r["study_id"]) for r in records]
    subjects = [{r["subject_id"] for r in rows} for rows in groups.values()]
    assert sum(len(s) for s in subjects) == len(set().union(*subjects)) == 50


def test_bad_fractions_and_missing_ids_are_errors():
    with pytest.raises(ValueError, match="fractions"):
        patient_split(1, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(KeyError, match="subject_id"):
        split_by_patient([{"patient": 1}])


def _images(counts: dict[str, int]) -> list[dict]:
    return [{"study_id": f"{label}-{number}", "label": label} for label, count in counts.items()
            for number in range(1, count + 1)]


def _sizes(groups: dict) -> dict:
    return {split: {label: sum(r["label"] == label for r in rows) for label in ("A", "B")}
            for split, rows in groups.items()}


def test_split_exactly_gives_exact_sizes_per_class_and_keeps_input_order():
    records = _images({"A": 10, "B": 30})
    groups = split_exactly(records, (0.5, 0.25, 0.25), stratify="label")
    assert _sizes(groups) == {"train": {"A": 5, "B": 15}, "validation": {"A": 3, "B": 8}, "test": {"A": 2, "B": 7}}
    for rows in groups.values():
        assert rows == sorted(rows, key=records.index)
    unstratified = split_exactly(records, (0.5, 0.25, 0.25))
    assert [len(rows) for rows in unstratified.values()] == [20, 10, 10]


def test_split_exactly_depends_on_the_seed_and_is_stable_for_one_seed():
    records = _images({"A": 40})
    assert split_exactly(records, (0.8, 0.0, 0.2), seed=3) == split_exactly(list(records), (0.8, 0.0, 0.2), seed=3)
    assert split_exactly(records, (0.8, 0.0, 0.2), seed=3)["test"] != split_exactly(records, (0.8, 0.0, 0.2))["test"]
    assert list(split_exactly(records, (0.8, 0.0, 0.2))) == ["train", "test"]  # an empty split is left out


def test_split_exactly_names_a_missing_field():
    with pytest.raises(KeyError, match="'label'"):
        split_exactly([{"study_id": "a"}], (0.8, 0.0, 0.2), stratify="label")
