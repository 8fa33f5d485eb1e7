"""Pretraining batches as the paper builds them: n CXR-report and n ECG-report samples per step, m of them paired.

A *slot* is one position of a batch: a CXR row and an ECG row (either may be absent when a run has one modality).
A paired slot holds a CXR and an ECG of the same visit (MIMIC-PAIR); an unpaired slot holds a CXR and an ECG that
merely share the batch. Each epoch, `PretrainingDataset.slots` draws the paired slots from the visit pairs and deals
every other sample into unpaired slots, so all unpaired data is used every epoch and m varies from batch to batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from modeling_medbind import MedBindProcessor
from modeling_medbind.configuration_medbind import MODALITIES

from .augmentation import CXRAugmentation, ECGNoiseAugmentation
from .text_groups import text_group_ids

NO_ROW = -1


def first_links(links: Iterable[tuple[Hashable, Hashable]]) -> list[tuple[Hashable, Hashable]]:
    """Keep each CXR and each ECG in at most one pair: a study linked to several studies of the other modality (two
    ECGs within 24 h of one CXR) keeps its first link, in the order given.
    """
    used_cxr, used_ecg, kept = set(), set(), []
    for cxr, ecg in links:
        if cxr in used_cxr or ecg in used_ecg:
            continue
        used_cxr.add(cxr)
        used_ecg.add(ecg)
        kept.append((cxr, ecg))
    return kept


def pair_rows(cxr: datasets.Dataset, ecg: datasets.Dataset, pairs: datasets.Dataset) -> list[tuple[int, int]]:
    """Turn visit pairs (`cxr_study_id`, `ecg_study_id`: MIMIC-PAIR or the demo's `pairs`) into disjoint (CXR row, ECG
    row) pairs of two datasets with a `study_id` column (`first_links`, so that every sample sits in at most one
    paired slot). Pairs whose studies are not in `cxr` / `ecg` (another split) are dropped before links are chosen,
    so such a pair never blocks one inside the split.
    """
    cxr_row = {study: row for row, study in enumerate(cxr["study_id"])}
    ecg_row = {study: row for row, study in enumerate(ecg["study_id"])}
    return first_links(
        (cxr_row[c], ecg_row[e])
        for c, e in zip(pairs["cxr_study_id"], pairs["ecg_study_id"])
        if c in cxr_row and e in ecg_row
    )


class PretrainingDataset(Dataset):
    """Map-style dataset over slots, indexed by the `(cxr_row, ecg_row, paired)` keys that `slots` produces, from a CXR
    dataset (`image`, `text`, `study_id`) and an ECG dataset (`ecg` array or `ecg_path`, `sampling_rate`, `text`,
    `study_id`), either None for a one-modality run, and their disjoint visit pairs (`pair_rows`), of which
    `pair_fraction` are dealt as paired slots each epoch (the others' samples go unpaired).
    """

    def __init__(
        self, cxr: datasets.Dataset | None, ecg: datasets.Dataset | None, pairs: Sequence[tuple[int, int]] = (),
        pair_fraction: float = 1.0,
    ):  # fmt: skip
        if cxr is None and ecg is None:
            raise ValueError("PretrainingDataset needs a CXR dataset, an ECG dataset or both")
        if not 0.0 <= pair_fraction <= 1.0:
            raise ValueError(f"pair_fraction must lie in [0, 1], got {pair_fraction}")
        if pairs and (cxr is None or ecg is None):
            raise ValueError("visit pairs need both a CXR and an ECG dataset")
        self.data = {"cxr": cxr, "ecg": ecg}
        self.sizes = {modality: 0 if data is None else len(data) for modality, data in self.data.items()}
        self.pairs = list(pairs)
        self.num_paired_slots = round(pair_fraction * len(self.pairs))

    def __len__(self) -> int:
        unpaired = max(self.sizes[modality] - self.num_paired_slots for modality in MODALITIES)
        return self.num_paired_slots + unpaired

    def slots(self, seed: int, epoch: int) -> list[tuple[int, int, int]]:
        """The `len(self)` slot keys of one epoch (`-1` for an absent modality), in training order: a pure function of
        `(seed, epoch)`, so every process of a distributed run, and a resumed run, deals the same batches. Every CXR and
        every ECG appears at least once; the modality with fewer samples is cycled to fill the unpaired slots.
        """
        rng = np.random.default_rng([seed, epoch])
        chosen = [self.pairs[i] for i in rng.permutation(len(self.pairs))[: self.num_paired_slots]]
        paired = {"cxr": {c for c, _ in chosen}, "ecg": {e for _, e in chosen}}
        num_unpaired = len(self) - len(chosen)
        rest = {}
        for modality in MODALITIES:
            rows = np.array([r for r in range(self.sizes[modality]) if r not in paired[modality]], dtype=np.int64)
            if len(rows) == 0:
                rest[modality] = np.full(num_unpaired, NO_ROW)
                continue
            cycles = -(-num_unpaired // len(rows))
            rest[modality] = np.concatenate([rng.permutation(rows) for _ in range(cycles)])[:num_unpaired]
        keys = [(c, e, 1) for c, e in chosen] + [(int(c), int(e), 0) for c, e in zip(rest["cxr"], rest["ecg"])]
        return [keys[i] for i in rng.permutation(len(keys))]

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        cxr_row, ecg_row, paired = key
        return {
            "cxr": self.data["cxr"][int(cxr_row)] if cxr_row != NO_ROW else None,
            "ecg": self.data["ecg"][int(ecg_row)] if ecg_row != NO_ROW else None,
            "paired": bool(paired),
            "key": key,
        }


class SlotSampler(Sampler):
    """Yields one epoch of `PretrainingDataset.slots`; the Trainer (through accelerate) calls `set_epoch`, and
    accelerate shards the resulting batches across processes.
    """

    def __init__(self, dataset: PretrainingDataset, seed: int):
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        return iter(self.dataset.slots(self.seed, self.epoch))

    def __len__(self) -> int:
        return len(self.dataset)


@dataclass
class MedBindPretrainingCollator:
    """Turns slots into one `MedBindModel.forward` training batch: `pixel_values [n_cxr, ...]`, `ecg_values
    [n_ecg, ...]`, `input_ids` / `attention_mask [n_cxr + n_ecg, L]` (the CXRs' reports, then the ECGs', the layout
    the model's loss reads), `text_group_ids [n_cxr + n_ecg]` (equal for identical reports: TMCL's positives) and
    `pair_index [m, 2]` (CXR position, ECG position) of the paired slots.

    Augmentation (None for evaluation) draws from a generator seeded by `seed` and the batch's slot keys, not from the
    global RNG: the Trainer's loader prepares the next batch before the current step ends, so global draws would land
    in a different order after a resume and the resumed run would see different augmentations.
    """

    processor: MedBindProcessor
    cxr_augmentation: CXRAugmentation | None = None
    ecg_augmentation: ECGNoiseAugmentation | None = None
    seed: int = 0

    def __call__(self, slots: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        positions: dict[str, list[int]] = {}
        reports: list[str] = []
        # Keys hold -1 for an absent modality; SeedSequence takes non-negative integers.
        entropy = [self.seed] + [value + 1 for slot in slots for value in slot.get("key", (NO_ROW, NO_ROW, 0))]
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence(entropy).generate_state(1)[0]))
        # An augmentation that crops at random (MedCLIP's) takes the processor's resize uncropped.
        crops = self.cxr_augmentation is not None and self.cxr_augmentation.crop_size is not None
        image_kwargs = {"do_center_crop": False} if crops else {}
        for modality in MODALITIES:
            rows = [slot[modality] for slot in slots if slot[modality] is not None]
            positions[modality] = [i for i, slot in enumerate(slots) if slot[modality] is not None]
            if not rows:
                continue
            reports += [row["text"] for row in rows]
            columns = {column: [row[column] for row in rows] for column in rows[0]}
            augment = getattr(self, f"{modality}_augmentation")
            for name, values in modality_inputs(self.processor, columns, modality, image_kwargs).items():
                batch[name] = augment(values, generator) if augment else values
        text = self.processor(text=reports, return_tensors="pt")
        batch["input_ids"], batch["attention_mask"] = text["input_ids"], text["attention_mask"]
        batch["text_group_ids"] = torch.tensor(text_group_ids(reports, max_words=self.processor.max_words))
        cxr_position = {slot: i for i, slot in enumerate(positions["cxr"])}
        ecg_position = {slot: i for i, slot in enumerate(positions["ecg"])}
        batch["pair_index"] = torch.tensor(
            [[cxr_position[i], ecg_position[i]] for i, slot in enumerate(slots) if slot["paired"]], dtype=torch.long
        ).reshape(-1, 2)
        return batch


def per_sampling_rate(
    items: Sequence[Any], rates: Sequence[float | None], process: Callable[[list[Any], float | None], torch.Tensor]
) -> torch.Tensor:
    """`process(items of one rate, rate)` once per sampling rate, the results' rows stacked back in the items' order."""
    values: list[torch.Tensor | None] = [None] * len(items)
    for rate in dict.fromkeys(rates):
        rows = [i for i, row_rate in enumerate(rates) if row_rate == rate]
        for row, value in zip(rows, process([items[i] for i in rows], rate), strict=True):
            values[row] = value
    return torch.stack(values)


def processed_ecgs(
    processor: MedBindProcessor, signals: Sequence[Any], sampling_rates: Sequence[float | None]
) -> torch.Tensor:
    """`[n, leads, samples]` model inputs of ECG dataset rows, in order: each a record path (its header carries the
    rate, the row's is ignored) or an array (`[leads, samples]`) at its row's rate; one processor call per rate.
    """
    signals = [item if isinstance(item, str | os.PathLike) else np.asarray(item, np.float32) for item in signals]

    def extract(group: list[Any], rate: float | None) -> torch.Tensor:
        return processor(ecgs=group, sampling_rate=rate, return_tensors="pt")["ecg_values"]

    return per_sampling_rate(signals, sampling_rates, extract)


def modality_inputs(
    processor: MedBindProcessor, batch: Mapping[str, list], modality: str, image_kwargs: Mapping[str, Any] | None = None
) -> dict[str, torch.Tensor]:
    """A batch of dataset rows (columns as lists) -> `{"pixel_values": [B, 3, H, W]}` for CXR (`image_kwargs` to the
    image processor), `{"ecg_values": [B, 12, T]}` for ECG (record paths carry their own rate; arrays are resampled
    from their row's `sampling_rate`).
    """
    if modality == "cxr":
        images = processor.image_processor(batch["image"], return_tensors="pt", **(image_kwargs or {}))
        return {"pixel_values": images["pixel_values"]}
    signals = batch["ecg_path"] if "ecg_path" in batch else batch["ecg"]
    return {"ecg_values": processed_ecgs(processor, signals, batch.get("sampling_rate") or [None] * len(signals))}
