"""Tests of processing/medbind_processing/mimic_outcomes.py: the cohort, mortality, the readmission window, texts and
attached studies."""

import json
from datetime import datetime, timedelta

import datasets
import pandas as pd
import pytest
from fixtures import printed_label_totals
from fixtures.mimic import write_mimic_cxr, write_mimic_ecg, write_mimic_iv

from medbind_processing import mimic_outcomes

T0 = datetime(2180, 1, 1, 12, 0)
MORTALITY_TEXT = "Female patient, who is at the age of 52, was admitted as EW EMER.. Location: EMERGENCY ROOM."


def test_readmission_window_from_discharge_is_30_days_inclusive():
    admissions = pd.DataFrame({
        "subject_id": [1, 1, 2, 2, 3, 1],
        "admittime": [T0, T0 + timedelta(days=32), T0, T0 + timedelta(days=32, minutes=1), T0 + timedelta(days=5),
                      T0 + timedelta(days=90)],
        "dischtime": [T0 + timedelta(days=2), T0 + timedelta(days=33), T0 + timedelta(days=2),
                      T0 + timedelta(days=33), T0 + timedelta(days=6), T0 + timedelta(days=91)],
    })  # fmt: skip
    # Subject 1: readmitted exactly 30 days after discharge, then 57 days later (not); subject 2: 30 days + 1 min.
    assert list(mimic_outcomes.readmitted(admissions, "dischtime")) == [True, False, False, False, False, False]


def test_the_two_readings_of_the_papers_readmission_window_differ_as_computed_by_hand():
    day = timedelta(days=1)
    admissions = pd.DataFrame({
        "subject_id": [1, 1, 2, 2, 3, 3],
        "admittime": [T0, T0 + 35 * day, T0, T0 + 30 * day, T0, T0 + 30 * day + timedelta(minutes=1)],
        "dischtime": [T0 + 10 * day, T0 + 36 * day, T0 + day, T0 + 31 * day, T0 + 2 * day, T0 + 31 * day],
    })  # fmt: skip
    # Subject 1 returns 35 days after admission, 25 after discharge; subject 2 exactly 30 days after admission (29
    # after discharge); subject 3 30 days and 1 minute after admission (28 days and 1 minute after discharge).
    assert list(mimic_outcomes.readmitted(admissions, "admittime")) == [False, False, True, False, False, False]
    assert list(mimic_outcomes.readmitted(admissions, "dischtime")) == [True, False, True, False, True, False]
    with pytest.raises(ValueError, match="readmission_from"):
        mimic_outcomes.readmitted(admissions, "edregtime")


def test_studies_attach_within_24_hours_of_admission_nearest_first():
    admissions = [{"subject_id": 1, "admittime": T0}, {"subject_id": 2, "admittime": T0}]
    studies = [
        {"subject_id": 1, "study_id": 10, "time": T0 + timedelta(hours=23, minutes=59)},
        {"subject_id": 1, "study_id": 11, "time": T0 - timedelta(hours=2)},
        {"subject_id": 2, "study_id": 12, "time": T0 + timedelta(hours=24, minutes=1)},
        {"subject_id": 2, "study_id": 13, "time": None},
    ]
    assert mimic_outcomes.attach_studies(admissions, studies) == [11, None]
    assert mimic_outcomes.attach_studies(admissions, studies[:1]) == [10, None]


def test_mortality_text_follows_the_paper_template():
    assert mimic_outcomes.mortality_text("F", 52, "EW EMER.", "EMERGENCY ROOM") == MORTALITY_TEXT


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic")
    cxr_root, ecg_root = write_mimic_cxr(root / "cxr"), write_mimic_ecg(root / "ecg")
    mimic_iv = write_mimic_iv(root / "mimiciv")
    built = mimic_outcomes.build_mimic_outcomes(mimic_iv, mimic_iv / "note", cxr_root=cxr_root, ecg_root=ecg_root,
                                                admissions="all", readmission_from="dischtime")  # fmt: skip
    return {r["hadm_id"]: {**r, "split": name} for name, split in built.items() for r in split}


def test_the_papers_cohort_is_the_admissions_with_a_discharge_summary_readmitted_from_admittime(tmp_path):
    mimic_iv = write_mimic_iv(tmp_path / "mimiciv")
    built = mimic_outcomes.build_mimic_outcomes(mimic_iv, mimic_iv / "note", cxr_root=write_mimic_cxr(tmp_path / "cxr"))
    rows = {r["hadm_id"]: r for split in built.values() for r in split}
    # Discharge summaries exist for 22000001 and 22000003 only. 22000001's next admission starts 33 days 2 h after
    # its admittime (readmitted only when measured from discharge: exactly 30 days), 22000003's 31 days 23 h after.
    assert sorted(rows) == [22000001, 22000003]
    assert {h: (r["mortality"], r["readmission"]) for h, r in rows.items()} == {22000001: (0, 0), 22000003: (0, 0)}
    assert (rows[22000001]["cxr_study_id"], rows[22000003]["cxr_study_id"]) == (50000001, 50000006)
    with pytest.raises(ValueError, match="--note_dir"):
        mimic_outcomes.build_mimic_outcomes(mimic_iv)
    with pytest.raises(ValueError, match="admissions: expected one of"):
        mimic_outcomes.outcome_records(mimic_iv, mimic_iv / "note", admissions="some")


def test_every_field_of_an_admission(rows):
    row = rows[22000001]
    assert row["subject_id"] == 10000032 and row["admittime"] == "2180-05-06T10:00:00"
    assert row["mortality_text"] == MORTALITY_TEXT
    assert row["readmission_text"] == "Discharge summary: chest pain, mild cardiomegaly, discharged home."
    assert (row["mortality"], row["readmission"]) == (0, 1)
    assert (row["cxr_study_id"], row["ecg_study_id"]) == (50000001, None)  # the ECG is 58 h after admission


def test_mortality_comes_from_the_discharge_location_and_readmission_from_the_window(rows):
    # 22000003's next admission starts 30 days and 1 minute after discharge
    assert {h: (r["mortality"], r["readmission"]) for h, r in rows.items()} == {
        22000001: (0, 1), 22000002: (1, 0), 22000003: (0, 0), 22000004: (0, 0)}
    assert rows[22000003]["cxr_study_id"] == 50000006
    assert rows[22000002]["readmission_text"] is None
    assert rows[22000003]["mortality_text"].startswith("Male patient, who is at the age of 86")


def test_the_attached_studies_reports_are_stored_for_the_text_only_baseline(rows):
    assert rows[22000003]["cxr_text"] == "Right lower lobe opacity. Pneumonia."  # as the MIMIC-CXR dataset holds it
    assert rows[22000003]["ecg_study_id"] == 40000005  # an hour after admission
    assert rows[22000003]["ecg_text"] == ("ECG presents Sinus rhythm. Additional findings include the following: "
                                          "Left axis deviation.")  # fmt: skip
    assert rows[22000001]["cxr_text"].startswith("The heart is mildly enlarged.")
    assert rows[22000001]["ecg_text"] is None  # no ECG within 24 h of admission
    assert (rows[22000002]["cxr_text"], rows[22000002]["ecg_text"]) == (None, None)


def test_outcome_texts_are_the_attached_studies_own(tmp_path):
    mimic_iv = write_mimic_iv(tmp_path / "mimiciv")
    admitted = datetime(2181, 1, 1, 9, 0)
    cxr = [{"subject_id": 10000764, "study_id": 7, "time": admitted, "text": "CXR report seven."}]
    ecg = [{"subject_id": 10000764, "study_id": 8, "time": admitted + timedelta(hours=30), "text": "ECG eight."},
           {"subject_id": 10000032, "study_id": 9, "time": datetime(2180, 5, 6, 11), "text": "ECG nine."}]
    by_hadm = {r["hadm_id"]: r for r in mimic_outcomes.outcome_records(mimic_iv, None, cxr, ecg, admissions="all")}
    assert (by_hadm[22000003]["cxr_text"], by_hadm[22000003]["ecg_text"]) == ("CXR report seven.", None)
    assert (by_hadm[22000001]["ecg_study_id"], by_hadm[22000001]["ecg_text"]) == (9, "ECG nine.")


def test_a_patients_admissions_share_one_split(rows):
    assert rows[22000001]["split"] == rows[22000002]["split"]
    assert rows[22000003]["split"] == rows[22000004]["split"]


def test_command_line_saves_and_prints_outcome_counts(tmp_path, capsys):
    mimic_iv = write_mimic_iv(tmp_path / "mimiciv")
    argv = ["--root", str(mimic_iv), "--admissions", "all", "--readmission_from", "dischtime"]
    mimic_outcomes.main([*argv, "--out", str(tmp_path / "out")])
    loaded = datasets.load_from_disk(str(tmp_path / "out"))
    assert sum(split.num_rows for split in loaded.values()) == 4
    assert all(text is None for split in loaded.values() for text in split["readmission_text"])
    totals = printed_label_totals(capsys.readouterr().out, ("mortality", "readmission"))
    died, readmitted = totals["died"], totals["readmitted"]
    assert totals["survived"] + died == totals["not_readmitted"] + readmitted == 4
    assert (died, readmitted) == (1, 1)
    options = json.loads((tmp_path / "out" / "summary.json").read_text())["build_options"]
    assert (options["admissions"], options["readmission_from"]) == ("all", "dischtime")
    assert '| `readmission_from` | `"dischtime"` |' in (tmp_path / "out" / "README.md").read_text()


def test_admission_of_an_unknown_patient_is_an_error(tmp_path):
    mimic_iv = write_mimic_iv(tmp_path / "mimiciv")
    patients = pd.read_csv(mimic_iv / "hosp" / "patients.csv.gz")
    patients[patients["subject_id"] != 10000764].to_csv(mimic_iv / "hosp" / "patients.csv.gz", index=False)
    with pytest.raises(ValueError, match="10000764"):
        mimic_outcomes.outcome_records(mimic_iv, admissions="all")
