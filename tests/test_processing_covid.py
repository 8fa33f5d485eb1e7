"""Tests for processing/medbind_processing/covid.py on miniature copies of the COVID-19 Radiography Database and COVID-QU-Ex layouts."""

import json
import re
from pathlib import Path

import datasets
import pytest
from fixtures import assert_radiographs_stored, raw_and_built
from fixtures.public import write_covid_qu_ex, write_covid_radiography

from medbind_processing import covid
from medbind_processing.covid import build_covid, main
from medbind_processing.splits import split_exactly


radiography_root, radiography = raw_and_built("radiography", write_covid_radiography, build_covid)
covidqu_root, covidqu = raw_and_built("covidqu", write_covid_qu_ex, build_covid, source="covidqu")


def label_counts(dataset: datasets.Dataset) -> dict[str, int]:
    names = dataset.features["label"].names
    return {name: dataset["label"].count(index) for index, name in enumerate(names)}


# ---- COVID-19 Radiography Database (the default, the paper's source) -----------------------------------------------


def test_the_split_by_image_reproduces_the_papers_11028_and_2780():
    records = [{"study_id": f"{label}-{n}", "label": label}
               for label, count in (("COVID-19", 3_616), ("Normal", 10_192)) for n in range(1, count + 1)]
    groups = split_exactly(records, covid.SPLIT_FRACTIONS, stratify="label")
    sizes = {split: {label: sum(r["label"] == label for r in rows) for label in ("Normal", "COVID-19")}
             for split, rows in groups.items()}
    assert sizes == {"train": {"Normal": 8_140, "COVID-19": 2_888}, "test": {"Normal": 2_052, "COVID-19": 728}}


def test_radiography_is_the_default_source_split_into_train_and_test_per_class(radiography):
    assert list(radiography) == ["train", "test"]
    # 10 COVID and 30 Normal images: 2,780 / 13,808 of each class (2.01 and 6.04) to test.
    assert {split: label_counts(ds) for split, ds in radiography.items()} == {
        "train": {"Normal": 24, "COVID-19": 8}, "test": {"Normal": 6, "COVID-19": 2}}


def test_class_folders_give_the_evaluations_class_names_and_other_classes_are_left_out(radiography):
    rows = [row for split in radiography.values() for row in split]
    folders = {Path(row["image_path"]).parents[1].name: radiography["train"].features["label"].int2str(row["label"])
               for row in rows}
    assert folders == {"COVID": "COVID-19", "Normal": "Normal"}
    assert {row["study_id"] for row in rows} == {f"COVID-{n}" for n in range(1, 11)} | {
        f"Normal-{n}" for n in range(1, 31)}
    assert radiography["test"][0]["image"].size == (16, 16)


def test_the_split_is_seeded_and_a_rebuild_gives_the_same_one(radiography, radiography_root):
    assert build_covid(radiography_root)["test"]["study_id"] == radiography["test"]["study_id"]
    assert build_covid(radiography_root, seed=1)["test"]["study_id"] != radiography["test"]["study_id"]


def test_more_classes_on_request_and_root_may_be_the_database_folder(radiography_root):
    built = build_covid(radiography_root / "COVID-19_Radiography_Dataset",
                        classes=["Normal", "COVID-19", "Lung Opacity", "Viral Pneumonia"])
    assert built["train"].features["label"].names == ["Normal", "COVID-19", "Lung Opacity", "Viral Pneumonia"]
    total = {name: sum(label_counts(split)[name] for split in built.values()) for name in label_counts(built["test"])}
    assert total == {"Normal": 30, "COVID-19": 10, "Lung Opacity": 3, "Viral Pneumonia": 2}


def test_wrong_class_subset_or_layout_is_an_error_naming_it(radiography_root, tmp_path):
    with pytest.raises(ValueError, match=r"source 'radiography' must be distinct names among .*'Lung Opacity'"):
        build_covid(radiography_root, classes=["Non-COVID"])
    with pytest.raises(ValueError, match="distinct"):
        build_covid(radiography_root, classes=["Normal", "Normal"])
    with pytest.raises(ValueError, match="subsets belong to COVID-QU-Ex"):
        build_covid(radiography_root, subset="Lung Segmentation Data")
    with pytest.raises(ValueError, match="source must be one of"):
        build_covid(radiography_root, source="kaggle")
    with pytest.raises(FileNotFoundError, match="none of the class folders"):
        build_covid(tmp_path)
    root = write_covid_radiography(tmp_path / "partial", images={"COVID": 1})
    with pytest.raises(FileNotFoundError, match="Normal/images not found"):
        build_covid(root)


def test_radiographs_are_stored_shrunk_with_their_original_path(radiography_root):
    assert_radiographs_stored(lambda edge: build_covid(radiography_root, shortest_edge=edge), 8)


def test_command_line_prints_and_saves_the_counts_next_to_the_papers(radiography_root, tmp_path, capsys):
    out = tmp_path / "out"
    main(["--root", str(radiography_root), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "train: 32 rows\n  label: Normal=24, COVID-19=8" in printed
    assert re.search(r"^test +8 +2,780$", printed, re.MULTILINE)
    assert re.search(r"^  COVID-19 +10 +3,616$", printed, re.MULTILINE)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"]["train"] == {"rows": 32, "paper": 11_028}
    assert summary["build_options"]["source"] == "radiography"
    assert "COVID-19 Radiography Database" in (out / "README.md").read_text()


# ---- COVID-QU-Ex (--source covidqu) --------------------------------------------------------------------------------


def test_covidqu_folders_become_splits_and_non_covid_is_left_out(covidqu):
    assert list(covidqu) == ["train", "validation", "test"]
    assert {split: label_counts(ds) for split, ds in covidqu.items()} == {
        "train": {"Normal": 2, "COVID-19": 3}, "validation": {"Normal": 1, "COVID-19": 1},
        "test": {"Normal": 1, "COVID-19": 2}}


def test_covidqu_label_comes_from_the_class_folder(covidqu, covidqu_root):
    folders = {Path(row["image_path"]).parents[1].name: covidqu["train"].features["label"].int2str(row["label"])
               for row in covidqu["train"]}
    assert folders == {"Normal": "Normal", "COVID-19": "COVID-19"}
    assert all(Path(path).is_relative_to(covidqu_root.resolve() / "Lung Segmentation Data")
               for path in covidqu["train"]["image_path"])
    assert sorted(covidqu["train"]["study_id"]) == ["Normal (1)", "Normal (2)", "covid_1", "covid_2", "covid_3"]
    assert covidqu["train"][0]["image"].size == (16, 16)


def test_covidqu_third_class_and_infection_subset_on_request(covidqu_root):
    built = build_covid(covidqu_root, source="covidqu", subset="Infection Segmentation Data",
                        classes=["Normal", "COVID-19", "Non-COVID"])
    assert built["train"].features["label"].names == ["Normal", "COVID-19", "Non-COVID"]
    assert label_counts(built["test"]) == {"Normal": 1, "COVID-19": 1, "Non-COVID": 1}


def test_covidqu_root_may_be_the_subset_folder_itself(covidqu_root):
    subset = covidqu_root / "Lung Segmentation Data" / "Lung Segmentation Data"
    assert build_covid(subset, source="covidqu")["train"].num_rows == 5


def test_covidqu_unknown_class_subset_and_missing_layout_are_errors(covidqu_root, tmp_path):
    with pytest.raises(ValueError, match="source 'covidqu' must be distinct names among"):
        build_covid(covidqu_root, source="covidqu", classes=["Pneumonia"])
    with pytest.raises(ValueError, match="subset must be one of"):
        build_covid(covidqu_root, source="covidqu", subset="Masks")
    with pytest.raises(FileNotFoundError, match="no Train/Val/Test folder"):
        build_covid(tmp_path, source="covidqu")


def test_covidqu_missing_class_folder_is_named(tmp_path):
    root = write_covid_qu_ex(tmp_path, images={"Train": {"COVID-19": 1, "Non-COVID": 1}})
    with pytest.raises(FileNotFoundError, match="Train/Normal/images not found"):
        build_covid(root, source="covidqu")


def test_covidqu_printed_label_counts(covidqu_root, tmp_path, capsys):
    main(["--root", str(covidqu_root), "--out", str(tmp_path / "out"), "--source", "covidqu"])
    printed = capsys.readouterr().out
    assert "train: 5 rows\n  label: Normal=2, COVID-19=3" in printed
    assert "test: 3 rows\n  label: Normal=1, COVID-19=2" in printed
