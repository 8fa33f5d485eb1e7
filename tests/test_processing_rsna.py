"""Tests for processing/medbind_processing/rsna.py on a miniature RSNA Pneumonia layout and on a real RSNA DICOM."""

from pathlib import Path

import datasets
import numpy as np
import pydicom
import pytest
from fixtures import assert_radiographs_stored, raw_and_built, rows_by_study
from fixtures.public import RSNA_PATIENTS, rsna_pixels, write_rsna, write_rsna_dicom
from PIL import Image

from medbind_processing.rsna import SPLIT_FRACTIONS, build_rsna, dicom_to_image, main
from medbind_processing.splits import patient_split

REAL_PATIENT = "16d7f894-55d7-4d95-8957-d18987f0e981"  # the PatientID inside rsna_example.dcm


rsna_root, rsna = raw_and_built("rsna", write_rsna, build_rsna)


def test_one_row_per_patient_labelled_by_target(rsna):
    rows, names = rows_by_study(rsna), rsna["train"].features["label"].names
    assert len(rows) == len(RSNA_PATIENTS) and names == ["Normal", "Pneumonia"]  # patients with two boxes: one row
    labels = {patient: names[row["label"]] for patient, (_, row) in rows.items()}
    assert labels == {patient: "Pneumonia" if boxes else "Normal" for patient, boxes, *_ in RSNA_PATIENTS}


def test_split_is_the_shared_seeded_hash_of_the_patient(rsna):
    for patient, (split, _) in rows_by_study(rsna).items():
        assert split == patient_split(patient, 0, SPLIT_FRACTIONS)


def test_dicom_pixels_and_view_are_kept_and_monochrome1_is_inverted(rsna):
    rows = rows_by_study(rsna)
    for seed, (patient, _, _, view, photometric) in enumerate(RSNA_PATIENTS):
        row = rows[patient][1]
        expected = 255 - rsna_pixels(seed) if photometric == "MONOCHROME1" else rsna_pixels(seed)
        assert row["image"].mode == "L"
        np.testing.assert_array_equal(np.asarray(row["image"]), expected)
        assert row["view"] == view


def test_png_copies_are_read_without_a_view(tmp_path):
    built = build_rsna(write_rsna(tmp_path, patients=RSNA_PATIENTS[:3], image_format="png"))
    rows = rows_by_study(built)
    np.testing.assert_array_equal(np.asarray(rows[RSNA_PATIENTS[1][0]][1]["image"]), rsna_pixels(1))
    assert {row["view"] for _, row in rows.values()} == {None}


def test_twelve_bit_dicom_is_scaled_by_its_stored_bit_depth(tmp_path):
    # The image processor's decoder: 0..4095 maps to 0..255, so the builder stores what inference reads.
    pixels = np.array([[1000, 2000], [3000, 4000]], dtype=np.uint16)
    write_rsna_dicom(tmp_path / "a.dcm", pixels, "a", "AP", bits_stored=12)
    image, view = dicom_to_image(tmp_path / "a.dcm")
    np.testing.assert_array_equal(np.asarray(image), np.round(pixels / 4095 * 255))
    assert view == "AP"


def test_real_rsna_dicom_decodes_to_its_jpeg_pixels(shared_data):
    path = shared_data / "cxr" / "rsna_example.dcm"
    image, view = dicom_to_image(path)
    assert (image.mode, image.size, view) == ("L", (1024, 1024), "PA")
    np.testing.assert_array_equal(np.asarray(image), pydicom.dcmread(path).pixel_array)


def test_builder_reads_a_real_rsna_dicom(tmp_path, shared_data):
    root = write_rsna(tmp_path, patients=[])
    real = (shared_data / "cxr" / "rsna_example.dcm").read_bytes()
    (root / "stage_2_train_images" / f"{REAL_PATIENT}.dcm").write_bytes(real)
    (root / "stage_2_train_labels.csv").write_text(f"patientId,x,y,width,height,Target\n{REAL_PATIENT},,,,,0\n")
    (_, row), = rows_by_study(build_rsna(root)).values()
    assert row["image"].size == (512, 512) and row["view"] == "PA" and row["label"] == 0
    assert row["image_path"] == str((root / "stage_2_train_images" / f"{REAL_PATIENT}.dcm").resolve())
    full, _ = dicom_to_image(Path(row["image_path"]))
    expected = np.asarray(full.resize((512, 512), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(np.asarray(row["image"]), expected)
    (_, original), = rows_by_study(build_rsna(root, shortest_edge=0)).values()
    np.testing.assert_array_equal(np.asarray(original["image"]), np.asarray(full))


def test_radiographs_are_stored_shrunk_with_their_original_path(tmp_path):
    dicoms = build_rsna(write_rsna(tmp_path / "dcm", patients=RSNA_PATIENTS[:3]), shortest_edge=8)
    assert {row["image"].size for split in dicoms.values() for row in split} == {(8, 8)}
    assert all(path.endswith(".dcm") for split in dicoms.values() for path in split["image_path"])
    pngs = write_rsna(tmp_path / "png", patients=RSNA_PATIENTS[:3], image_format="png")
    assert_radiographs_stored(lambda edge: build_rsna(pngs, shortest_edge=edge), 8)


def test_worker_processes_decode_the_same_images(tmp_path, rsna):
    # a fresh folder, so that datasets' generator cache cannot hand back the single-process build
    parallel = build_rsna(write_rsna(tmp_path), num_proc=2)
    assert {split: ds["study_id"] for split, ds in parallel.items()} == {
        split: ds["study_id"] for split, ds in rsna.items()}
    for split, dataset in parallel.items():
        for mine, theirs in zip(dataset, rsna[split]):
            np.testing.assert_array_equal(np.asarray(mine["image"]), np.asarray(theirs["image"]))


def test_disagreeing_targets_and_missing_images_are_errors(tmp_path):
    root = write_rsna(tmp_path, patients=RSNA_PATIENTS[3:4])
    labels = root / "stage_2_train_labels.csv"
    text = labels.read_text()
    labels.write_text(text[: text.rindex(",1")] + ",0\n")
    with pytest.raises(ValueError, match="00436515-870c-4b36-a041-de91049b9ab4: rows disagree on Target"):
        build_rsna(root)
    labels.write_text(text)
    (root / "stage_2_train_images" / f"{RSNA_PATIENTS[3][0]}.dcm").unlink()
    with pytest.raises(FileNotFoundError, match="no image for patientId 00436515"):
        build_rsna(root)


def test_printed_label_counts(rsna_root, tmp_path, capsys):
    main(["--root", str(rsna_root), "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert "18,678" in printed and "5,338" in printed
    reloaded = datasets.load_from_disk(str(tmp_path / "out"))
    for split, dataset in reloaded.items():
        normal, pneumonia = dataset["label"].count(0), dataset["label"].count(1)
        assert f"{split}: {dataset.num_rows} rows\n  label: Normal={normal}, Pneumonia={pneumonia}" in printed
    assert sum(ds["label"].count(1) for ds in reloaded.values()) == 5
