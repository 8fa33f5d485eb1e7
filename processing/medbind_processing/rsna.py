"""RSNA Pneumonia Detection Challenge -> a `DatasetDict` of chest radiographs labelled Normal or Pneumonia.

Raw layout: the Kaggle competition download (https://www.kaggle.com/c/rsna-pneumonia-detection-challenge/data),
`--root` is its unzipped folder:

    stage_2_train_labels.csv       patientId, x, y, width, height, Target (one row per opacity box, one row with
                                   Target 0 and blank box for an image without)
    stage_2_train_images/<patientId>.dcm     1024x1024 8-bit DICOM (a PNG-converted copy, `<patientId>.png`, works too)

Rows: one per `patientId` (one image per patient). `label` is `Target`: 1 "Pneumonia" (at least one opacity box),
0 "Normal" (no pneumonia-like opacity; this includes the challenge's "No Lung Opacity / Not Normal" images), the
paper's two classes. DICOMs are decoded with pydicom at build time (modality and VOI LUTs applied, MONOCHROME1
inverted, scaled to 8 bits), shrunk to 512 pixels on the shorter side (`--shortest_edge`,
`radiographs.stored_radiograph`; 0 keeps the 1024 x 1024 originals) and stored as PNG; `view` is the DICOM
`ViewPosition` (AP/PA; None for PNG input); `image_path` is the original file.
`study_id` is the `patientId`. Splits: the stage-2 test labels are not public, so the labelled images are split
70 / 10 / 20 % by `medbind_processing.splits`' seeded hash of the `patientId` (the paper's 18,678 train / 5,338 test come
from such a 70 / 10 / 20 split of the 26,684 images).

    python -m medbind_processing.rsna --root RAW_DIR --out OUT_DIR [--seed 0] [--shortest_edge 512] [--num_proc N]
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image

from modeling_medbind.image_processing_medbind import decode_dicom

from .building import build_dataset_dict
from .cli import add_image_flags, cli_parser, run_cli
from .dataset_card import DataSource
from .features import cxr_features
from .radiographs import DEFAULT_SHORTEST_EDGE, stored_radiograph
from .splits import DEFAULT_SEED, split_by_patient
from .tables import read_table

RSNA_CLASSES = ("Normal", "Pneumonia")
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
IMAGE_DIR = "stage_2_train_images"
FEATURES = cxr_features(
    label=RSNA_CLASSES, drop=["text", "subject_id", "hadm_id", "study_time"], study_id=datasets.Value("string")
)
DESCRIPTION = "RSNA Pneumonia Detection Challenge (stage 2 train): chest radiographs, Normal vs Pneumonia."
SOURCE = DataSource(
    name="rsna",
    pretty_name="RSNA Pneumonia Detection Challenge: Normal vs Pneumonia chest radiographs (MedBind build)",
    homepage="RSNA Pneumonia Detection Challenge (Kaggle, stage 2 training set): "
    "https://www.kaggle.com/c/rsna-pneumonia-detection-challenge/data",
    license="other",
    license_name="rsna-pneumonia-detection-challenge-rules",
    license_link="https://www.kaggle.com/c/rsna-pneumonia-detection-challenge/rules",
    access="Keep the competition's data-use rules (see the link; the images come from the NIH ChestX-ray14 "
    "collection, whose terms also apply); this build adds no rights.",
    label_rules=__doc__,
)


def read_targets(root: Path) -> dict[str, int]:
    """`{patientId: Target}` (0 or 1) of `stage_2_train_labels.csv` in file order (several box rows collapse to one;
    rows that disagree raise ValueError)."""
    table = read_table(root, "stage_2_train_labels.csv", ["patientId", "Target"])
    targets: dict[str, int] = {}
    for patient_id, target in zip(table["patientId"], table["Target"]):
        if target not in (0, 1):
            raise ValueError(f"stage_2_train_labels.csv, {patient_id}: Target must be 0 or 1, got {target!r}")
        if targets.setdefault(patient_id, int(target)) != target:
            raise ValueError(f"stage_2_train_labels.csv, {patient_id}: rows disagree on Target")
    return targets


def dicom_to_image(path: Path) -> tuple[Image.Image, str | None]:
    """Decode a single-frame grayscale radiograph DICOM into an 8-bit image (`L`), white meaning dense, and its
    `ViewPosition` (None if absent or blank).

    The decoding is the image processor's (`decode_dicom`: modality and VOI LUTs, scaled by the window or the
    stored bit depth, MONOCHROME1 inverted), so a built row holds the pixels the processor reads from the file.
    8-bit input with no LUT keeps its exact values; other intensities in [0, 1] are rounded to 0-255.
    """
    values, dataset = decode_dicom(path)
    if values.dtype != np.uint8:
        values = np.round(values * 255.0).astype(np.uint8)
    return Image.fromarray(values), dataset.get("ViewPosition") or None


def image_file(root: Path, patient_id: str) -> Path:
    """The image of a patient: `stage_2_train_images/<patientId>.dcm`, else `.png`."""
    for suffix in (".dcm", ".png"):
        path = root / IMAGE_DIR / f"{patient_id}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"RSNA: no image for patientId {patient_id} in {root / IMAGE_DIR} (.dcm or .png)")


def rsna_example(record: Mapping[str, Any], shortest_edge: int | None = DEFAULT_SHORTEST_EDGE) -> dict[str, Any]:
    """Turn `{"image_path", "study_id", "label"}` into an example of `FEATURES`, decoding a DICOM and shrinking the
    image (`radiographs.stored_radiograph`; worker-side)."""
    path = Path(record["image_path"])
    image, view = dicom_to_image(path) if path.suffix == ".dcm" else (path, None)
    return {**record, "image": stored_radiograph(image, shortest_edge), "view": view}


def build_rsna(
    root: Path,
    seed: int = DEFAULT_SEED,
    shortest_edge: int | None = DEFAULT_SHORTEST_EDGE,
    num_proc: int | None = None,
    build_dir: Path | None = None,
) -> datasets.DatasetDict:
    """Build RSNA Pneumonia (see the module docstring); `seed` is the patient-level split's."""
    root = Path(root)
    records = [
        {"image_path": str(image_file(root, patient_id).resolve()), "study_id": patient_id,
         "label": RSNA_CLASSES[target]}
        for patient_id, target in read_targets(root).items()
    ]
    records_by_split = split_by_patient(records, seed, SPLIT_FRACTIONS, key="study_id")
    make_example = functools.partial(rsna_example, shortest_edge=shortest_edge)
    return build_dataset_dict(records_by_split, FEATURES, DESCRIPTION, make_example, num_proc, build_dir=build_dir)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: see the module docstring."""
    parser = cli_parser(__doc__)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the patient-level split")
    add_image_flags(parser)
    run_cli(build_rsna, parser, argv, source=SOURCE)


if __name__ == "__main__":
    main()
