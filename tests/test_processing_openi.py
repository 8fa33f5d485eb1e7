"""Tests for processing/medbind_processing/openi.py on a miniature copy of the Kaggle Open-I layout."""

import re

import datasets
import pytest
from fixtures import assert_radiographs_stored, raw_and_built
from fixtures.public import OPENI_REPORTS, write_openi

from medbind_processing.openi import build_openi, main, report_text


openi_root, openi = raw_and_built("openi", write_openi, build_openi)


def test_one_row_per_frontal_image_with_report_text(openi):
    assert list(openi) == ["test"]
    # uid 1: frontal + lateral; 2: frontal; 3: two frontal images; 4: no text; 5: lateral only
    assert openi["test"]["subject_id"] == [1, 2, 3, 3]
    assert set(openi["test"]["view"]) == {"Frontal"}


def test_text_is_findings_then_impression_without_deidentification_markers(openi):
    texts = dict(zip(openi["test"]["study_id"], openi["test"]["text"]))
    assert texts == {
        1: "The cardiac silhouette and mediastinum size are within normal limits. There is no pulmonary edema. "
           "Normal chest x-.",
        2: "No acute cardiopulmonary abnormality.",
        3: "Borderline cardiomegaly. Midline sternotomy. Enlarged pulmonary arteries.",
    }


@pytest.mark.parametrize(
    ("findings", "impression", "expected"),
    [
        ("Heart XXXX normal.", float("nan"), "Heart normal."),
        (float("nan"), "Clear lungs.", "Clear lungs."),
        ("A.", "B.", "A. B."),
        (float("nan"), float("nan"), ""),
        ("Lowercase xxxx stays.", "", "Lowercase xxxx stays."),
    ],
)
def test_report_text_rules(findings, impression, expected):
    assert report_text(findings, impression) == expected


def test_fields_and_image_paths(openi, openi_root):
    row = openi["test"][1]
    assert (row["subject_id"], row["study_id"], row["hadm_id"], row["study_time"]) == (2, 2, None, None)
    assert row["image"].size == (16, 16)
    assert row["image_path"] == str((openi_root / "images/images_normalized/2_IM-0002-1001.dcm.png").resolve())


def test_radiographs_are_stored_shrunk_with_their_original_path(openi_root):
    assert_radiographs_stored(lambda edge: build_openi(openi_root, shortest_edge=edge), 8)


def test_missing_image_names_the_uid_and_file(tmp_path):
    root = write_openi(tmp_path, reports=OPENI_REPORTS[:2])
    (root / "images/images_normalized/2_IM-0002-1001.dcm.png").unlink()
    with pytest.raises(FileNotFoundError, match="uid 2: image .*2_IM-0002-1001.dcm.png"):
        build_openi(root)


def test_projection_without_report_is_an_error(tmp_path):
    root = write_openi(tmp_path, reports=OPENI_REPORTS[:2])
    reports = root / "indiana_reports.csv"
    reports.write_text("\n".join(line for line in reports.read_text().splitlines() if not line.startswith("2,")))
    with pytest.raises(ValueError, match="uid 2 has no row in indiana_reports.csv"):
        build_openi(root)


def test_printed_row_count(openi_root, tmp_path, capsys):
    main(["--root", str(openi_root), "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert "test: 4 rows" in printed and re.search(r"^test +4 +3,269$", printed, re.MULTILINE)
    assert datasets.load_from_disk(str(tmp_path / "out"))["test"].num_rows == 4
