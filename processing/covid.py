"""COVID-QU-Ex -> a `DatasetDict` of chest radiographs labelled COVID-19 or Normal (zero/few-shot classification).

Raw layout: the Kaggle copy of COVID-QU-Ex (https://www.kaggle.com/datasets/anasmohammedtahir/covidqu), `--root` is
its unzipped folder. It has two subsets, each nested twice as the Kaggle zip unpacks it (a single level is accepted
too, and so is a `--root` pointing at a subset itself):

    Lung Segmentation Data/Lung Segmentation Data/{Train,Val,Test}/{COVID-19,Non-COVID,Normal}/images/*.png
                                                                                 .../lung masks/*.png
    Infection Segmentation Data/Infection Segmentation Data/... (a smaller subset of the same images, with
                                                                infection masks)

Rows: every image of the chosen subset (default the full "Lung Segmentation Data") in the chosen class folders
(default COVID-19 and Normal, the paper's two classes; `--classes Normal COVID-19 Non-COVID` adds the third).
Splits: the dataset's own folders, Train -> train, Val -> validation, Test -> test. `label` follows the order of
`classes`. The source has no patient ids or reports: `study_id` is the image's file name without extension.
Images are stored as paths into the download (decoded lazily; `push_to_hub` embeds them).

    python -m medbind.processing.covid --root RAW_DIR --out OUT_DIR [--subset "Lung Segmentation Data"] [--classes ...]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import datasets

from .common import build_dataset_dict, cli_parser, cxr_features, run_cli

SUBSETS = ("Lung Segmentation Data", "Infection Segmentation Data")
CLASS_FOLDERS = ("COVID-19", "Non-COVID", "Normal")
DEFAULT_CLASSES = ("Normal", "COVID-19")
SPLIT_FOLDERS = {"Train": "train", "Val": "validation", "Test": "test"}
DESCRIPTION = "COVID-QU-Ex: chest radiographs in the dataset's own train/validation/test folders, by class folder."


def covid_features(classes: Sequence[str]) -> datasets.Features:
    """The columns: `image`, `study_id` (file stem), `label` (`ClassLabel` named by `classes`, in that order)."""
    no_such_column = ["text", "subject_id", "hadm_id", "study_time", "view"]
    return cxr_features(label=classes, drop=no_such_column, study_id=datasets.Value("string"))


def find_subset(root: Path, subset: str) -> Path:
    """The folder of `subset` that holds the split folders (`Train`, `Val`, `Test`).

    Args:
        root: the download, or the subset folder itself.
        subset: one of `SUBSETS`.

    Returns:
        The first of `root/subset/subset`, `root/subset`, `root` that has a split folder.

    Raises:
        FileNotFoundError: naming every folder tried.
    """
    candidates = [root / subset / subset, root / subset, root]
    for candidate in candidates:
        if any((candidate / folder).is_dir() for folder in SPLIT_FOLDERS):
            return candidate
    tried = ", ".join(str(candidate) for candidate in candidates)
    raise FileNotFoundError(f"COVID-QU-Ex: no {'/'.join(SPLIT_FOLDERS)} folder in any of {tried}")


def class_images(split_dir: Path, class_name: str) -> list[Path]:
    """The images of one class in one split folder (`<split_dir>/<class_name>/images/*.png`), sorted by name.

    Raises:
        FileNotFoundError: if the class has no `images` folder there.
    """
    folder = split_dir / class_name / "images"
    if not folder.is_dir():
        raise FileNotFoundError(f"COVID-QU-Ex: class folder {folder} not found")
    return sorted(folder.glob("*.png"))


def build_covid(
    root: Path, subset: str = SUBSETS[0], classes: Sequence[str] = DEFAULT_CLASSES
) -> datasets.DatasetDict:
    """Build COVID-QU-Ex (see the module docstring).

    Args:
        root: the unzipped Kaggle folder.
        subset: one of `SUBSETS`.
        classes: class folders to keep, in label order (each one of `CLASS_FOLDERS`).

    Returns:
        `DatasetDict` with `train` / `validation` / `test` (those present), columns `covid_features(classes)`.

    Raises:
        ValueError: an unknown subset or class.
        FileNotFoundError: the subset or a class folder is missing.
    """
    if subset not in SUBSETS:
        raise ValueError(f"COVID-QU-Ex subset must be one of {SUBSETS}, got {subset!r}")
    unknown = [name for name in classes if name not in CLASS_FOLDERS]
    if unknown or not classes:
        raise ValueError(f"COVID-QU-Ex classes must be among {CLASS_FOLDERS}, got {list(classes)}")
    base = find_subset(Path(root), subset)
    records_by_split = {}
    for folder, split in SPLIT_FOLDERS.items():
        if (base / folder).is_dir():
            records_by_split[split] = [
                {"image": str(path.resolve()), "study_id": path.stem, "label": name}
                for name in classes for path in class_images(base / folder, name)
            ]
    return build_dataset_dict(records_by_split, covid_features(classes), DESCRIPTION)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: `python -m medbind.processing.covid --root RAW_DIR --out OUT_DIR [--subset S] [--classes C ...]`."""
    parser = cli_parser(__doc__)
    parser.add_argument("--subset", choices=SUBSETS, default=SUBSETS[0], help="which COVID-QU-Ex subset")
    parser.add_argument("--classes", nargs="+", choices=CLASS_FOLDERS, default=list(DEFAULT_CLASSES),
                        help="class folders to keep, in label order")
    run_cli(build_covid, parser, argv)


if __name__ == "__main__":
    main()
