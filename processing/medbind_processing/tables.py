"""Reading the raw downloads' CSV tables, compressed or not, with the columns a builder relies on checked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd


def read_table(root: Path, name: str, columns: Sequence[str], **read_csv_kwargs: Any) -> pd.DataFrame:
    """Read the CSV table `name` (or `name.gz`, as PhysioNet ships most) from `root` (`pandas.read_csv` with
    `read_csv_kwargs`) and check that it has `columns` (others are kept)."""
    candidates = (root / name, root / f"{name}.gz")
    path = next((candidate for candidate in candidates if candidate.is_file()), None)
    if path is None:
        raise FileNotFoundError(f"table {name} (or {name}.gz) not found in {root}")
    table = pd.read_csv(path, **read_csv_kwargs)
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(table.columns)}")
    return table
