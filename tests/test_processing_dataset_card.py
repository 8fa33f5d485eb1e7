"""Tests of processing/medbind_processing/dataset_card.py and saving.py: the card and summary.json of a build."""

from pathlib import Path

import datasets
import numpy as np
import pytest
from fixtures import LETTERS
from huggingface_hub import DatasetCard
from PIL import Image

from medbind_processing.building import build_dataset_dict
from medbind_processing.dataset_card import DataSource
from medbind_processing.features import cxr_features
from medbind_processing.licenses import physionet_credentialed
from medbind_processing.radiographs import stored_radiograph
from medbind_processing.saving import save


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
    features = cxr_features(label=["no", "yes"], hours=datasets.Value("float64"))
    rows = [{**row, "image": stored_radiograph(Image.fromarray(np.full((4, 4), 77, np.uint8)), None)}
            for row in SECRET_ROWS]
    built = build_dataset_dict({"train": rows[:1], "test": rows[1:]}, features, "A fixture of made-up rows.")
    out = tmp_path / "secret"
    options = {"root": Path("/secret/raw-MRN-4455667"), "seed": 7, "shortest_edge": 512}
    source = DataSource(name="mimic_cxr", pretty_name="Secret fixture", homepage="https://example.org/raw",
                        label_rules="Labels come from the fixture rule.",
                        **physionet_credentialed("Made-up credentialed rows"))  # fmt: skip
    save(built, out, source, options)
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
        save(datasets.DatasetDict(), tmp_path / "empty", LETTERS)
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
    assert "Made-up credentialed rows: use it only as a PhysioNet credentialed user" in text
    assert "A fixture of made-up rows." in text
    assert "| `seed` | `7` |" in text and '| `root` | `"<path>"` |' in text
