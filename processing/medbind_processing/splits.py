"""The one patient-level train / validation / test split shared by every MIMIC dataset (and the demo).

A patient's split is a pure function of its `subject_id` and a seed: a SHA-256 hash mapped to [0, 1) and cut at
the cumulative fractions. So MIMIC-CXR, MIMIC-IV-ECG, MIMIC-PAIR and the MIMIC-IV outcomes, built separately and
in any order, put a patient in the same split, and no patient is ever in two splits. The default fractions
(70 / 10 / 20 %) follow the paper's MIMIC split sizes (paper, Data).

Sources without patient ids whose paper split has exact sizes (the COVID-19 Radiography Database: 11,028 / 2,780)
use `split_exactly`: the same seeded hash orders the records, and the split sizes are exact, not expected.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

SPLIT_NAMES = ("train", "validation", "test")
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)
DEFAULT_SEED = 0


def _check_fractions(fractions: tuple[float, float, float]) -> None:
    if len(fractions) != len(SPLIT_NAMES) or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(
            f"split fractions must be three non-negative numbers for {SPLIT_NAMES} summing to 1, got {fractions}"
        )


def _subject_key(subject_id: Any) -> str:
    # 10000032, "10000032" and 10000032.0 (pandas turns int columns with gaps into floats) are one patient.
    if isinstance(subject_id, Integral) or (isinstance(subject_id, Real) and float(subject_id).is_integer()):
        return str(int(subject_id))
    return str(subject_id)


def _position(subject_id: Any, seed: int) -> float:
    """Where a seeded SHA-256 hash of the id falls in [0, 1)."""
    digest = hashlib.sha256(f"{seed}:{_subject_key(subject_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def patient_split(
    subject_id: Any, seed: int = DEFAULT_SEED, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> str:
    """The split of one patient (`subject_id` an int, or a string id for sources without integer ids).

    Args:
        seed: changes the whole assignment; every dataset that must share a split uses the same seed.
        fractions: expected shares of (train, validation, test).
    """
    _check_fractions(fractions)
    position = _position(subject_id, seed)
    ends = itertools.accumulate(fractions)
    return next((name for name, end in zip(SPLIT_NAMES, ends) if position < end), SPLIT_NAMES[-1])


def split_by_patient(
    records: Iterable[Mapping[str, Any]],
    seed: int = DEFAULT_SEED,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    key: str = "subject_id",
) -> dict[str, list[Mapping[str, Any]]]:
    """Group records by the split of their patient id (`record[key]`, `patient_split`): `{split_name: [records]}`
    in `SPLIT_NAMES` order, only the splits that received records, the records in their input order."""
    groups: dict[str, list[Mapping[str, Any]]] = {name: [] for name in SPLIT_NAMES}
    for index, record in enumerate(records):
        if key not in record:
            raise KeyError(f"record {index} has no patient id field {key!r} (fields: {sorted(record)})")
        groups[patient_split(record[key], seed, fractions)].append(record)
    return {name: rows for name, rows in groups.items() if rows}


def split_exactly(
    records: Sequence[Mapping[str, Any]],
    fractions: tuple[float, float, float],
    seed: int = DEFAULT_SEED,
    key: str = "study_id",
    stratify: str | None = None,
) -> dict[str, list[Mapping[str, Any]]]:
    """Split records into parts of exact sizes, in the seeded hash order of `key`, optionally per class; grouped as
    by `split_by_patient`.

    Within each group of equal `stratify` value (all records when None), the records are ordered by the seeded hash
    of `key` (as `patient_split`); the first `n * fractions[0]` go to train, the next `n * fractions[1]` to
    validation, the rest to test, the cumulative counts rounded half up. So the sizes are exact (a fraction of
    2,780 / 13,808 of 13,808 records gives 2,780 test records), every class keeps its share, and a record's split
    depends only on its own id, the seed and its group's size.

    Args:
        key: the field whose hash orders the records (an image id for sources without patient ids).
        stratify: the field whose values are split separately (the label), or None.
    """
    _check_fractions(fractions)
    groups: dict[Any, list[int]] = {}
    for index, record in enumerate(records):
        for field in (key, stratify):
            if field is not None and field not in record:
                raise KeyError(f"record {index} has no field {field!r} (fields: {sorted(record)})")
        groups.setdefault(record[stratify] if stratify is not None else None, []).append(index)
    assigned: dict[int, str] = {}
    for indices in groups.values():
        ordered = sorted(indices, key=lambda index: (_position(records[index][key], seed), index))
        ends = [math.floor(len(ordered) * sum(fractions[: part + 1]) + 0.5) for part in range(len(SPLIT_NAMES) - 1)]
        for rank, index in enumerate(ordered):
            assigned[index] = next((name for name, end in zip(SPLIT_NAMES, ends) if rank < end), SPLIT_NAMES[-1])
    split = {name: [record for index, record in enumerate(records) if assigned[index] == name] for name in SPLIT_NAMES}
    return {name: rows for name, rows in split.items() if rows}
