"""COVID chest radiographs labelled COVID-19 or Normal (zero/few-shot classification), from one of two Kaggle sources.

`--source radiography` (default; the paper's source): the COVID-19 Radiography Database (Qatar University, University
of Dhaka and collaborators, https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database), `--root`
its unzipped folder (or the `COVID-19_Radiography_Dataset` folder itself):

    COVID-19_Radiography_Dataset/COVID/images/COVID-1.png ...           3,616 images (299 x 299 PNG)
                                 COVID/masks/COVID-1.png ...            lung masks (not read)
                                 Normal/images/Normal-1.png ...         10,192 images
                                 Lung_Opacity/images/..., Viral Pneumonia/images/...   6,012 and 1,345 images
                                 COVID.metadata.xlsx, Normal.metadata.xlsx, ...   FILE NAME, FORMAT, SIZE, URL of
                                                                        each image's origin (not read)

Rows: every image of the chosen classes (default COVID-19 and Normal: the paper's 3,616 + 10,192 = 13,808;
`--classes` may add `Lung Opacity` and `Viral Pneumonia`). The database has no official split and no patient ids, so
the images are split by image, class by class, in the seeded hash order of their file names, into exactly the
paper's shares (`medbind_processing.splits.split_exactly`): 2,780 / 13,808 of each class to test, the rest to train,
which gives the paper's 11,028 / 2,780 (8,140 Normal + 2,888 COVID-19 / 2,052 + 728). Several images of one patient
(some of the collections the database gathers hold follow-up images) can fall into both splits, as in any split by
image.

`--source covidqu`: COVID-QU-Ex (https://www.kaggle.com/datasets/anasmohammedtahir/covidqu), `--root` its unzipped
folder. It has two subsets, each nested twice as the Kaggle zip unpacks it (a single level is accepted too, and so is
a `--root` pointing at a subset itself):

    Lung Segmentation Data/Lung Segmentation Data/{Train,Val,Test}/{COVID-19,Non-COVID,Normal}/images/*.png
                                                                                 .../lung masks/*.png
    Infection Segmentation Data/Infection Segmentation Data/... (a smaller subset of the same images, with
                                                                infection masks)

Rows: every image of the chosen subset (`--subset`, default the full "Lung Segmentation Data") in the chosen class
folders (default COVID-19 and Normal; `--classes Normal COVID-19 Non-COVID` adds the third). Splits: the dataset's
own folders, Train -> train, Val -> validation, Test -> test.

Both sources: `label` follows the order of `--classes` (default Normal, COVID-19: the class names the evaluation's
prompts use). The sources have no patient ids or reports: `study_id` is the image's file name without extension.
Images: stored in the dataset, shrunk to 512 pixels on the shorter side where larger (`--shortest_edge`,
`radiographs.stored_radiograph`; both sources' images are smaller and are stored as they are; 0 stores paths into the
download); `image_path` is the original PNG.

    python -m medbind_processing.covid --root RAW_DIR --out OUT_DIR [--source radiography|covidqu] [--classes ...]
        [--seed 0] [--subset "Lung Segmentation Data"] [--shortest_edge 512] [--num_proc N]
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import datasets

from .building import build_dataset_dict
from .cli import add_image_flags, cli_parser, run_cli
from .dataset_card import DataSource
from .features import cxr_features
from .paper_counts import PAPER_SPLIT_ROWS
from .radiographs import DEFAULT_SHORTEST_EDGE, radiograph_example
from .splits import DEFAULT_SEED, split_exactly

SOURCES = ("radiography", "covidqu")
DEFAULT_CLASSES = ("Normal", "COVID-19")
# COVID-19 Radiography Database: class name -> its folder.
RADIOGRAPHY_FOLDERS = {
    "COVID-19": "COVID", "Normal": "Normal", "Lung Opacity": "Lung_Opacity", "Viral Pneumonia": "Viral Pneumonia"
}
RADIOGRAPHY_DIR = "COVID-19_Radiography_Dataset"
# The paper's shares of its 13,808 images (the database has no split of its own).
_TRAIN, _TEST = PAPER_SPLIT_ROWS["covid"]["train"], PAPER_SPLIT_ROWS["covid"]["test"]
SPLIT_FRACTIONS = (_TRAIN / (_TRAIN + _TEST), 0.0, _TEST / (_TRAIN + _TEST))
# COVID-QU-Ex: subsets, class folders (= class names), split folders.
SUBSETS = ("Lung Segmentation Data", "Infection Segmentation Data")
CLASS_FOLDERS = ("COVID-19", "Non-COVID", "Normal")
SPLIT_FOLDERS = {"Train": "train", "Val": "validation", "Test": "test"}
CLASSES = {"radiography": tuple(RADIOGRAPHY_FOLDERS), "covidqu": CLASS_FOLDERS}
DESCRIPTIONS = {
    "radiography": "COVID-19 Radiography Database: chest radiographs by class folder, split by image with the "
    "paper's shares (processing/covid.py).",
    "covidqu": "COVID-QU-Ex: chest radiographs in the dataset's own train/validation/test folders, by class folder "
    "(processing/covid.py).",
}
SOURCE = DataSource(
    name="covid",
    pretty_name="COVID-19 vs Normal chest radiographs (MedBind build)",
    homepage="COVID-19 Radiography Database (`--source radiography`, the default and the paper's source): "
    "https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database; COVID-QU-Ex (`--source covidqu`): "
    "https://www.kaggle.com/datasets/anasmohammedtahir/covidqu. The build options below name the one used.",
    license="other",
    license_name="kaggle-source-terms",
    license_link="https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database",
    access="Keep the terms stated on the Kaggle page of the source used and those of the public collections it "
    "gathers (PadChest, BIMCV, RSNA, SIRM and others; see the source's metadata files), and cite the database's "
    "papers; this build adds no rights.",
    label_rules=__doc__,
)


def class_records(class_dir: Path, label: str) -> list[dict[str, Any]]:
    """The records (`image_path`, `study_id` = file stem, `label`) of a class folder's `images/*.png`, by name."""
    folder = class_dir / "images"
    if not folder.is_dir():
        raise FileNotFoundError(f"class folder {folder} not found")
    return [
        {"image_path": str(path.resolve()), "study_id": path.stem, "label": label}
        for path in sorted(folder.glob("*.png"))
    ]


def _first_holding(candidates: list[Path], subfolders: Iterable[str], missing: str) -> Path:
    """The first of `candidates` that holds one of `subfolders`; else FileNotFoundError: `missing`, folders tried."""
    for candidate in candidates:
        if any((candidate / folder).is_dir() for folder in subfolders):
            return candidate
    raise FileNotFoundError(f"{missing} {', '.join(str(candidate) for candidate in candidates)}")


def radiography_records(root: Path, classes: Sequence[str], seed: int) -> dict[str, list[dict[str, Any]]]:
    """The COVID-19 Radiography Database's images of `classes` (in `root/COVID-19_Radiography_Dataset` or `root`),
    split by image with the paper's shares (`splits.split_exactly`, per class)."""
    folders = list(RADIOGRAPHY_FOLDERS.values())
    missing = f"COVID-19 Radiography Database: none of the class folders {folders} in"
    base = _first_holding([root / RADIOGRAPHY_DIR, root], folders, missing)
    records = [record for name in classes for record in class_records(base / RADIOGRAPHY_FOLDERS[name], name)]
    return split_exactly(records, SPLIT_FRACTIONS, seed, key="study_id", stratify="label")


def covidqu_records(root: Path, subset: str, classes: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """COVID-QU-Ex's images of `classes` in one subset (in `root/subset/subset`, `root/subset` or `root`), by the
    dataset's own split folders (those present)."""
    missing = f"COVID-QU-Ex: no {'/'.join(SPLIT_FOLDERS)} folder in any of"
    base = _first_holding([root / subset / subset, root / subset, root], SPLIT_FOLDERS, missing)
    return {
        split: [record for name in classes for record in class_records(base / folder / name, name)]
        for folder, split in SPLIT_FOLDERS.items()
        if (base / folder).is_dir()
    }


def build_covid(
    root: Path,
    source: str = SOURCES[0],
    classes: Sequence[str] = DEFAULT_CLASSES,
    seed: int = DEFAULT_SEED,
    subset: str | None = None,
    shortest_edge: int | None = DEFAULT_SHORTEST_EDGE,
    num_proc: int | None = None,
    build_dir: Path | None = None,
) -> datasets.DatasetDict:
    """Build the COVID dataset from either source (see the module docstring): columns `image`, `image_path`,
    `study_id` (file stem), `label` (`ClassLabel` of `classes`, in order).

    Args:
        source: `"radiography"` (the COVID-19 Radiography Database, the paper's) or `"covidqu"` (COVID-QU-Ex).
        classes: class names to keep, in label order (each one of `CLASSES[source]`).
        seed: radiography only: the seed of the split by image.
        subset: covidqu only: one of `SUBSETS` (None: the first, the full "Lung Segmentation Data").
    """
    if source not in SOURCES:
        raise ValueError(f"COVID source must be one of {SOURCES}, got {source!r}")
    known = CLASSES[source]
    if not classes or any(name not in known for name in classes) or len(set(classes)) != len(classes):
        raise ValueError(
            f"COVID classes of source {source!r} must be distinct names among {known}, got {list(classes)}"
        )
    if source == "radiography":
        if subset is not None:
            raise ValueError(f"subset {subset!r}: subsets belong to COVID-QU-Ex (source 'covidqu'), not 'radiography'")
        records_by_split = radiography_records(Path(root), classes, seed)
    else:
        subset = SUBSETS[0] if subset is None else subset
        if subset not in SUBSETS:
            raise ValueError(f"COVID-QU-Ex subset must be one of {SUBSETS}, got {subset!r}")
        records_by_split = covidqu_records(Path(root), subset, classes)
    no_such_column = ["text", "subject_id", "hadm_id", "study_time", "view"]
    features = cxr_features(label=classes, drop=no_such_column, study_id=datasets.Value("string"))
    make_example = functools.partial(radiograph_example, shortest_edge=shortest_edge)
    return build_dataset_dict(records_by_split, features, DESCRIPTIONS[source], make_example, num_proc, build_dir)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: see the module docstring."""
    parser = cli_parser(__doc__)
    parser.add_argument("--source", choices=SOURCES, default=SOURCES[0],
                        help="radiography: COVID-19 Radiography Database (the paper's); covidqu: COVID-QU-Ex")
    parser.add_argument("--classes", nargs="+", default=list(DEFAULT_CLASSES),
                        help=f"classes to keep, in label order (radiography: {', '.join(CLASSES['radiography'])}; "
                             f"covidqu: {', '.join(CLASS_FOLDERS)})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="radiography: seed of the split by image")
    parser.add_argument("--subset", choices=SUBSETS, default=None,
                        help=f"covidqu: which subset (default {SUBSETS[0]!r})")
    add_image_flags(parser)
    run_cli(build_covid, parser, argv, source=SOURCE)


if __name__ == "__main__":
    main()
