"""Tests of processing/medbind_processing/building.py: records -> DatasetDict, in memory or in a build folder."""

from pathlib import Path

import datasets

from medbind_processing import building
from medbind_processing.building import build_dataset_dict, temporary_build_dir


def _read_note(record: dict) -> dict:
    return {"text": Path(record["path"]).read_text()}


def test_rebuilding_after_a_raw_file_changes_gives_the_new_content(tmp_path):
    # The record holds only the file's path, as the DICOM and image builders' records do: a cache keyed on the
    # generator's arguments would hand back the first build.
    note = tmp_path / "note.txt"
    records = {"train": [{"path": str(note)}]}
    features = datasets.Features({"text": datasets.Value("string")})
    note.write_text("first version")
    assert build_dataset_dict(records, features, "unit test", _read_note)["train"]["text"] == ["first version"]
    note.write_text("second version")
    assert build_dataset_dict(records, features, "unit test", _read_note)["train"]["text"] == ["second version"]


def test_a_build_lives_in_memory_and_leaves_no_files_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(building.tempfile, "tempdir", str(tmp_path))  # where the build's temporary folder goes
    features = datasets.Features({"text": datasets.Value("string")})
    built = build_dataset_dict({"train": [{"text": "a"}]}, features, "")
    assert built["train"].cache_files == [] and list(tmp_path.iterdir()) == []
    assert built["train"]["text"] == ["a"]


def test_a_build_in_a_build_dir_keeps_the_arrow_files_until_that_folder_goes(tmp_path):
    features = datasets.Features({"text": datasets.Value("string")})
    with temporary_build_dir(tmp_path) as build_dir:
        records = {"train": [{"text": "a"}], "test": [{"text": "b"}]}
        built = build_dataset_dict(records, features, "", build_dir=build_dir)
        files = [Path(f["filename"]) for split in built.values() for f in split.cache_files]
        assert len(files) == 2 and all(tmp_path in f.parents and f.is_file() for f in files)
        assert built["test"]["text"] == ["b"]
    assert list(tmp_path.iterdir()) == []
