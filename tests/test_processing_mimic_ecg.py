"""Tests of processing/mimic_ecg.py: the paper's label rules and the builder on a miniature MIMIC-IV-ECG tree."""

import datasets
import pytest
import wfdb
from fixtures.mimic import ECG_SAMPLING_RATE, write_mimic_ecg, write_mimic_iv

from medbind.processing import mimic_ecg
from medbind.processing.common import render_ecg_report

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


@pytest.fixture(scope="module")
def rows(raw):
    ecg_root, mimic_iv = raw
    built = mimic_ecg.build_mimic_ecg(ecg_root, notes=ecg_root / "ecg_notes.csv", hosp=mimic_iv / "hosp")
    names = mimic_ecg.FEATURES["labels"].feature.names
    return {
        r["study_id"]: {**r, "split": split_name, "label_names": [names[i] for i in r["labels"]]}
        for split_name, split in built.items()
        for r in split
    }


def test_every_field_of_a_record(rows):
    row = rows[40000001]
    assert row["text"] == (
        "ECG presents Sinus rhythm. Additional findings include the following: Left ventricular hypertrophy, "
        "PVC(s), Abnormal ECG."
    )
    assert row["label_names"] == ["HYP", "STTC", "CD"]
    assert row["subject_id"] == 10000032 and row["hadm_id"] == 22000001
    assert row["ecg_time"] == "2180-05-08T20:00:00"
    assert row["ecg_path"].endswith("files/p1000/p10000032/s40000001/40000001")
    header = wfdb.rdheader(row["ecg_path"])
    assert row["sampling_rate"] == header.fs == ECG_SAMPLING_RATE
    assert header.sig_len == 10 * ECG_SAMPLING_RATE


def test_labels_of_the_fixture_records(rows):
    assert rows[40000002]["label_names"] == ["NORM"]
    assert rows[40000003]["label_names"] == []  # "Borderline ECG" excludes it
    assert rows[40000002]["hadm_id"] is None and rows[40000004]["hadm_id"] is None


def test_a_linked_cardiologist_note_replaces_the_machine_report(rows, raw):
    assert rows[40000004]["text"] == "Sinus tachycardia. Anterior infarct, age undetermined. Abnormal ECG."
    assert rows[40000004]["label_names"] == ["MI"]
    without_notes = {r["study_id"]: r for r in mimic_ecg.ecg_records(raw[0])}
    assert without_notes[40000004]["text"].startswith("ECG presents Sinus tachycardia.")
    assert without_notes[40000004]["labels"] == []


def test_a_patients_records_share_one_split(rows):
    assert rows[40000002]["split"] == rows[40000003]["split"]


def test_missing_record_and_notes_are_reported_by_name(tmp_path):
    root = write_mimic_ecg(tmp_path / "ecg")
    with pytest.raises(FileNotFoundError, match="notes.csv"):
        mimic_ecg.ecg_records(root, notes=tmp_path / "notes.csv")
    (root / "files/p1000/p10000032/s40000001/40000001.hea").unlink()
    with pytest.raises(FileNotFoundError, match="study 40000001"):
        mimic_ecg.ecg_records(root)


def test_command_line_saves_and_prints_label_counts(raw, tmp_path, capsys):
    ecg_root, _ = raw
    notes = str(ecg_root / "ecg_notes.csv")
    mimic_ecg.main(["--root", str(ecg_root), "--out", str(tmp_path / "out"), "--notes", notes])
    loaded = datasets.load_from_disk(str(tmp_path / "out"))
    assert sum(split.num_rows for split in loaded.values()) == 4
    totals = {}
    for line in capsys.readouterr().out.splitlines():
        if line.strip().startswith("labels:"):
            for item in line.split(": ", 1)[1].split(", "):
                name, count = item.split("=")
                totals[name] = totals.get(name, 0) + int(count)
    assert totals == {"NORM": 1, "HYP": 1, "STTC": 1, "MI": 1, "CD": 1, "(none)": 1}
