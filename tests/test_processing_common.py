"""Tests of processing/medbind_processing/common.py: time parsing, tables, column conventions, dataset building, label counts, command
line, counts against the paper, dataset cards, radiographs stored at build time, admission linking."""

import io
import json
import re
from datetime import datetime
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
from huggingface_hub import DatasetCard
from PIL import Image

from medbind_processing import common

LETTERS = common.DataSource(
    name="letters", pretty_name="Letters", homepage="https://example.org/letters", license="cc-by-4.0",
    access="Open to all.", label_rules="Each row is a letter of the raw folder's name.",
)


def test_parse_time_reads_iso_and_blanks():
    assert common.parse_time("2180-07-23 08:44:00") == datetime(2180, 7, 23, 8, 44)
    assert common.parse_time(pd.Timestamp("2180-07-23T08:44:00")) == datetime(2180, 7, 23, 8, 44)
    assert common.parse_time(float("nan")) is None and common.parse_time("") is None
    with pytest.raises(ValueError, match="ecg_time"):
        common.parse_time("yesterday", "ecg_time")


def test_read_table_finds_gzipped_tables_and_names_missing_columns(tmp_path):
    pd.DataFrame({"a": [1], "b": [2]}).to_csv(tmp_path / "t.csv.gz", index=False)
    assert list(common.read_table(tmp_path, "t.csv", ["a"])["b"]) == [2]
    with pytest.raises(ValueError, match=r"t.csv.gz: missing column\(s\) \['c'\]"):
        common.read_table(tmp_path, "t.csv", ["a", "c"])
    with pytest.raises(FileNotFoundError, match="u.csv"):
        common.find_table(tmp_path, "u.csv")


def test_built_datasets_count_single_and_multi_label_classes():
    features = datasets.Features(
        {
            "label": datasets.ClassLabel(names=["no", "yes"]),
            "labels": datasets.List(datasets.ClassLabel(names=["A", "B"])),
        }
    )
    records = {
        "train": [{"label": 1, "labels": ["A", "B"]}, {"label": 1, "labels": []}],
        "test": [{"label": 0, "labels": ["B"]}],
    }
    built = common.build_dataset_dict(records, features, "unit test")
    assert list(built) == ["train", "test"] and built["train"].info.description == "unit test"
    assert common.class_label_counts(built["train"]) == {
        "label": {"no": 0, "yes": 2},
        "labels": {"A": 1, "B": 1, "(none)": 1},
    }
    assert "test: 1 rows\n  label: no=1, yes=0\n  labels: A=0, B=1, (none)=0" in common.format_summary(built)


def test_link_admissions_uses_the_ed_stay_and_prefers_the_latest_admission():
    admissions = pd.DataFrame(
        {
            "subject_id": [1, 1],
            "hadm_id": [10, 11],
            "visit_start": pd.to_datetime(["2180-01-01 08:00", "2180-01-02 00:00"]),
            "dischtime": pd.to_datetime(["2180-01-03 00:00", "2180-01-04 00:00"]),
        }
    )
    times = [datetime(2180, 1, 1, 8), datetime(2180, 1, 2, 12), datetime(2180, 1, 5), datetime(2180, 1, 1, 9)]
    assert common.link_admissions([1, 1, 1, 2], times, admissions) == [10, 11, None, None]


def test_match_greedy_uses_each_row_once_best_first():
    assert common.match_greedy([(2.0, 0, 0), (1.0, 1, 0), (3.0, 0, 1)]) == [(0, 1), (1, 0)]


def _read_note(record: dict) -> dict:
    return {"text": Path(record["path"]).read_text()}


def test_rebuilding_after_a_raw_file_changes_gives_the_new_content(tmp_path):
    # The record holds only the file's path, as the DICOM and image builders' records do: a cache keyed on the
    # generator's arguments would hand back the first build.
    note = tmp_path / "note.txt"
    records = {"train": [{"path": str(note)}]}
    features = datasets.Features({"text": datasets.Value("string")})
    note.write_text("first version")
    assert common.build_dataset_dict(records, features, "unit test", _read_note)["train"]["text"] == ["first version"]
    note.write_text("second version")
    rebuilt = common.build_dataset_dict(records, features, "unit test", _read_note)
    assert rebuilt["train"]["text"] == ["second version"]


def test_a_build_lives_in_memory_and_leaves_no_files_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(common.tempfile, "tempdir", str(tmp_path))  # where the build's temporary folder goes
    features = datasets.Features({"text": datasets.Value("string")})
    built = common.build_dataset_dict({"train": [{"text": "a"}]}, features, "")
    assert built["train"].cache_files == [] and list(tmp_path.iterdir()) == []
    assert built["train"]["text"] == ["a"]


def test_building_on_disk_keeps_the_arrow_files_until_the_block_ends(tmp_path):
    features = datasets.Features({"text": datasets.Value("string")})
    with common.building_on_disk(tmp_path):
        built = common.build_dataset_dict({"train": [{"text": "a"}], "test": [{"text": "b"}]}, features, "")
        files = [Path(f["filename"]) for split in built.values() for f in split.cache_files]
        assert len(files) == 2 and all(tmp_path in f.parents and f.is_file() for f in files)
        assert built["test"]["text"] == ["b"]
    assert list(tmp_path.iterdir()) == []


def test_cxr_features_put_the_standard_columns_first_with_a_sources_differences():
    features = common.cxr_features(label=["no", "yes"], drop=["text", "hadm_id"], study_id=datasets.Value("string"),
                                   site=datasets.Value("int64"))
    assert list(features) == ["image", "image_path", "subject_id", "study_id", "study_time", "view", "site", "label"]
    assert isinstance(features["image"], datasets.Image) and features["study_id"] == datasets.Value("string")
    assert features["label"] == datasets.ClassLabel(names=["no", "yes"])
    assert common.cxr_features(labels=["A", "B"])["labels"] == datasets.List(datasets.ClassLabel(names=["A", "B"]))
    with pytest.raises(ValueError, match=r"cannot drop \['report'\]"):
        common.cxr_features(drop=["report"])


def test_ecg_features_hold_the_record_path_or_the_signal_itself():
    assert list(common.ecg_features()) == [
        "ecg_path", "sampling_rate", "text", "subject_id", "study_id", "hadm_id", "ecg_time"
    ]
    signal = datasets.Array2D((12, 1000), "float32")
    with_signal = common.ecg_features(ecg=signal, labels=common.ECG_SUPERCLASSES)
    assert list(with_signal)[0] == "ecg" and with_signal["ecg"] == signal and "ecg_path" not in with_signal
    assert with_signal["labels"].feature.names == list(common.ECG_SUPERCLASSES)


def _build_letters(root: Path, count: int) -> datasets.DatasetDict:
    records = {"train": [{"text": f"{root.name}-{index}"} for index in range(count)]}
    return common.build_dataset_dict(records, datasets.Features({"text": datasets.Value("string")}), "letters")


def test_run_cli_passes_each_flag_to_the_builder_by_name_and_saves_to_out(tmp_path, capsys):
    parser = common.cli_parser("letters")
    parser.add_argument("--count", type=int, default=1)
    out = tmp_path / "built" / "letters"
    argv = ["--root", str(tmp_path / "raw"), "--out", str(out), "--count", "2"]
    common.run_cli(_build_letters, parser, argv, source=LETTERS)
    assert datasets.load_from_disk(str(out))["train"]["text"] == ["raw-0", "raw-1"]
    assert list(out.parent.iterdir()) == [out]  # the on-disk build beside it is gone
    assert "train: 2 rows" in capsys.readouterr().out


def test_run_cli_saves_the_summary_and_the_card_beside_the_data(tmp_path):
    parser = common.cli_parser("letters")
    parser.add_argument("--count", type=int, default=1)
    out = tmp_path / "letters"
    common.run_cli(_build_letters, parser, ["--root", str(tmp_path / "raw"), "--out", str(out)], source=LETTERS)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"] == {"train": {"rows": 1, "paper": None}}
    assert summary["build_options"] == {"root": "<path>", "count": 1}  # whether a path was given, not the path
    assert DatasetCard.load(out / "README.md").data.pretty_name == "Letters"


# ---- counts next to the paper's ------------------------------------------------------------------------------------


def _ecg_labels(split_labels: dict) -> datasets.DatasetDict:
    features = datasets.Features({"labels": datasets.List(datasets.ClassLabel(names=list(common.ECG_SUPERCLASSES)))})
    records = {split: [{"labels": labels} for labels in rows] for split, rows in split_labels.items()}
    return common.build_dataset_dict(records, features, "unit test")


def test_the_papers_class_counts_add_up_to_its_split_counts():
    for name, classes in common.PAPER_LABEL_ROWS.items():
        assert sum(classes.values()) == sum(rows or 0 for rows in common.PAPER_SPLIT_ROWS[name].values()), name
    assert sum(common.PAPER_SPLIT_ROWS["mimic_ecg"].values()) == 125_000


def test_counts_stand_next_to_the_papers_and_a_split_the_build_lacks_shows_zero():
    summary = common.count_summary(_ecg_labels({"train": [["NORM"], ["CD"]], "test": [["NORM"]]}), "mimic_ecg")
    assert summary["paper"] == common.PAPER_REFERENCE
    assert summary["splits"] == {
        "train": {"rows": 2, "paper": 88_291}, "test": {"rows": 1, "paper": 24_644},
        "validation": {"rows": 0, "paper": 12_065},
    }
    assert summary["labels"]["labels"]["NORM"] == {"rows": 2, "paper": 34_097}
    assert summary["labels"]["labels"]["(none)"] == {"rows": 0, "paper": None}
    assert summary["labels_by_split"]["test"]["labels"]["NORM"] == 1
    table = common.format_counts(summary)
    assert re.search(r"^train +2 +88,291$", table, re.MULTILINE)
    assert re.search(r"^  HYP +0 +11,305$", table, re.MULTILINE)


def test_a_dataset_without_paper_numbers_says_so():
    summary = common.count_summary(_ecg_labels({"train": [["MI"]]}), "demo_ecg")
    assert summary["paper"] is None and summary["splits"] == {"train": {"rows": 1, "paper": None}}
    assert "no published numbers" in common.format_counts(summary)


# ---- dataset cards -------------------------------------------------------------------------------------------------

# Values no card may show: a report, ids, times, a view, a path, a float, as a build of real data would hold them.
SECRET_REPORT = "Mr Quokka-Zanzibar reports crushing chest pain since 03:17, wife at bedside."
SECRET_ROWS = [
    {"text": SECRET_REPORT, "subject_id": 987654321, "study_id": 192837465, "hadm_id": 564738291,
     "study_time": "2187-11-23T04:56:07", "view": "OBLIQUE-XYZZY", "image_path": "/secret/mrn-4455667/cxr.png",
     "hours": 31.4159265, "label": "yes"},
    {"text": "Second report: Zebrafinch sign noted.", "subject_id": 876543219, "study_id": 918273645,
     "hadm_id": None, "study_time": None, "view": "PA", "image_path": "/secret/mrn-7788990/cxr.png",
     "hours": 27.1828182, "label": "no"},
]


@pytest.fixture
def secret_build(tmp_path):
    features = common.cxr_features(label=["no", "yes"], hours=datasets.Value("float64"))
    rows = [{**row, "image": common.stored_radiograph(Image.fromarray(np.full((4, 4), 77, np.uint8)), None)}
            for row in SECRET_ROWS]
    built = common.build_dataset_dict({"train": rows[:1], "test": rows[1:]}, features, "A fixture of made-up rows.")
    out = tmp_path / "secret"
    options = {"root": Path("/secret/raw-MRN-4455667"), "seed": 7, "shortest_edge": 512}
    common.save(built, out, common.DataSource(
        name="mimic_cxr", pretty_name="Secret fixture", homepage="https://example.org/raw", license="other",
        license_name="physionet-credentialed-health-data-license-1.5.0",
        license_link="https://physionet.org/content/mimic-cxr-jpg/view-license/2.1.0/",
        access="Credentialed users only; no redistribution.", label_rules="Labels come from the fixture rule.",
    ), options)
    return built, out


def test_a_dataset_card_never_shows_a_report_or_any_row_value(secret_build):
    built, out = secret_build
    card = (out / "README.md").read_text()
    written = card + (out / "summary.json").read_text()
    values = {str(value) for row in SECRET_ROWS for value in row.values() if value is not None and value not in
              ("yes", "no", "PA")}  # class names and the view PA are words of the schema and of the docs as well
    values |= {f"{row[key]:,}" for row in SECRET_ROWS for key in ("subject_id", "study_id") }
    values |= {word for word in SECRET_REPORT.split() if len(word) > 5} | {"4455667", "raw-MRN"}
    leaked = sorted(value for value in values if value in written)
    assert leaked == [], f"row values in the card or summary: {leaked}"
    assert built["train"]["text"] == [SECRET_REPORT]  # the values were there to leak


def test_a_build_without_rows_is_an_error_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="letters: the build has no split"):
        common.save(datasets.DatasetDict(), tmp_path / "empty", LETTERS)
    assert not (tmp_path / "empty").exists()


def test_the_card_states_fields_label_rules_splits_source_and_licence(secret_build):
    _, out = secret_build
    card = DatasetCard.load(out / "README.md")
    assert (card.data.license, card.data.license_name) == ("other", "physionet-credentialed-health-data-license-1.5.0")
    assert card.data.pretty_name == "Secret fixture" and card.data.size_categories == ["n<1K"]
    text = card.text
    assert "| train | 1 | 86,853 |" in text and "| validation | 0 | 12,059 |" in text
    assert "| label: yes | 1 | 0 | 1 | - |" in text
    assert "| `text` | string | report text |" in text and "| `label` | class label: no, yes |" in text
    assert "| `hours` | float64 |  |" in text
    assert "Labels come from the fixture rule." in text and "https://example.org/raw" in text
    assert "Credentialed users only; no redistribution." in text and "A fixture of made-up rows." in text
    assert "| `seed` | `7` |" in text and '| `root` | `"<path>"` |' in text


# ---- radiographs stored at build time ------------------------------------------------------------------------------


def test_shrunk_size_sets_the_shorter_side_and_never_enlarges():
    assert common.shrunk_size((3000, 2500), 512) == (614, 512)
    assert common.shrunk_size((2500, 3000), 512) == (512, 614)
    assert common.shrunk_size((512, 900), 512) is None and common.shrunk_size((300, 299), 512) is None


def _decoded(stored: dict) -> Image.Image:
    assert stored["path"] is None
    image = Image.open(io.BytesIO(stored["bytes"]))
    image.load()
    return image


def test_a_sixteen_bit_radiograph_is_shrunk_and_stays_sixteen_bit(tmp_path):
    pixels = np.linspace(1_000, 64_000, 60 * 80).reshape(60, 80).astype(np.uint16)
    path = tmp_path / "dicom_export.png"
    Image.fromarray(pixels).save(path)
    image = _decoded(common.stored_radiograph(path, 30))
    assert (image.format, image.mode, image.size) == ("TIFF", "I;16", (40, 30))  # uncompressed: fastest to decode
    exact = np.asarray(Image.fromarray(pixels.astype(np.float32)).resize((40, 30), Image.Resampling.LANCZOS))
    np.testing.assert_allclose(np.asarray(image), exact, atol=1.5)  # 16-bit steps, not 8-bit ones (257 apart)


def test_a_jpeg_is_shrunk_from_a_reduced_decode_like_a_full_one(tmp_path):
    rows, columns = np.mgrid[0:300, 0:400]
    path = tmp_path / "radiograph.jpg"
    Image.fromarray((100 + 80 * np.sin(rows / 40) * np.cos(columns / 50)).astype(np.uint8)).save(path, quality=95)
    image = _decoded(common.stored_radiograph(path, 50))
    assert (image.format, image.mode, image.size) == ("PNG", "L", (67, 50))
    full = np.asarray(Image.open(path).resize((67, 50), Image.Resampling.LANCZOS), dtype=float)
    assert np.abs(np.asarray(image, dtype=float) - full).mean() < 1.0


def test_an_image_no_larger_than_the_target_is_stored_as_its_own_file(tmp_path):
    path = tmp_path / "small.jpg"
    Image.fromarray(np.full((30, 40), 90, np.uint8)).save(path)
    assert common.stored_radiograph(path, 30) == {"bytes": path.read_bytes(), "path": None}


def test_shortest_edge_zero_keeps_the_path_and_a_decoded_image_is_stored_whole(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.full((30, 40), 90, np.uint8)).save(path)
    assert common.stored_radiograph(path, 0) == common.stored_radiograph(path, None) == str(path)
    decoded = np.arange(1200, dtype=np.uint8).reshape(30, 40)
    np.testing.assert_array_equal(np.asarray(_decoded(common.stored_radiograph(Image.fromarray(decoded), 0))), decoded)
    palette = Image.fromarray(decoded).convert("P")
    assert _decoded(common.stored_radiograph(palette, 10)).mode == "RGB"


def test_unreadable_files_and_foreign_modes_are_errors_naming_them(tmp_path):
    (tmp_path / "report.png").write_text("not an image")
    with pytest.raises(ValueError, match="report.png: not an image file"):
        common.stored_radiograph(tmp_path / "report.png", 512)
    with pytest.raises(ValueError, match="image mode 'F'"):
        common.stored_radiograph(Image.fromarray(np.zeros((4, 4), np.float32)), 512)
    with pytest.raises(ValueError, match=r"values 0\.\.70000"):
        common.stored_radiograph(Image.fromarray(np.array([[0, 70_000]], np.int32)), 512)
    assert _decoded(common.stored_radiograph(Image.fromarray(np.array([[0, 60_000]], np.int32)), 512)).mode == "I;16"
