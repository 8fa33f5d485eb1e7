"""Tests of processing/medbind_processing/mimic_cxr.py on a miniature MIMIC-CXR-JPG tree (tests/fixtures/mimic.py)."""

import json
import re
from datetime import datetime

import datasets
import pytest
from fixtures import assert_radiographs_stored, printed_label_totals
from fixtures.mimic import gzip_bytes, write_mimic_cxr, write_mimic_iv

from medbind_processing import mimic_cxr


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic")
    return write_mimic_cxr(root / "mimic-cxr-jpg"), write_mimic_iv(root / "mimiciv")


@pytest.fixture(scope="module")
def rows(raw):
    cxr_root, mimic_iv = raw
    built = mimic_cxr.build_mimic_cxr(cxr_root, hosp=mimic_iv / "hosp")
    return {r["study_id"]: {**r, "split": name} for name, split in built.items() for r in split}


def test_clean_report_keeps_findings_then_impression_without_deid_markers():
    report = "INDICATION: ___ cough.\n FINDINGS:\n Heart size normal.\n Dr. ___ informed.\n IMPRESSION: Clear.\n"
    assert mimic_cxr.clean_report(report) == "Heart size normal. Dr. informed. Clear."
    assert mimic_cxr.clean_report("FINDINGS AND IMPRESSION: No change.\nRECOMMENDATION(S): none") == "No change."
    assert mimic_cxr.clean_report("EXAMINATION: chest\nWET READ: ___ no acute process") == ""


def test_the_both_sections_rule_needs_a_findings_and_an_impression():
    assert mimic_cxr.clean_report("FINDINGS: Clear.\nIMPRESSION: Normal.", "both") == "Clear. Normal."
    assert mimic_cxr.clean_report("FINDINGS AND IMPRESSION: No change.", "both") == "No change."
    assert mimic_cxr.clean_report("IMPRESSION: Normal.", "both") == ""
    assert mimic_cxr.clean_report("IMPRESSION: Normal.", "either") == "Normal."
    assert mimic_cxr.clean_report("FINDINGS: ___\nIMPRESSION: Normal.", "both") == ""  # empty once cleaned
    with pytest.raises(ValueError, match="report_sections"):
        mimic_cxr.clean_report("IMPRESSION: Normal.", "findings")


def test_study_time_reads_dates_and_times_that_lost_their_leading_zero():
    assert mimic_cxr.study_time(21810102, "84512.0") == datetime(2181, 1, 2, 8, 45, 12)
    assert mimic_cxr.study_time(21800506, 90000.123) == datetime(2180, 5, 6, 9, 0, 0)
    with pytest.raises(ValueError, match="StudyDate/StudyTime"):
        mimic_cxr.study_time("May 6", "noon")


def test_only_frontal_studies_with_findings_or_impression_are_kept(rows):
    # 50000002 is lateral only, 50000003 has no findings / impression section.
    assert sorted(rows) == [50000001, 50000004, 50000005, 50000006]


def test_the_both_sections_cohort_drops_an_impression_only_report(raw):
    cxr_root, _ = raw
    # 50000001 and 50000006 have both sections, 50000004 a combined one; 50000005 has an impression only.
    built = mimic_cxr.build_mimic_cxr(cxr_root, report_sections="both")
    assert sorted(r["study_id"] for split in built.values() for r in split) == [50000001, 50000004, 50000006]


def test_pa_is_preferred_over_ap_and_lateral(rows):
    assert rows[50000001]["view"] == "PA"
    assert rows[50000001]["image_path"].endswith("files/p10/p10000032/s50000001/cc-pa.jpg")
    assert rows[50000001]["image"].size == (64, 64)
    assert rows[50000006]["view"] == "AP"


def test_radiographs_are_stored_shrunk_with_their_original_path(raw):
    cxr_root, _ = raw
    assert_radiographs_stored(lambda edge: mimic_cxr.build_mimic_cxr(cxr_root, shortest_edge=edge), 32)


def test_every_field_of_a_study(rows):
    row = rows[50000001]
    assert row["text"] == ("The heart is mildly enlarged. No focal consolidation. Dr. was notified at . "
                           "Mild cardiomegaly.")  # fmt: skip
    assert (row["subject_id"], row["study_time"]) == (10000032, "2180-05-06T09:00:00")
    # Uncertain (-1) and negative (0) observations are not labels.
    names = mimic_cxr.FEATURES["labels"].feature.names
    assert [names[i] for i in row["labels"]] == ["Cardiomegaly"]
    assert [names[i] for i in rows[50000006]["labels"]] == ["Lung Opacity", "Pneumonia"]
    assert rows[50000006]["text"] == "Right lower lobe opacity. Pneumonia."


def test_hadm_id_comes_from_the_admission_the_study_falls_into_including_its_ed_stay(rows):
    assert rows[50000001]["hadm_id"] == 22000001  # taken in the ED an hour before admission
    assert rows[50000006]["hadm_id"] == 22000003
    assert rows[50000004]["hadm_id"] is None  # never admitted


def test_a_patients_studies_share_one_split(rows):
    subjects = {row["subject_id"] for row in rows.values()}
    assert len({(row["subject_id"], row["split"]) for row in rows.values()}) == len(subjects)


def test_reports_may_be_an_unzipped_folder_and_hosp_is_optional(tmp_path):
    root = write_mimic_cxr(tmp_path / "cxr", reports_as_folder=True)
    built = mimic_cxr.build_mimic_cxr(root, reports=root / "reports")
    assert sum(split.num_rows for split in built.values()) == 4
    assert all(h is None for split in built.values() for h in split["hadm_id"])


def test_missing_image_and_missing_column_are_reported_by_name(tmp_path):
    root = write_mimic_cxr(tmp_path / "cxr")
    (root / "files/p10/p10000032/s50000001/cc-pa.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="cc-pa"):
        mimic_cxr.cxr_records(root)
    (root / "mimic-cxr-2.0.0-chexpert.csv.gz").write_bytes(gzip_bytes("subject_id,study_id\n1,2\n"))
    with pytest.raises(ValueError, match="mimic-cxr-2.0.0-chexpert.csv.gz: missing column"):
        mimic_cxr.chexpert_labels(root)


def test_command_line_saves_and_prints_label_counts(raw, tmp_path, capsys):
    cxr_root, mimic_iv = raw
    out = tmp_path / "out"
    mimic_cxr.main(["--root", str(cxr_root), "--out", str(out), "--hosp", str(mimic_iv / "hosp"), "--num_proc", "2"])
    loaded = datasets.load_from_disk(str(out))
    assert sum(split.num_rows for split in loaded.values()) == 4
    assert "credentialed" in (out / "README.md").read_text()
    assert json.loads((out / "summary.json").read_text())["total"] == {"rows": 4, "paper": 123_711}
    assert "| all | 4 | 123,711 |" in (out / "README.md").read_text()
    printed = capsys.readouterr().out
    assert re.search(r"^train +\d+ +86,853$", printed, re.MULTILINE)
    total = printed_label_totals(printed)
    assert {name: total[name] for name in ("Cardiomegaly", "No Finding", "Pneumonia")} == {
        "Cardiomegaly": 1, "No Finding": 2, "Pneumonia": 1}  # fmt: skip


def test_command_line_takes_the_both_sections_cohort(raw, tmp_path):
    cxr_root, _ = raw
    both = tmp_path / "both"
    mimic_cxr.main(["--root", str(cxr_root), "--out", str(both), "--report_sections", "both", "--shortest_edge", "0"])
    assert json.loads((both / "summary.json").read_text())["total"] == {"rows": 3, "paper": 123_711}
