"""Open-I (Indiana University chest X-rays) -> a test-only `DatasetDict` of frontal radiographs with their reports.

Raw layout: the Kaggle copy "Chest X-rays (Indiana University)"
(https://www.kaggle.com/datasets/raddar/chest-xrays-indiana-university), `--root` is its unzipped folder:

    indiana_reports.csv          uid, MeSH, Problems, image, indication, comparison, findings, impression
    indiana_projections.csv      uid, filename, projection  (Frontal / Lateral)
    images/images_normalized/1_IM-0001-4001.dcm.png

Rows: every frontal image whose report has text (the MIMIC-CXR rule of frontal views only; a report with two
frontal images gives two rows). Text: the findings and impression sections joined, as MedCLIP prepares reports,
with Open-I's de-identification marker (`XXXX`) removed. `subject_id` and `study_id` are the report's `uid` (Open-I
has one report per patient). Images: shrunk at build time to 512 pixels on the shorter side and stored in the dataset
(`--shortest_edge`, `radiographs.stored_radiograph`: the Kaggle PNGs smaller than that are stored as they are; 0 stores
paths into the download); `image_path` is the original PNG.

    python -m medbind_processing.openi --root RAW_DIR --out OUT_DIR [--shortest_edge 512] [--num_proc N]
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets

from .building import build_dataset_dict
from .cli import add_image_flags, cli_parser, run_cli
from .dataset_card import DataSource
from .features import cxr_features
from .radiographs import DEFAULT_SHORTEST_EDGE, radiograph_example
from .tables import read_table

IMAGE_DIR = Path("images") / "images_normalized"
FEATURES = cxr_features()
SOURCE = DataSource(
    name="openi",
    pretty_name="Open-I (Indiana University chest X-rays) frontal radiographs with reports (MedBind build)",
    homepage="Kaggle copy of the Indiana University chest X-ray collection (Open-i, U.S. National Library of "
    "Medicine): https://www.kaggle.com/datasets/raddar/chest-xrays-indiana-university",
    license="other",
    license_name="open-i-indiana-university-chest-x-rays",
    license_link="https://www.kaggle.com/datasets/raddar/chest-xrays-indiana-university",
    access="Keep the terms of the Kaggle copy and of the Open-i collection it was taken from (see the link); this "
    "build adds no rights. Images and reports are de-identified by the source.",
    label_rules=__doc__,
)
DESCRIPTION = "Open-I (Indiana University chest X-rays, Kaggle copy): frontal images with findings + impression."
# Open-I replaces de-identified words with runs of capital X ("XXXX"), sometimes glued to a word ("x-XXXX").
DEIDENTIFIED = re.compile(r"X{2,}")


def report_text(findings: Any, impression: Any) -> str:
    """The report text of one Open-I report: the findings then the impression cell (blank/NaN: absent) joined by a
    space, `XXXX` markers dropped, whitespace collapsed and no space left before punctuation."""
    sections = [section for section in (findings, impression) if isinstance(section, str)]
    text = DEIDENTIFIED.sub(" ", " ".join(sections))
    text = re.sub(r"\s+", " ", text)
    return re.sub(r" ([.,;:])", r"\1", text).strip()


def openi_record(projection: Mapping[str, Any], text: str, root: Path) -> dict[str, Any]:
    """One frontal image row of `indiana_projections.csv` with its report text: a record of `FEATURES` but `image`."""
    path = root / IMAGE_DIR / projection["filename"]
    if not path.is_file():
        raise FileNotFoundError(f"indiana_projections.csv, uid {projection['uid']}: image {path} not found")
    return {
        "image_path": str(path.resolve()),
        "text": text,
        "subject_id": int(projection["uid"]),
        "study_id": int(projection["uid"]),
        "hadm_id": None,
        "study_time": None,
        "view": projection["projection"],
    }


def build_openi(
    root: Path, shortest_edge: int | None = DEFAULT_SHORTEST_EDGE, num_proc: int | None = None,
    build_dir: Path | None = None,
) -> datasets.DatasetDict:
    """Build Open-I (see the module docstring for the rows and text): one split, `test`."""
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
    make_example = functools.partial(radiograph_example, shortest_edge=shortest_edge)
    return build_dataset_dict({"test": records}, FEATURES, DESCRIPTION, make_example, num_proc, build_dir=build_dir)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: see the module docstring."""
    parser = cli_parser(__doc__)
    add_image_flags(parser)
    run_cli(build_openi, parser, argv, source=SOURCE)


if __name__ == "__main__":
    main()
