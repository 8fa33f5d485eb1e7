"""Linking MIMIC studies: the MIMIC-IV admission (visit) a CXR study or an ECG belongs to, and the one-to-one
matching of studies that MIMIC-PAIR and the outcomes use (the paper's Section 3, Data)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .tables import read_table


def read_admissions(hosp_dir: Path | None) -> pd.DataFrame:
    """Read `admissions.csv(.gz)` from MIMIC-IV's `hosp` folder (None: no admissions, so no study links to one),
    with `admittime`, `dischtime`, `edregtime` as datetimes and `visit_start`, the earlier of the ED registration and
    the admission (imaging done in the ED before admission belongs to the visit)."""
    columns = ["subject_id", "hadm_id", "admittime", "dischtime"]
    table = read_table(hosp_dir, "admissions.csv", columns) if hosp_dir is not None else pd.DataFrame(columns=columns)
    for column in ("admittime", "dischtime", "edregtime"):
        table[column] = pd.to_datetime(table[column]) if column in table else pd.NaT
    table["visit_start"] = table[["admittime", "edregtime"]].min(axis=1)
    return table


def link_admissions(
    subject_ids: Sequence[int], times: Sequence[datetime | None], admissions: pd.DataFrame
) -> list[int | None]:
    """The admission (`hadm_id`, or None) each study falls into: same `subject_id`, time within [visit_start,
    dischtime] (`read_admissions`); where admissions overlap, the latest-starting one. A None time links nothing."""
    by_subject = {
        subject: group.sort_values("visit_start", ascending=False)[["hadm_id", "visit_start", "dischtime"]]
        for subject, group in admissions.groupby("subject_id")
    }
    linked: list[int | None] = []
    for subject, time in zip(subject_ids, times):
        group = by_subject.get(subject)
        hadm_id = None
        if group is not None and time is not None:
            inside = group[(group["visit_start"] <= time) & (time <= group["dischtime"])]
            hadm_id = int(inside["hadm_id"].iloc[0]) if len(inside) else None
        linked.append(hadm_id)
    return linked


def match_greedy(candidates: Iterable[tuple[Any, int, int]]) -> list[tuple[int, int]]:
    """One-to-one matching: take candidates `(sort_key, left_index, right_index)` best-first (smallest key), skipping
    any whose left or right row is already used; returns the `(left_index, right_index)` pairs by `left_index`.

    No row is used twice (a reused ECG would be a duplicate positive in a contrastive batch).
    """
    used_left: set[int] = set()
    used_right: set[int] = set()
    matches = []
    for _, left_index, right_index in sorted(candidates):
        if left_index not in used_left and right_index not in used_right:
            used_left.add(left_index)
            used_right.add(right_index)
            matches.append((left_index, right_index))
    return sorted(matches)


def same_subject(left: Sequence[Mapping[str, Any]], right: Sequence[Mapping[str, Any]]) -> Iterator[tuple[int, int]]:
    """Every `(left_index, right_index)` of two rows with the same `subject_id`, in the order of `left`, `right`."""
    by_subject: dict[Any, list[int]] = {}
    for index, row in enumerate(right):
        by_subject.setdefault(row["subject_id"], []).append(index)
    for left_index, row in enumerate(left):
        for right_index in by_subject.get(row["subject_id"], ()):
            yield left_index, right_index
