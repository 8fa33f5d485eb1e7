"""Tests for processing/covid.py on a miniature copy of the COVID-QU-Ex Kaggle layout."""

from pathlib import Path

import datasets
import pytest
from fixtures.public import write_covid_qu_ex

from medbind.processing.covid import build_covid, main


@pytest.fixture(scope="module")
def covid_root(tmp_path_factory) -> Path:
    return write_covid_qu_ex(tmp_path_factory.mktemp("covid"))


@pytest.fixture(scope="module")
def covid(covid_root) -> datasets.DatasetDict:
    return build_covid(covid_root)


def label_counts(dataset: datasets.Dataset) -> dict[str, int]:
    names = dataset.features["label"].names
    return {name: dataset["label"].count(index) for index, name in enumerate(names)}


def test_dataset_folders_become_splits_and_non_covid_is_left_out(covid):
    assert list(covid) == ["train", "validation", "test"]
    assert {split: label_counts(ds) for split, ds in covid.items()} == {
        "train": {"Normal": 2, "COVID-19": 3}, "validation": {"Normal": 1, "COVID-19": 1},
        "test": {"Normal": 1, "COVID-19": 2}}


def test_label_comes_from_the_class_folder(covid, covid_root):
    raw = covid["train"].cast_column("image", datasets.Image(decode=False))
    folders = {Path(row["image"]["path"]).parents[1].name: covid["train"].features["label"].int2str(row["label"])
               for row in raw}
    assert folders == {"Normal": "Normal", "COVID-19": "COVID-19"}
    assert all(Path(row["image"]["path"]).is_relative_to(covid_root.resolve() / "Lung Segmentation Data")
               for row in raw)
    assert sorted(covid["train"]["study_id"]) == ["Normal (1)", "Normal (2)", "covid_1", "covid_2", "covid_3"]
    assert covid["train"][0]["image"].size == (16, 16)


def test_third_class_and_infection_subset_on_request(covid_root):
    built = build_covid(covid_root, subset="Infection Segmentation Data", classes=["Normal", "COVID-19", "Non-COVID"])
    assert built["train"].features["label"].names == ["Normal", "COVID-19", "Non-COVID"]
    assert label_counts(built["test"]) == {"Normal": 1, "COVID-19": 1, "Non-COVID": 1}


def test_root_may_be_the_subset_folder_itself(covid_root):
    built = build_covid(covid_root / "Lung Segmentation Data" / "Lung Segmentation Data")
    assert built["train"].num_rows == 5


def test_unknown_class_and_missing_layout_are_errors(covid_root, tmp_path):
    with pytest.raises(ValueError, match="classes must be among"):
        build_covid(covid_root, classes=["Pneumonia"])
    with pytest.raises(FileNotFoundError, match="no Train/Val/Test folder"):
        build_covid(tmp_path)


def test_missing_class_folder_is_named(tmp_path):
    root = write_covid_qu_ex(tmp_path, images={"Train": {"COVID-19": 1, "Non-COVID": 1}})
    with pytest.raises(FileNotFoundError, match="Train/Normal/images not found"):
        build_covid(root)


def test_printed_label_counts(covid_root, tmp_path, capsys):
    main(["--root", str(covid_root), "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert "train: 5 rows\n  label: Normal=2, COVID-19=3" in printed
    assert "test: 3 rows\n  label: Normal=1, COVID-19=2" in printed
