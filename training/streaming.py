"""Pretraining slots from streamed datasets, for data that does not fit on the local disk.

`StreamingPretrainingDataset` deals the same slots as `PretrainingDataset` (`{"cxr", "ecg", "paired", "key"}`, read
by `MedBindPretrainingCollator`) from `datasets.IterableDataset`s: `load_dataset(..., streaming=True)` from the Hub
or `Dataset.to_iterable_dataset(num_shards=N)` over local Arrow files. Without random access, visit pairs are found
on the fly: a CXR and an ECG of the same visit form a paired slot when both pass within `buffer_size` samples of
each other; every other sample is zipped with one of the other modality into an unpaired slot.

Pairs only meet when the two streams are co-ordered: give the CXR and ECG datasets the same number of shards and an
order in which a visit's CXR and ECG sit at about the same position (by subject and time, for instance). Both
streams are shuffled with the same seed, which permutes their shards and buffers alike and keeps them co-ordered.
Sorted by their own study ids (unrelated numbers in MIMIC), partners rarely meet and m is then about 0.

Training with `Trainer` / `MedBindTrainer`:

- The dataset has no length: set `max_steps`. Each pass over the streams is one epoch; the Trainer calls `set_epoch`
  (through accelerate's data loader) before each one, which reshuffles.
- Set `accelerator_config={"dispatch_batches": False}`. accelerate's default for an `IterableDataset` is to let
  process 0 read `num_processes` batches, concatenate them and slice one per process: that mixes up `pair_index`
  and the padded text of different batches, and even on one process it cuts every tensor to the length of the first
  one (the CXR count), which drops ECGs from batches where some slots have no CXR.
- With `dispatch_batches=False` and several processes, accelerate wraps the dataset in its `IterableDatasetShard`:
  every process reads the whole stream and keeps its own `per_device_train_batch_size` slots of each global batch,
  so all processes take the same number of steps and the global batches equal those of a one-process run (but the
  last of an epoch, which accelerate completes with the epoch's first slots). Leave `rank` / `world_size` unset
  then, or the data would be split twice.
- `rank` / `world_size` (`datasets.distributed.split_dataset_by_node`) make each process read only its share of
  the shards, for a loop that does not re-shard (a plain `DataLoader`). Shards differ in size, so processes may then
  reach the end of an epoch at different steps.
- Resuming: without a length the Trainer counts every step as part of the first epoch and skips that many batches
  of it. A run stopped within its first pass over the streams resumes on the same slots; one stopped later skips
  the whole first epoch and resumes at the start of the second, not where it stopped.
- `dataloader_num_workers` > 0 splits each stream's shards between the workers (`datasets` does it): give both
  streams at least that many shards; pairs only meet within one worker.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Mapping
from itertools import count
from typing import Any

import datasets
import torch
from datasets.distributed import split_dataset_by_node
from torch.utils.data import IterableDataset

from .data import MODALITIES, NO_ROW, first_links

PAIR_COLUMNS = ("cxr_study_id", "ecg_study_id")
# Positions in one stream of one epoch, process and worker stay below this, so keys never repeat between streams.
KEY_STRIDE = 2**40

Sample = tuple[int, dict[str, Any]]  # (running position of the sample, its row)


def visit_pair_map(pairs: datasets.Dataset | datasets.IterableDataset | Iterable[Mapping[str, Any]]) -> dict[int, int]:
    """
    Load a visit-pair table (small even when the samples are not) into `{cxr_study_id: ecg_study_id}`.

    As in `pair_rows`, a study linked to several studies of the other modality keeps its first link, so every sample
    sits in at most one pair. Unlike `pair_rows`, a stream cannot tell which studies belong to the split, so a first
    link to a study of another split still wins.

    Args:
        pairs: rows with `cxr_study_id` and `ecg_study_id` (MIMIC-PAIR, the demo's `pairs`), streamed or not.

    Returns:
        A dict from CXR study id to ECG study id, one-to-one.

    Raises:
        ValueError: a row lacks `cxr_study_id` or `ecg_study_id`.
    """

    def links() -> Iterator[tuple[int, int]]:
        for row in pairs:
            if any(column not in row for column in PAIR_COLUMNS):
                raise ValueError(f"a visit-pair row needs the columns {PAIR_COLUMNS}, got {sorted(row)}")
            yield row["cxr_study_id"], row["ecg_study_id"]

    return dict(first_links(links()))


def _passes(stream: datasets.IterableDataset) -> Iterator[dict[str, Any]]:
    """The stream over and over (the same epoch's order), ending only if a pass is empty."""
    while True:
        empty = True
        for row in stream:
            empty = False
            yield row
        if empty:
            return


class StreamingPretrainingDataset(IterableDataset):
    """
    Pretraining slots dealt from streamed CXR and ECG datasets, as `PretrainingDataset` deals them from Arrow files.

    Each epoch every sample of both streams is dealt once; the modality whose stream ends first is streamed again
    (in the same order) to fill the unpaired slots of the other, as `PretrainingDataset` cycles the smaller one.
    The slots are a function of `(seed, epoch)` and, when given, `rank` / `world_size` (and of the DataLoader
    worker): without `rank`, every process deals the same slots, and a resumed run that skips the batches it has
    seen continues with the same data (see the module docstring for the Trainer's limit on that).

    A slot's `key` is `(cxr_position, ecg_position, paired)`: each sample's running position in its stream, offset
    per epoch, process and worker so that keys never repeat; `-1` for an absent modality. The collator seeds the
    batch's augmentation with these keys.

    Args:
        cxr: streamed CXR dataset (`image`, `text`, `study_id`), or None for an ECG-only run (ECG-CLIP).
        ecg: streamed ECG dataset (`ecg` array or `ecg_path`, `sampling_rate`, `text`, `study_id`), or None.
        pairs: visit pairs (`visit_pair_map`'s input, or its dict); None: no paired slots (m = 0).
        seed: seed of both streams' shuffles (the same on every process).
        buffer_size: shuffle buffer of each stream, and how many samples of its modality a sample with a partner
            waits for that partner before it is dealt unpaired.
        rank, world_size: split both streams between processes with `split_dataset_by_node` (see the module
            docstring for when, and when not, to use it with the Trainer).

    Raises:
        ValueError: neither stream is given, pairs without both streams, a stream that is not a
            `datasets.IterableDataset`, `buffer_size` < 1, or an invalid `rank` / `world_size`.
    """

    def __init__(
        self,
        cxr: datasets.IterableDataset | None,
        ecg: datasets.IterableDataset | None,
        pairs: Mapping[int, int] | datasets.Dataset | datasets.IterableDataset | None = None,
        seed: int = 0,
        buffer_size: int = 1000,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        streams = {"cxr": cxr, "ecg": ecg}
        if cxr is None and ecg is None:
            raise ValueError("StreamingPretrainingDataset needs a CXR stream, an ECG stream or both")
        if pairs is not None and (cxr is None or ecg is None):
            raise ValueError("visit pairs need both a CXR and an ECG stream")
        for modality, stream in streams.items():
            if stream is not None and not isinstance(stream, datasets.IterableDataset):
                raise ValueError(
                    f"the {modality} stream must be a datasets.IterableDataset (load_dataset(..., streaming=True) or "
                    f"Dataset.to_iterable_dataset()), got {type(stream).__name__}"
                )
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1, got {buffer_size}")
        if (rank is None) != (world_size is None) or (world_size is not None and not 0 <= rank < world_size):
            raise ValueError(f"rank and world_size go together, with 0 <= rank < world_size; got {rank}, {world_size}")
        self.rank, self.world_size = rank or 0, world_size or 1
        self.buffer_size = buffer_size
        # One seed on every process: each shuffles the shards alike, so the split shares them out without overlap.
        self.streams = {
            modality: self._split(stream).shuffle(seed=seed, buffer_size=buffer_size)
            for modality, stream in streams.items()
            if stream is not None
        }
        cxr_to_ecg = dict(pairs) if isinstance(pairs, Mapping) else visit_pair_map(pairs) if pairs is not None else {}
        self.partner = {"cxr": cxr_to_ecg, "ecg": {ecg: cxr for cxr, ecg in cxr_to_ecg.items()}}

    def _split(self, stream: datasets.IterableDataset) -> datasets.IterableDataset:
        return split_dataset_by_node(stream, self.rank, self.world_size) if self.world_size > 1 else stream

    @property
    def epoch(self) -> int:
        """The epoch the next iteration deals (the streams hold it, shared with persistent DataLoader workers)."""
        return next(iter(self.streams.values())).epoch

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle both streams for `epoch`; called by the Trainer (through accelerate) before each epoch."""
        for stream in self.streams.values():
            stream.set_epoch(epoch)

    def _first_position(self) -> int:
        worker = torch.utils.data.get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)
        return ((self.epoch * self.world_size + self.rank) * workers + worker_id) * KEY_STRIDE

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """
        Yield one epoch of slots `{"cxr": row | None, "ecg": row | None, "paired": bool, "key": (c, e, paired)}`.

        Raises:
            ValueError: a row lacks `study_id` while visit pairs are given.
        """
        first = self._first_position()
        position = {modality: count(first) for modality in MODALITIES}
        first_pass = {modality: iter(stream) for modality, stream in self.streams.items()}
        refill = {modality: _passes(stream) for modality, stream in self.streams.items()}
        waiting: dict[str, OrderedDict[Any, Sample]] = {modality: OrderedDict() for modality in MODALITIES}
        unpaired: dict[str, deque[Sample]] = {modality: deque() for modality in MODALITIES}
        open_streams = list(first_pass)
        while open_streams:
            for modality in list(open_streams):
                row = next(first_pass[modality], None)
                if row is None:
                    open_streams.remove(modality)
                    continue
                sample = (next(position[modality]), row)
                slot = self._admit(modality, sample, waiting, unpaired, open_streams)
                if slot is not None:
                    yield slot
            if not open_streams:
                # Partners that have not met by the end of both streams never will.
                for modality in MODALITIES:
                    unpaired[modality].extend(waiting[modality].values())
            yield from self._zip(unpaired, refill, position, open_streams)

    def _admit(
        self,
        modality: str,
        sample: Sample,
        waiting: dict[str, OrderedDict[Any, Sample]],
        unpaired: dict[str, deque[Sample]],
        open_streams: list[str],
    ) -> dict[str, Any] | None:
        """A paired slot if `sample`'s partner is waiting; else the sample waits for its partner or is unpaired."""
        partners = self.partner[modality]
        if not partners:
            unpaired[modality].append(sample)
            return None
        row = sample[1]
        if "study_id" not in row:
            raise ValueError(f"a streamed {modality} row needs a study_id to match visit pairs, got {sorted(row)}")
        partner = partners.get(row["study_id"])
        other = "ecg" if modality == "cxr" else "cxr"
        if partner is not None and partner in waiting[other]:
            return _slot(**{modality: sample, other: waiting[other].pop(partner)}, paired=True)
        if partner is not None and other in open_streams:
            waiting[modality][row["study_id"]] = sample
            if len(waiting[modality]) > self.buffer_size:
                unpaired[modality].append(waiting[modality].popitem(last=False)[1])
        else:
            unpaired[modality].append(sample)
        return None

    def _zip(
        self,
        unpaired: dict[str, deque[Sample]],
        refill: dict[str, Iterator[dict[str, Any]]],
        position: dict[str, Iterator[int]],
        open_streams: list[str],
    ) -> Iterator[dict[str, Any]]:
        """Unpaired slots from the queues; a modality whose stream has ended is streamed again to fill them."""
        while True:
            if unpaired["cxr"] and unpaired["ecg"]:
                yield _slot(cxr=unpaired["cxr"].popleft(), ecg=unpaired["ecg"].popleft(), paired=False)
                continue
            ready = next((modality for modality in MODALITIES if unpaired[modality]), None)
            if ready is None:
                return
            other = "ecg" if ready == "cxr" else "cxr"
            if other in open_streams:
                return  # the other stream may still bring partners
            row = next(refill[other], None) if other in refill else None
            if row is not None:
                unpaired[other].append((next(position[other]), row))
            else:  # one-modality run, or a process / worker that got no shard of the other stream
                yield _slot(**{ready: unpaired[ready].popleft()}, paired=False)


def _slot(cxr: Sample | None = None, ecg: Sample | None = None, paired: bool = False) -> dict[str, Any]:
    return {
        "cxr": cxr[1] if cxr else None,
        "ecg": ecg[1] if ecg else None,
        "paired": paired,
        "key": (cxr[0] if cxr else NO_ROW, ecg[0] if ecg else NO_ROW, int(paired)),
    }


__all__ = ["StreamingPretrainingDataset", "visit_pair_map"]
