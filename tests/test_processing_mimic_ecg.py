"""Tests of processing/medbind_processing/mimic_ecg.py: the paper's label rules and the builder on a miniature MIMIC-IV-ECG tree."""

import json
import re

import datasets
import pytest
import wfdb
from fixtures import printed_label_totals
from fixtures.mimic import ECG_SAMPLING_RATE, write_mimic_ecg, write_mimic_iv

from medbind_processing import mimic_ecg
from medbind_processing.mimic_ecg import render_ecg_report

KEYWORD_CASES = [(name, keyword) for name, keywords in mimic_ecg.CLASS_KEYWORDS.items() for keyword in keywords]


def report(*statements: str) -> str:
    return render_ecg_report(["Sinus rhythm", *statements])


@pytest.mark.parametrize(("name", "keyword"), KEYWORD_CASES)
def test_every_keyword_labels_its_class_in_any_case(name, keyword):
    for variant in (keyword, keyword.upper(), keyword.lower()):
        assert name in mimic_ecg.ecg_labels_from_text(report(variant))


@pytest.mark.parametrize("phrase", mimic_ecg.EXCLUSION_PHRASES)
def test_every_exclusion_phrase_leaves_the_record_unlabelled(phrase):
    assert mimic_ecg.ecg_labels_from_text(report("Normal ECG")) == ["NORM"]
    assert mimic_ecg.ecg_labels_from_text(report(phrase.upper(), "Normal ECG")) == []
    assert mimic_ecg.ecg_labels_from_text(report("Normal ECG", phrase)) == []


def test_several_matching_classes_give_several_labels_in_class_order():
    text = report("Left ventricular hypertrophy", "PVC(s)", "Septal infarct")
    assert mimic_ecg.ecg_labels_from_text(text) == ["HYP", "STTC", "MI", "CD"]


def test_keywords_must_start_a_word():
    assert mimic_ecg.ecg_labels_from_text(report("Abnormal ECG")) == []
    assert mimic_ecg.ecg_labels_from_text(report("Incomplete RBBB")) == ["CD"]
    assert mimic_ecg.ecg_labels_from_text(report("Anteroseptal infarct")) == []
    assert mimic_ecg.ecg_labels_from_text(report("Sinus rhythm")) == []


def test_report_template_follows_the_paper():
    assert render_ecg_report(["Sinus rhythm.", None, "", "LVH", "Abnormal ECG"]) == (
        "ECG presents Sinus rhythm. Additional findings include the following: LVH, Abnormal ECG."
    )
    assert render_ecg_report(["Sinus rhythm"]) == "ECG presents Sinus rhythm."
    assert render_ecg_report([None, " "]) == ""


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic")
    return write_mimic_ecg(root / "mimic-iv-ecg"), write_mimic_iv(root / "mimiciv")


def rows_of(built: datasets.DatasetDict) -> dict:
    names = mimic_ecg.FEATURES["labels"].feature.names
    return {r["study_id"]: {**r, "split": split_name, "label_names": [names[i] for i in r["labels"]]}
            for split_name, split in built.items() for r in split}  # fmt: skip


@pytest.fixture(scope="module")
def rows(raw):
    """Every record (`all_records`), as the builder wrote them before the paper's single-label default."""
    ecg_root, mimic_iv = raw
    notes, hosp = ecg_root / "ecg_notes.csv", mimic_iv / "hosp"
    return rows_of(mimic_ecg.build_mimic_ecg(ecg_root, notes=notes, hosp=hosp, all_records=True))


@pytest.fixture(scope="module")
def single_label(raw):
    ecg_root, mimic_iv = raw
    return mimic_ecg.build_mimic_ecg(ecg_root, notes=ecg_root / "ecg_notes.csv", hosp=mimic_iv / "hosp")


def test_by_default_only_records_with_exactly_one_class_are_kept(single_label, rows):
    kept = rows_of(single_label)
    assert {study: row["label_names"] for study, row in kept.items()} == {
        40000002: ["NORM"], 40000004: ["MI"], 40000005: ["CD"]}
    assert rows[40000001]["label_names"] == ["HYP", "STTC", "CD"] and rows[40000003]["label_names"] == []
    assert single_label["train"].features == mimic_ecg.FEATURES  # one schema: `labels` stays a list
    assert all(kept[study] == {**rows[study], "split": kept[study]["split"]} for study in kept)


def test_without_notes_the_noted_record_is_unlabelled_and_left_out(raw):
    assert [r["study_id"] for r in mimic_ecg.ecg_records(raw[0])] == [40000002, 40000005]
    assert len(mimic_ecg.ecg_records(raw[0], all_records=True)) == 5


def test_a_missing_record_of_a_left_out_study_does_not_stop_the_default_build(tmp_path):
    root = write_mimic_ecg(tmp_path / "ecg")
    (root / "files/p1000/p10000032/s40000001/40000001.hea").unlink()  # HYP + STTC + CD: not in the paper's set
    assert [r["study_id"] for r in mimic_ecg.ecg_records(root)] == [40000002, 40000005]
    with pytest.raises(FileNotFoundError, match="study 40000001"):
        mimic_ecg.ecg_records(root, all_records=True)


def test_every_field_of_a_record(rows):
    row = rows[40000001]
    assert row["text"] == ("ECG presents Sinus rhythm. Additional findings include the following: Left ventricular "
                           "hypertrophy, PVC(s), Abnormal ECG.")  # fmt: skip
    assert row["label_names"] == ["HYP", "STTC", "CD"]
    assert row["subject_id"] == 10000032 and row["hadm_id"] == 22000001
    assert row["ecg_time"] == "2180-05-08T20:00:00"
    assert row["ecg_path"].endswith("files/p1000/p10000032/s40000001/40000001")
    header = wfdb.rdheader(row["ecg_path"])
    assert row["sampling_rate"] == header.fs == ECG_SAMPLING_RATE
    assert header.sig_len == 10 * ECG_SAMPLING_RATE


def test_labels_of_the_fixture_records(rows):
    assert (rows[40000002]["label_names"], rows[40000003]["label_names"]) == (["NORM"], [])  # "Borderline ECG": none
    assert rows[40000002]["hadm_id"] is None and rows[40000004]["hadm_id"] is None


def test_a_linked_cardiologist_note_replaces_the_machine_report(rows, raw):
    assert rows[40000004]["text"] == "Sinus tachycardia. Anterior infarct, age undetermined. Abnormal ECG."
    assert rows[40000004]["label_names"] == ["MI"]
    without_notes = {r["study_id"]: r for r in mimic_ecg.ecg_records(raw[0], all_records=True)}
    assert without_notes[40000004]["text"].startswith("ECG presents Sinus tachycardia.")
    assert without_notes[40000004]["labels"] == []


def test_a_patients_records_share_one_split(rows):
    assert rows[40000002]["split"] == rows[40000003]["split"]


def test_missing_record_and_notes_are_reported_by_name(tmp_path):
    root = write_mimic_ecg(tmp_path / "ecg")
    with pytest.raises(FileNotFoundError, match="notes.csv"):
        mimic_ecg.ecg_records(root, notes=tmp_path / "notes.csv")
    (root / "files/p1000/p10001217/s40000002/40000002.hea").unlink()
    with pytest.raises(FileNotFoundError, match="study 40000002"):
        mimic_ecg.ecg_records(root)


def test_command_line_prints_and_saves_the_counts_next_to_the_papers(raw, tmp_path, capsys):
    ecg_root, _ = raw
    out = tmp_path / "out"
    mimic_ecg.main(["--root", str(ecg_root), "--out", str(out), "--notes", str(ecg_root / "ecg_notes.csv")])
    loaded = datasets.load_from_disk(str(out))
    assert sum(split.num_rows for split in loaded.values()) == 3
    printed = capsys.readouterr().out
    assert printed_label_totals(printed) == {"NORM": 1, "HYP": 0, "STTC": 0, "MI": 1, "CD": 1, "(none)": 0}
    assert re.search(r"^  NORM +1 +34,097$", printed, re.MULTILINE)
    assert re.search(r"^validation +\d+ +12,065$", printed, re.MULTILINE)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"]["labels"]["CD"] == {"rows": 1, "paper": 31_438}
    assert summary["build_options"] == {"root": "<path>", "notes": "<path>", "hosp": None, "seed": 0,
                                        "all_records": False}


def test_all_records_flag_keeps_the_multi_label_and_unlabelled_records(raw, tmp_path, capsys):
    ecg_root, _ = raw
    argv = ["--root", str(ecg_root), "--out", str(tmp_path / "out"), "--notes", str(ecg_root / "ecg_notes.csv")]
    mimic_ecg.main([*argv, "--all_records"])
    assert printed_label_totals(capsys.readouterr().out) == {
        "NORM": 1, "HYP": 1, "STTC": 1, "MI": 1, "CD": 2, "(none)": 1}
