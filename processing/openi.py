"""Open-I (Indiana University chest X-rays) -> a test-only `DatasetDict` of frontal radiographs with their reports.

Raw layout: the Kaggle copy "Chest X-rays (Indiana University)"
(https://www.kaggle.com/datasets/raddar/chest-xrays-indiana-university), `--root` is its unzipped folder:

    indiana_reports.csv          uid, MeSH, Problems, image, indication, comparison, findings, impression
    indiana_projections.csv      uid, filename, projection  (Frontal / Lateral)
    images/images_normalized/1_IM-0001-4001.dcm.png

Rows: every frontal image whose report has text (the MIMIC-CXR rule of frontal views only; a report with two
frontal images gives two rows). Text: the findings and impression sections joined, as MedCLIP prepares reports,
with Open-I's de-identification marker (`XXXX`) removed. `subject_id` and `study_id` are the report's `uid` (Open-I
has one report per patient). Images are stored as paths into the download (decoded lazily; `push_to_hub` embeds them).

    python -m medbind.processing.openi --root RAW_DIR --out OUT_DIR
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets

from .common import build_dataset_dict, cli_parser, cxr_features, read_table, run_cli

IMAGE_DIR = Path("images") / "images_normalized"
FEATURES = cxr_features()
DESCRIPTION = "Open-I (Indiana University chest X-rays, Kaggle copy): frontal images with findings + impression."
# Open-I replaces de-identified words with runs of capital X ("XXXX"), sometimes glued to a word ("x-XXXX").
DEIDENTIFIED = re.compile(r"X{2,}")


def report_text(findings: Any, impression: Any) -> str:
    """The report text of one Open-I report: findings then impression, de-identification markers removed.

    Args:
        findings, impression: the cells (a string, or blank/NaN for an absent section).

    Returns:
        The sections joined by a space, `XXXX` markers dropped, whitespace collapsed and no space left before
        punctuation; `""` when both sections are blank.
    """
    sections = [section for section in (findings, impression) if isinstance(section, str)]
    text = DEIDENTIFIED.sub(" ", " ".join(sections))
    text = re.sub(r"\s+", " ", text)
    return re.sub(r" ([.,;:])", r"\1", text).strip()


def openi_record(projection: Mapping[str, Any], text: str, root: Path) -> dict[str, Any]:
    """One frontal image row of `indiana_projections.csv` with its report text, as an example of `FEATURES`.

    Raises:
        FileNotFoundError: naming the file, if the image is missing.
    """
    path = root / IMAGE_DIR / projection["filename"]
    if not path.is_file():
        raise FileNotFoundError(f"indiana_projections.csv, uid {projection['uid']}: image {path} not found")
    return {
        "image": str(path.resolve()),
        "text": text,
        "subject_id": int(projection["uid"]),
        "study_id": int(projection["uid"]),
        "hadm_id": None,
        "study_time": None,
        "view": projection["projection"],
    }


def build_openi(root: Path) -> datasets.DatasetDict:
    """Build Open-I (see the module docstring for the rows and text).

    Args:
        root: the unzipped Kaggle folder.

    Returns:
        `DatasetDict` with one split, `test`, columns `FEATURES`.

    Raises:
        FileNotFoundError: a table or an image is missing.
        ValueError: a column is missing, or a projection's uid has no report.
    """
    root = Path(root)
    reports = read_table(root, "indiana_reports.csv", ["uid", "findings", "impression"])
    projections = read_table(root, "indiana_projections.csv", ["uid", "filename", "projection"])
    texts = {int(row["uid"]): report_text(row["findings"], row["impression"]) for row in reports.to_dict("records")}
    records = []
    for projection in projections[projections["projection"] == "Frontal"].to_dict("records"):
        if int(projection["uid"]) not in texts:
            raise ValueError(f"indiana_projections.csv: uid {projection['uid']} has no row in indiana_reports.csv")
        if texts[int(projection["uid"])]:
            records.append(openi_record(projection, texts[int(projection["uid"])], root))
    return build_dataset_dict({"test": records}, FEATURES, DESCRIPTION)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: `python -m medbind.processing.openi --root RAW_DIR --out OUT_DIR`."""
    run_cli(build_openi, cli_parser(__doc__), argv)


if __name__ == "__main__":
    main()
