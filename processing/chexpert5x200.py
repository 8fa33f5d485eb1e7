"""CheXpert 5x200 -> a test-only `DatasetDict` of 1,000 frontal radiographs, 200 per competition finding.

The subset is rebuilt from CheXpert-v1.0's `train.csv` exactly as GLoRIA (Huang et al. 2021) builds it and MedCLIP
reuses it: blanks count as 0, frontal images only, and for each of Atelectasis, Cardiomegaly, Consolidation, Edema,
Pleural Effusion the images where that finding is 1 and every other finding is 0 (No Finding excepted: it is not
checked; an uncertain -1 anywhere excludes the image), then `DataFrame.sample(n=200, random_state=0)` per finding.

Raw layout (https://stanfordmlgroup.github.io/competitions/chexpert/, `--root` is `CheXpert-v1.0` or
`CheXpert-v1.0-small`):

    train.csv    Path, Sex, Age, Frontal/Lateral, AP/PA, No Finding, ..., Support Devices (1, 0, -1 or blank)
    train/patient00001/study1/view1_frontal.jpg     (`Path` starts with the dataset folder's own name)

CheXpert-v1.0 ships no report texts, so there is no `text` column (the class is the retrieval target).
Images are stored as paths into the download (decoded lazily; `push_to_hub` embeds them).

    python -m medbind.processing.chexpert5x200 --root RAW_DIR --out OUT_DIR [--per_class 200] [--seed 0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import datasets
import pandas as pd

from .common import CHEXPERT_LABELS, build_dataset_dict, cli_parser, cxr_features, read_table, run_cli

COMPETITION_FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
# GLoRIA's filter checks every observation but "No Finding".
CHECKED_FINDINGS = tuple(label for label in CHEXPERT_LABELS if label != "No Finding")
FEATURES = cxr_features(label=COMPETITION_FINDINGS, drop=["text"], study_id=datasets.Value("string"))
DESCRIPTION = "CheXpert 5x200 (GLoRIA's subset of CheXpert-v1.0 train): 200 frontal images per competition finding."


def eligible_images(table: pd.DataFrame, finding: str) -> pd.DataFrame:
    """The frontal images of `table` positive for `finding` and negative (0 or blank) for every other finding.

    Args:
        table: CheXpert's `train.csv`, unmodified.
        finding: one of `COMPETITION_FINDINGS`.

    Returns:
        The matching rows, in file order.
    """
    filled = table.fillna({label: 0 for label in CHECKED_FINDINGS})
    mask = filled["Frontal/Lateral"] == "Frontal"
    for label in CHECKED_FINDINGS:
        mask &= filled[label] == (1 if label == finding else 0)
    return filled[mask]


def sample_5x200(table: pd.DataFrame, per_class: int = 200, seed: int = 0) -> pd.DataFrame:
    """GLoRIA's CheXpert 5x200 selection: `per_class` eligible images per competition finding.

    Args:
        table: CheXpert's `train.csv`.
        per_class: images per finding (200 in the benchmark).
        seed: `random_state` of `DataFrame.sample` (0 reproduces GLoRIA's subset).

    Returns:
        The selected rows with a `finding` column, grouped by finding in `COMPETITION_FINDINGS` order.

    Raises:
        ValueError: naming the finding, if it has fewer than `per_class` eligible images.
    """
    groups = []
    for finding in COMPETITION_FINDINGS:
        eligible = eligible_images(table, finding)
        if len(eligible) < per_class:
            raise ValueError(f"train.csv: {finding} has {len(eligible)} eligible frontal images, need {per_class}")
        groups.append(eligible.sample(n=per_class, random_state=seed).assign(finding=finding))
    return pd.concat(groups)


def image_path(root: Path, relative: str) -> Path:
    """The file of a `Path` cell (`"CheXpert-v1.0-small/train/..."`) under `root`, whatever the folder is named.

    Raises:
        FileNotFoundError: naming the cell and the missing file.
    """
    path = root.joinpath(*PurePosixPath(relative).parts[1:])
    if not path.is_file():
        raise FileNotFoundError(f"train.csv: image {relative!r} not found at {path}")
    return path


def chexpert_record(row: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """One selected `train.csv` row as an example of `FEATURES` (patient and study from the image path)."""
    patient, study = PurePosixPath(row["Path"]).parts[2:4]
    return {
        "image": str(image_path(root, row["Path"]).resolve()),
        "subject_id": int(patient.removeprefix("patient")),
        "study_id": f"{patient}/{study}",
        "hadm_id": None,
        "study_time": None,
        "view": row["AP/PA"] if isinstance(row["AP/PA"], str) else None,
        "label": row["finding"],
    }


def build_chexpert5x200(root: Path, per_class: int = 200, seed: int = 0) -> datasets.DatasetDict:
    """Build CheXpert 5x200 (see the module docstring).

    Args:
        root: the CheXpert-v1.0 (or -small) folder holding `train.csv`.
        per_class, seed: as in `sample_5x200`.

    Returns:
        `DatasetDict` with one split, `test`, of `5 * per_class` rows, columns `FEATURES`.

    Raises:
        FileNotFoundError: `train.csv` or a selected image is missing.
        ValueError: a column is missing or a finding has too few eligible images.
    """
    root = Path(root)
    table = read_table(root, "train.csv", ["Path", "Frontal/Lateral", "AP/PA", *CHECKED_FINDINGS])
    selected = sample_5x200(table, per_class, seed)
    records = [chexpert_record(row, root) for row in selected.to_dict("records")]
    return build_dataset_dict({"test": records}, FEATURES, DESCRIPTION)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: `python -m medbind.processing.chexpert5x200 --root RAW_DIR --out OUT_DIR [--per_class N] [--seed S]`."""
    parser = cli_parser(__doc__)
    parser.add_argument("--per_class", type=int, default=200, help="images per finding (200 in the benchmark)")
    parser.add_argument("--seed", type=int, default=0, help="random_state of the per-finding sample (GLoRIA: 0)")
    run_cli(build_chexpert5x200, parser, argv)


if __name__ == "__main__":
    main()
