"""One split of a DATA folder: its datasets found by name, cut for quick checks, and its CXR-ECG visit pairs."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import datasets

from modeling_medbind.configuration_medbind import MODALITIES

from .data import pair_rows

PAIRS = "pairs"  # the visit-pair dataset of a DATA folder


def dataset_paths(dataset_dir: str | None, **explicit: str | None) -> dict[str, str | None]:
    """`{name: folder}` for each name of `explicit`: its explicit folder (or, streamed, Hub id), else
    `dataset_dir/name`, None where neither is given."""
    return {name: path or (dataset_dir and os.path.join(dataset_dir, name)) for name, path in explicit.items()}


def load_dataset_dicts(paths: Mapping[str, str | None], streaming: bool = False) -> dict[str, datasets.DatasetDict | None]:
    """`{name: DatasetDict}` of `dataset_paths`' folders (None where absent); with `streaming`, a path that is no folder
    is a Hub dataset, of which only the validation split is downloaded (the training split is streamed).
    """
    return {name: _load(path, streaming) for name, path in paths.items()}


def _load(path: str | None, streaming: bool) -> datasets.DatasetDict | None:
    if path and os.path.isdir(path):
        return datasets.load_from_disk(path)
    if path and streaming:
        return datasets.DatasetDict({"validation": datasets.load_dataset(path, split="validation")})
    return None


def first_rows(dataset: datasets.Dataset, limit: int | None) -> datasets.Dataset:
    """The first `limit` rows of `dataset` (all of them for None or 0), for quick checks (`--max_samples`)."""
    return dataset.select(range(min(limit, len(dataset)))) if limit else dataset


def pick_split(dataset_dict: datasets.DatasetDict, split: str, limit: int | None) -> datasets.Dataset | None:
    """`split` of a DatasetDict (its only split when it has one, e.g. CheXpert 5x200's `test`), first `limit` rows."""
    if split not in dataset_dict:
        if len(dataset_dict) != 1:
            return None
        split = next(iter(dataset_dict))
    return first_rows(dataset_dict[split], limit)


@dataclass
class RetrievalSplit:
    """One split of a DATA folder: its CXR and ECG datasets (either may be None) and its (CXR row, ECG row) pairs."""

    cxr: datasets.Dataset | None = None
    ecg: datasets.Dataset | None = None
    pairs: Sequence[tuple[int, int]] = field(default_factory=list)


def retrieval_split(
    data: Mapping[str, datasets.DatasetDict | None],
    split: str,
    limit: int | None = None,
    modalities: Sequence[str] = MODALITIES,
    with_pairs: bool = True,
) -> RetrievalSplit:
    """One split of a DATA folder's `cxr`, `ecg` and `pairs` DatasetDicts (missing names or splits: None), the CXR and
    ECG datasets cut to their first `limit` rows, and their disjoint visit pairs (`pair_rows`; pairs whose studies
    fall outside the kept rows are dropped). Only the `modalities` named are read (ECG-CLIP: ECG, CXR-CLIP: CXR);
    `with_pairs=False` leaves the pairs out, for a caller that reads only the datasets (matching pairs reads the whole
    pair split).
    """

    def part(name: str, cut: int | None) -> datasets.Dataset | None:
        dataset_dict = data.get(name)
        if dataset_dict is None or split not in dataset_dict:
            return None
        return first_rows(dataset_dict[split], cut)

    cxr, ecg = (part(modality, limit) if modality in modalities else None for modality in MODALITIES)
    pairs = part(PAIRS, None) if with_pairs else None
    return RetrievalSplit(
        cxr, ecg, pair_rows(cxr, ecg, pairs) if cxr is not None and ecg is not None and pairs is not None else []
    )
