"""CheXpert 5x200 -> a test-only `DatasetDict` of 1,000 frontal radiographs, 200 per competition finding.

The subset is rebuilt from CheXpert-v1.0's `train.csv` exactly as GLoRIA (Huang et al. 2021) builds it and MedCLIP
reuses it: blanks count as 0, frontal images only, and for each of Atelectasis, Cardiomegaly, Consolidation, Edema,
Pleural Effusion the images where that finding is 1 and every other finding is 0 (No Finding excepted: it is not
checked; an uncertain -1 anywhere excludes the image), then `DataFrame.sample(n=200, random_state=0)` per finding.

Raw layout (https://stanfordmlgroup.github.io/competitions/chexpert/, `--root` is `CheXpert-v1.0` or
`CheXpert-v1.0-small`):

    train.csv    Path, Sex, Age, Frontal/Lateral, AP/PA, No Finding, ..., Support Devices (1, 0, -1 or blank)
    train/patient00001/study1/view1_frontal.jpg     (`Path` starts with the dataset folder's own name)

CheXpert-v1.0 ships no report texts, so `text` is a MedCLIP-style report sentence generated for the image's finding,
as MedCLIP's `generate_chexpert_class_prompts` builds them: one piece of each of the finding's groups (severity,
subtype, location) of the shipped prompt file `prompts/chexpert5x200.json` (MedCLIP's own pieces, verbatim), joined
by spaces, drawn per image with a random generator seeded by `--seed` and the image's `Path`, so a rebuild gives the
same sentences. The sentence says the finding and nothing of the image beyond it: retrieval on this set measures
whether an image finds a sentence of its class.

Images: shrunk at build time to 512 pixels on the shorter side and stored in the dataset (`--shortest_edge`,
`radiographs.stored_radiograph`; CheXpert-v1.0-small's images are smaller and stored as they are; 0 stores paths into
the download); `image_path` is the original JPG.

    python -m medbind_processing.chexpert5x200 --root RAW_DIR --out OUT_DIR [--per_class 200] [--seed 0]
        [--shortest_edge 512] [--num_proc N]
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import datasets
import pandas as pd

from .building import build_dataset_dict
from .cli import add_image_flags, cli_parser, run_cli
from .dataset_card import DataSource
from .features import cxr_features
from .labels import CHEXPERT_COMPETITION_FINDINGS, CHEXPERT_LABELS
from .radiographs import DEFAULT_SHORTEST_EDGE, radiograph_example
from .tables import read_table

# GLoRIA's filter checks every observation but "No Finding".
CHECKED_FINDINGS = tuple(label for label in CHEXPERT_LABELS if label != "No Finding")
FEATURES = cxr_features(label=CHEXPERT_COMPETITION_FINDINGS, study_id=datasets.Value("string"))
DESCRIPTION = (
    "CheXpert 5x200 (GLoRIA's subset of CheXpert-v1.0 train): 200 frontal images per competition finding, each with "
    "a generated MedCLIP-style report sentence of its finding."
)
PROMPT_FILE = "prompts/chexpert5x200.json"
SOURCE = DataSource(
    name="chexpert5x200",
    pretty_name="CheXpert 5x200 with MedCLIP-style report sentences (MedBind build)",
    homepage="CheXpert-v1.0 (Stanford ML Group): https://stanfordmlgroup.github.io/competitions/chexpert/; sentence "
    "pieces from MedCLIP (https://github.com/RyanWangZf/MedCLIP, MIT licence).",
    license="other",
    license_name="chexpert-research-use-agreement",
    license_link="https://stanfordmlgroup.github.io/competitions/chexpert/",
    access="CheXpert is distributed under the Stanford University School of Medicine CheXpert Dataset Research Use "
    "Agreement: non-commercial research use by the registered user; do not redistribute the images (no public "
    "upload of this build). The report sentences are generated, not written about these patients.",
    label_rules=__doc__,
)


def eligible_images(table: pd.DataFrame, finding: str) -> pd.DataFrame:
    """The frontal images of CheXpert's `train.csv` positive for `finding` and negative (0 or blank) for every other
    finding (`CHECKED_FINDINGS`), in file order."""
    filled = table.fillna({label: 0 for label in CHECKED_FINDINGS})
    mask = filled["Frontal/Lateral"] == "Frontal"
    for label in CHECKED_FINDINGS:
        mask &= filled[label] == (1 if label == finding else 0)
    return filled[mask]


def sample_5x200(table: pd.DataFrame, per_class: int = 200, seed: int = 0) -> pd.DataFrame:
    """GLoRIA's CheXpert 5x200 selection: `per_class` eligible images per competition finding, drawn by
    `DataFrame.sample(random_state=seed)` (0 reproduces GLoRIA's subset), with a `finding` column, grouped by finding
    in `CHEXPERT_COMPETITION_FINDINGS` order."""
    groups = []
    for finding in CHEXPERT_COMPETITION_FINDINGS:
        eligible = eligible_images(table, finding)
        if len(eligible) < per_class:
            raise ValueError(f"train.csv: {finding} has {len(eligible)} eligible frontal images, need {per_class}")
        groups.append(eligible.sample(n=per_class, random_state=seed).assign(finding=finding))
    return pd.concat(groups)


def report_pieces() -> dict[str, list[list[str]]]:
    """MedCLIP's report-sentence pieces, `{finding: [group, ...]}` (each group a list of pieces, groups in the
    file's order), read from the package's `prompts/chexpert5x200.json`."""
    resource = importlib.resources.files("medbind_processing").joinpath(PROMPT_FILE)
    classes = json.loads(resource.read_text(encoding="utf-8"))["classes"]
    for finding in CHEXPERT_COMPETITION_FINDINGS:
        groups = classes.get(finding)
        if not groups or not all(groups.values()):
            raise ValueError(f"{resource}: expected non-empty groups of sentence pieces for {finding!r}, got {groups}")
    return {finding: list(groups.values()) for finding, groups in classes.items()}


def report_sentence(groups: Sequence[Sequence[str]], rng: random.Random) -> str:
    """One MedCLIP-style report sentence, e.g. `"mild bibasilar atelectasis at the lung bases"`: a piece of each of
    a finding's `groups` (`report_pieces`: severity, subtype, location), joined by spaces (empty pieces leave no
    gap), drawn uniformly within each group (the distribution of MedCLIP's `generate_chexpert_class_prompts`,
    which samples from all combinations)."""
    return " ".join(" ".join(rng.choice(list(group)) for group in groups).split())


def image_path(root: Path, relative: str) -> Path:
    """The file of a `Path` cell (`"CheXpert-v1.0-small/train/..."`) under `root`, whatever the folder is named."""
    path = root.joinpath(*PurePosixPath(relative).parts[1:])
    if not path.is_file():
        raise FileNotFoundError(f"train.csv: image {relative!r} not found at {path}")
    return path


def chexpert_record(row: Mapping[str, Any], root: Path, text: str) -> dict[str, Any]:
    """One selected `train.csv` row with its report sentence: a record of `FEATURES` but `image` (patient and study
    from the image path)."""
    patient, study = PurePosixPath(row["Path"]).parts[2:4]
    return {
        "image_path": str(image_path(root, row["Path"]).resolve()),
        "text": text,
        "subject_id": int(patient.removeprefix("patient")),
        "study_id": f"{patient}/{study}",
        "hadm_id": None,
        "study_time": None,
        "view": row["AP/PA"] if isinstance(row["AP/PA"], str) else None,
        "label": row["finding"],
    }


def build_chexpert5x200(
    root: Path,
    per_class: int = 200,
    seed: int = 0,
    shortest_edge: int | None = DEFAULT_SHORTEST_EDGE,
    num_proc: int | None = None,
    build_dir: Path | None = None,
) -> datasets.DatasetDict:
    """Build CheXpert 5x200 (see the module docstring): one split, `test`, of `5 * per_class` rows; `seed` is the
    selection's `random_state` (`sample_5x200`) and the report sentences' seed."""
    root = Path(root)
    table = read_table(root, "train.csv", ["Path", "Frontal/Lateral", "AP/PA", *CHECKED_FINDINGS])
    selected = sample_5x200(table, per_class, seed)
    pieces = report_pieces()
    records = [
        chexpert_record(row, root, report_sentence(pieces[row["finding"]], random.Random(f"{seed}:{row['Path']}")))
        for row in selected.to_dict("records")
    ]
    make_example = functools.partial(radiograph_example, shortest_edge=shortest_edge)
    return build_dataset_dict({"test": records}, FEATURES, DESCRIPTION, make_example, num_proc, build_dir=build_dir)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: see the module docstring."""
    parser = cli_parser(__doc__)
    parser.add_argument("--per_class", type=int, default=200, help="images per finding (200 in the benchmark)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random_state of the per-finding sample (GLoRIA: 0) and seed of the report sentences")
    add_image_flags(parser)
    run_cli(build_chexpert5x200, parser, argv, source=SOURCE)


if __name__ == "__main__":
    main()
