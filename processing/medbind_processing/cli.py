"""The command line every builder shares: `--root RAW_DIR --out OUT_DIR` and the shared flags (`cli_parser`,
`add_image_flags`, `add_mimic_flags`), and `run_cli`, which builds and saves with the summary and the card."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets

from .building import temporary_build_dir
from .dataset_card import DataSource
from .radiographs import DEFAULT_SHORTEST_EDGE
from .saving import save
from .splits import DEFAULT_SEED


def cli_parser(description: str | None, roots: Sequence[str] = ("root",)) -> argparse.ArgumentParser:
    """The argument parser every builder's `main()` starts from: `--root RAW_DIR --out OUT_DIR`.

    `roots` names the required raw-folder flags; a builder that reads two downloads names both (e.g. `("cxr_root",
    "ecg_root")`).
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in roots:
        parser.add_argument(f"--{name}", type=Path, required=True, help="folder of the raw download")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the DatasetDict to (save_to_disk)")
    return parser


def add_image_flags(parser: argparse.ArgumentParser) -> None:
    """Add the CXR builders' flags: `--shortest_edge` (`stored_radiograph`) and `--num_proc`."""
    parser.add_argument(
        "--shortest_edge", type=int, default=DEFAULT_SHORTEST_EDGE,
        help="store radiographs shrunk to this many pixels on the shorter side, losslessly in the dataset (0: store "
             "paths to the original files)",
    )
    parser.add_argument("--num_proc", type=int, default=None, help="processes decoding and shrinking the images")


def run_cli(
    build: Callable[..., datasets.DatasetDict],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    *,
    source: DataSource,
) -> None:
    """A builder's `main()`: parse the command line, build, and `save` to `--out` with its summary and card.

    Every flag but `--out` is passed to `build` as the keyword argument of its name (`--root` -> `root`), so a
    builder's flags are named after its parameters; the flags are also the card's build options. `build` also gets
    `build_dir`, a temporary folder beside `--out` where the build stays on disk until it is saved
    (`building.temporary_build_dir`).
    """
    arguments = vars(parser.parse_args(argv))
    out = Path(arguments.pop("out"))
    out.parent.mkdir(parents=True, exist_ok=True)
    with temporary_build_dir(out.parent) as build_dir:
        save(build(**arguments, build_dir=Path(build_dir)), out, source, arguments)


# Which report sections a MIMIC-CXR study's report needs (`--report_sections`; `mimic_cxr`'s docstring weighs both).
REPORT_SECTION_RULES = ("either", "both")
# The flags the MIMIC builders share: the keyword arguments of `ArgumentParser.add_argument`.
_MIMIC_FLAGS: dict[str, dict[str, Any]] = {
    "reports": {"type": Path, "default": None, "help": "mimic-cxr-reports.zip or its unzipped folder"},
    "notes": {"type": Path, "default": None, "help": "CSV of ECG notes (note_id, text)"},
    "hosp": {"type": Path, "default": None, "help": "MIMIC-IV hosp/ folder (admissions) for hadm_id"},
    "seed": {"type": int, "default": DEFAULT_SEED, "help": "patient split seed shared by MIMIC sets"},
    "all_records": {
        "action": "store_true",
        "help": "use every MIMIC-IV-ECG record (multi-label and unlabelled too), not only the paper's single-label "
        "ones",
    },
    "report_sections": {
        "choices": REPORT_SECTION_RULES,
        "default": "either",
        "help": "keep the studies whose report has a findings or an impression section (either), or both (nearest the "
        "paper's 123,711 studies)",
    },
}


def add_mimic_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    """Add the flags of `_MIMIC_FLAGS` named in `names` (without the dashes), the same in every MIMIC builder."""
    for name in names:
        parser.add_argument(f"--{name}", **_MIMIC_FLAGS[name])
