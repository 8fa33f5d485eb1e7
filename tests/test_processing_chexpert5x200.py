"""Tests for processing/medbind_processing/chexpert5x200.py on a miniature CheXpert-v1.0-small folder."""

import itertools
import random
import re

import pandas as pd
import pytest
from fixtures import assert_radiographs_stored, raw_and_built
from fixtures.public import CHEXPERT_IMAGES, write_chexpert

from medbind_processing.chexpert5x200 import (
    build_chexpert5x200,
    eligible_images,
    main,
    report_pieces,
    report_sentence,
    sample_5x200,
)
from medbind_processing.labels import CHEXPERT_COMPETITION_FINDINGS as COMPETITION_FINDINGS


chexpert_root, chexpert = raw_and_built("chexpert", write_chexpert, build_chexpert5x200, per_class=2)


def gloria_selection(table: pd.DataFrame, per_class: int) -> list[str]:
    """GLoRIA's procedure restated independently: one-hot over the 5 tasks, the other 8 observations all 0."""
    table = table.fillna(0)
    table = table[table["Frontal/Lateral"] == "Frontal"]
    others = ["Enlarged Cardiomediastinum", "Lung Lesion", "Lung Opacity", "Pneumonia", "Pneumothorax",
              "Pleural Other", "Fracture", "Support Devices"]
    paths = []
    for task in COMPETITION_FINDINGS:
        mask = pd.Series(True, index=table.index)
        for column in [*COMPETITION_FINDINGS, *others]:
            mask &= table[column] == float(column == task)
        paths += list(table[mask].sample(n=per_class, random_state=0)["Path"])
    return paths


def test_selection_equals_glorias(chexpert_root):
    table = pd.read_csv(chexpert_root / "train.csv")
    assert list(sample_5x200(table, per_class=2)["Path"]) == gloria_selection(table, per_class=2)


def test_only_single_finding_frontal_images_are_eligible(chexpert_root):
    table = pd.read_csv(chexpert_root / "train.csv")
    patients = {finding: sorted(int(p.split("/")[2][7:]) for p in eligible_images(table, finding)["Path"])
                for finding in COMPETITION_FINDINGS}
    # 30 lateral, 31 uncertain, 32 two findings, 33 pneumonia, 34 support device, 35 no finding: never eligible
    assert patients == {"Atelectasis": [10, 20], "Cardiomegaly": [11, 21], "Consolidation": [12, 22],
                        "Edema": [13, 23, 36], "Pleural Effusion": [14, 24]}


def test_two_hundred_per_class_becomes_per_class_rows_each_in_one_test_split(chexpert):
    assert list(chexpert) == ["test"]
    assert chexpert["test"].features["label"].names == list(COMPETITION_FINDINGS)
    assert sorted(chexpert["test"]["label"]) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_fields_come_from_path_and_view_columns(chexpert, chexpert_root):
    row = {row["subject_id"]: row for row in chexpert["test"]}[21]
    assert row["study_id"] == "patient00021/study1"
    assert row["view"] == "PA" and row["hadm_id"] is None and row["study_time"] is None
    assert chexpert["test"].features["label"].int2str(row["label"]) == "Cardiomegaly"
    assert row["image"].size == (16, 16)
    assert row["image_path"] == str((chexpert_root / "train/patient00021/study1/view1_frontal.jpg").resolve())


def all_sentences(groups: list[list[str]]) -> set[str]:
    """Every sentence MedCLIP's generate_chexpert_class_prompts lists for a class (the product of its groups)."""
    return {" ".join(" ".join(pieces).split()) for pieces in itertools.product(*groups)}


def test_the_prompt_file_ships_medclips_pieces_for_every_finding():
    pieces = report_pieces()
    assert list(pieces) == list(COMPETITION_FINDINGS)
    # MedCLIP prints these totals ("sample ... from total 210" etc.); Pleural Effusion puts location before subtype.
    assert [len(list(itertools.product(*groups))) for groups in pieces.values()] == [210, 15, 192, 18, 54]
    assert "small left bilateral pleural effusion" in all_sentences(pieces["Pleural Effusion"])


def test_every_row_has_a_medclip_sentence_of_its_own_finding(chexpert):
    pieces = report_pieces()
    names = chexpert["test"].features["label"].names
    for row in chexpert["test"]:
        assert row["text"] in all_sentences(pieces[names[row["label"]]])
        assert row["text"] == row["text"].strip() and "  " not in row["text"]


def test_sentences_are_seeded_by_seed_and_image(chexpert, chexpert_root):
    assert build_chexpert5x200(chexpert_root, per_class=2)["test"]["text"] == chexpert["test"]["text"]
    groups = report_pieces()["Atelectasis"]
    assert report_sentence(groups, random.Random("0:a")) == report_sentence(groups, random.Random("0:a"))
    drawn = {report_sentence(groups, random.Random(f"0:{image}")) for image in range(200)}
    assert len(drawn) > 100  # draws spread over the 210 sentences


def test_radiographs_are_stored_shrunk_with_their_original_path(chexpert_root):
    assert_radiographs_stored(lambda edge: build_chexpert5x200(chexpert_root, per_class=2, shortest_edge=edge), 8)


def test_full_size_folder_name_is_stripped_from_paths_too(tmp_path):
    assert build_chexpert5x200(write_chexpert(tmp_path, small=False), per_class=2)["test"].num_rows == 10


def test_too_few_eligible_images_names_the_finding(chexpert_root):
    with pytest.raises(ValueError, match="Atelectasis has 2 eligible frontal images, need 3"):
        build_chexpert5x200(chexpert_root, per_class=3)


def test_missing_image_names_the_path(tmp_path):
    root = write_chexpert(tmp_path, images=CHEXPERT_IMAGES)
    (root / "train/patient00010/study1/view1_frontal.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="patient00010/study1/view1_frontal.jpg"):
        build_chexpert5x200(root, per_class=2)


def test_printed_label_counts(chexpert_root, tmp_path, capsys):
    main(["--root", str(chexpert_root), "--out", str(tmp_path / "out"), "--per_class", "2"])
    printed = capsys.readouterr().out
    assert "test: 10 rows" in printed
    assert "label: Atelectasis=2, Cardiomegaly=2, Consolidation=2, Edema=2, Pleural Effusion=2" in printed
    assert re.search(r"^test +10 +1,000$", printed, re.MULTILINE)
    assert re.search(r"^  Edema +2 +200$", printed, re.MULTILINE)
