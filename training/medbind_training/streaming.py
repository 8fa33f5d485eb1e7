"""Pretraining slots from streamed datasets, for data that does not fit on the local disk.

`StreamingPretrainingDataset` deals the same slots as `PretrainingDataset` (`{"cxr", "ecg", "paired", "key"}`, read
by `MedBindPretrainingCollator`) from `datasets.IterableDataset`s: `load_dataset(..., streaming=True)` from the Hub
or `Dataset.to_iterable_dataset(num_shards=N)` over local Arrow files.

Visit pairs do not depend on the order of the streams. The pair table is small and read whole; before the first
epoch, one pass over each stream counts its rows and copies the rows that have a partner (a visit pair) into a
local Arrow file, indexed by study id (MIMIC-PAIR: ~22k CXRs and ECGs, a quarter of the data; memory-mapped and
shared by DataLoader workers). Each epoch then deals the paired slots from the pair table, shuffled by `(seed,
epoch)`, each fetching its CXR and its ECG from the index; and the unpaired slots from the two streams, which skip
the rows dealt as pairs (the modality whose stream ends first is streamed again to fill the other's unpaired slots,
as `PretrainingDataset` cycles the smaller one). The two are mixed so that the share of paired slots is the same all
through the epoch (`interleave`), as in the map-style dataset's shuffled slots: a MIMIC batch carries ~P/(P+U) x
batch pairs whether the builders sorted each modality by its own study ids or not.

Training with `Trainer` / `MedBindTrainer`:

- The dataset has no length: set `max_steps`. Each pass over the streams is one epoch; the Trainer calls `set_epoch`
  (through accelerate's data loader) before each one, which reshuffles.
- Set `accelerator_config={"dispatch_batches": False}`: accelerate's default for an `IterableDataset` (process 0
  reads `num_processes` batches, concatenates them and slices one per process) mixes up `pair_index` and the padded
  text of different batches, and even on one process cuts every tensor to the length of the first one (the CXR
  count), which drops ECGs from batches where some slots have no CXR.
- With several processes, accelerate then wraps the dataset in its `IterableDatasetShard`: every process reads the
  whole stream and keeps its own slots of each global batch, so the global batches equal those of a one-process run
  (but the last of an epoch, which accelerate completes with the epoch's first slots). Leave `rank` / `world_size`
  unset then, or the data would be split twice; they are for a loop that does not re-shard (a plain `DataLoader`):
  each process reads only its share of the shards and pairs, and may reach the end of an epoch at another step.
- Resuming: without a length the Trainer counts every step as part of the first epoch and skips that many batches
  of it. A run stopped within its first pass over the streams resumes on the same slots; one stopped later skips
  the whole first epoch and resumes at the start of the second, not where it stopped.
- `dataloader_num_workers` > 0 splits each stream's shards and the pairs between the workers: give both streams at
  least that many shards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Mapping
from itertools import count
from typing import Any

import datasets
import numpy as np
import torch
from datasets.distributed import split_dataset_by_node
from torch.utils.data import IterableDataset

from modeling_medbind.configuration_medbind import MODALITIES

from .data import NO_ROW, first_links

PAIR_COLUMNS = ("cxr_study_id", "ecg_study_id")
# Positions in one stream of one epoch, process and worker stay below this, so keys never repeat between streams.
KEY_STRIDE = 2**40

Sample = tuple[int, dict[str, Any]]  # (running position of the sample, its row)


def visit_pair_map(pairs: datasets.Dataset | datasets.IterableDataset | Iterable[Mapping[str, Any]]) -> dict[int, int]:
    """Load a visit-pair table (MIMIC-PAIR, the demo's `pairs`; small even when the samples are not, streamed or not)
    into `{cxr_study_id: ecg_study_id}`.

    As in `pair_rows`, a study linked to several studies of the other modality keeps its first link. Unlike `pair_rows`,
    the table is read before the streams, so a first link to a study of another split still wins (that pair is then
    dropped, as its partner is not streamed).
    """

    def links() -> Iterator[tuple[int, int]]:
        for row in pairs:
            if any(column not in row for column in PAIR_COLUMNS):
                raise ValueError(f"a visit-pair row needs the columns {PAIR_COLUMNS}, got {sorted(row)}")
            yield row["cxr_study_id"], row["ecg_study_id"]

    return dict(first_links(links()))


def interleave(
    paired: Iterator[dict[str, Any]], unpaired: Iterator[dict[str, Any]], num_paired: int, num_unpaired: int
) -> Iterator[dict[str, Any]]:
    """Mix paired and unpaired slots so that every stretch of the epoch carries the same share of pairs: with
    P = `num_paired`, U = `num_unpaired` and p_k the paired slots dealt before slot k (0-based), slot k is paired when

        p_k < (k + 1) * P / (P + U)

    so after any k slots the paired count is within one of k * P / (P + U). When one source ends, the other's
    remaining slots follow; the counts only set the pace and may be estimates.
    """
    total = num_paired + num_unpaired
    paired_dealt = 0
    for position in count():
        wants_pair = total > 0 and paired_dealt * total < (position + 1) * num_paired
        first, second = (paired, unpaired) if wants_pair else (unpaired, paired)
        slot = next(first, None)
        if slot is None:
            slot = next(second, None)
            if slot is None:
                return
        paired_dealt += slot["paired"]
        yield slot


def _remove_in_owner(folder: str, owner: int) -> None:
    # Forked DataLoader workers inherit the finalizer; only the process that made the folder may delete it.
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


class PartnerIndex:
    """The rows of one modality that have a visit partner, copied from its stream (read once, in its own order, without
    decoding) into a local Arrow file and looked up by study id; and the number of rows the stream holds.
    """

    def __init__(self, stream: datasets.IterableDataset, studies: set[Any]):
        self.num_rows = 0
        self._folder = tempfile.mkdtemp(prefix="medbind-partners-")
        weakref.finalize(self, _remove_in_owner, self._folder, os.getpid())

        def partnered_rows() -> Iterator[dict[str, Any]]:
            for row in stream.decode(False):
                if "study_id" not in row:
                    raise ValueError(f"a streamed row needs a study_id to match visit pairs, got {sorted(row)}")
                self.num_rows += 1
                if row["study_id"] in studies:
                    yield row

        try:
            self.rows = datasets.Dataset.from_generator(
                partnered_rows, features=stream.features, cache_dir=self._folder, fingerprint=self._folder
            )
        except datasets.exceptions.DatasetGenerationError as error:
            if isinstance(error.__cause__, ValueError):
                raise error.__cause__ from None
            raise
        self.position = {study: row for row, study in enumerate(self.rows["study_id"])} if len(self.rows) else {}

    def __contains__(self, study: Any) -> bool:
        return study in self.position

    def __getitem__(self, study: Any) -> dict[str, Any]:
        return self.rows[self.position[study]]


class StreamingPretrainingDataset(IterableDataset):
    """Pretraining slots dealt from streamed CXR and ECG datasets, as `PretrainingDataset` deals them from Arrow files
    (see the module docstring). The slots are a function of `(seed, epoch)` and, when given, `rank` / `world_size`
    (and of the DataLoader worker): without `rank`, every process deals the same slots.

    A slot's `key` is `(cxr_position, ecg_position, paired)`: each sample's running position in the epoch, offset
    per epoch, process and worker so that keys never repeat; `-1` for an absent modality. The collator seeds the
    batch's augmentation with these keys.

    The streams hold `PretrainingDataset`'s columns; `pairs` is `visit_pair_map`'s input or its dict (None: no paired
    slots; with pairs, both streams are read once here to index the paired rows). `seed` shuffles the streams and the
    pairs alike on every process; `rank` / `world_size` split them between processes (module docstring: when not to).
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
        sources = {"cxr": cxr, "ecg": ecg}
        if cxr is None and ecg is None:
            raise ValueError("StreamingPretrainingDataset needs a CXR stream, an ECG stream or both")
        if pairs is not None and (cxr is None or ecg is None):
            raise ValueError("visit pairs need both a CXR and an ECG stream")
        for modality, stream in sources.items():
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
        self.seed = seed
        self.features = {modality: stream.features for modality, stream in sources.items() if stream is not None}
        # One seed on every process: each shuffles the shards alike, so the split shares them out without overlap.
        # Rows stay encoded until a slot keeps them: the rows dealt as pairs are skipped undecoded.
        self.streams = {
            modality: self._split(stream).decode(False).shuffle(seed=seed, buffer_size=buffer_size)
            for modality, stream in sources.items()
            if stream is not None
        }
        cxr_to_ecg = dict(pairs) if isinstance(pairs, Mapping) else visit_pair_map(pairs) if pairs is not None else {}
        self.partners: dict[str, PartnerIndex] = {}
        self.pairs: list[tuple[Any, Any]] = []  # pairs whose two studies are streamed, in an order each epoch shuffles
        if cxr_to_ecg:
            self.partners = {
                "cxr": PartnerIndex(cxr, set(cxr_to_ecg)), "ecg": PartnerIndex(ecg, set(cxr_to_ecg.values()))
            }
            self.pairs = sorted(
                (c, e) for c, e in cxr_to_ecg.items() if c in self.partners["cxr"] and e in self.partners["ecg"]
            )
        self.paired_studies = {"cxr": {c for c, _ in self.pairs}, "ecg": {e for _, e in self.pairs}}

    def _split(self, stream: datasets.IterableDataset) -> datasets.IterableDataset:
        return split_dataset_by_node(stream, self.rank, self.world_size) if self.world_size > 1 else stream

    @property
    def epoch(self) -> int:
        """The epoch the next iteration deals (the streams hold it, shared with persistent DataLoader workers)."""
        return next(iter(self.streams.values())).epoch

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle both streams and the pairs for `epoch`; called by the Trainer (through accelerate) before each."""
        for stream in self.streams.values():
            stream.set_epoch(epoch)

    def _worker(self) -> tuple[int, int]:
        worker = torch.utils.data.get_worker_info()
        return (worker.num_workers, worker.id) if worker is not None else (1, 0)

    def _my_pairs(self) -> list[tuple[Any, Any]]:
        """This epoch's pairs, shuffled, of this process (with `rank`) and DataLoader worker."""
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.pairs))
        workers, worker_id = self._worker()
        shares = self.world_size * workers
        return [self.pairs[i] for i in order[self.rank * workers + worker_id :: shares]]

    def _expected_unpaired(self) -> int:
        """Unpaired slots this process and worker will deal, estimated from the whole streams' row counts."""
        if not self.partners:
            return 0  # without pairs nothing is paired and the pace does not matter
        workers, _ = self._worker()
        rest = max(index.num_rows - len(self.pairs) for index in self.partners.values())
        return -(-rest // (self.world_size * workers))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Yield one epoch of slots `{"cxr": row | None, "ecg": row | None, "paired": bool, "key": (c, e, paired)}`."""
        workers, worker_id = self._worker()
        first = ((self.epoch * self.world_size + self.rank) * workers + worker_id) * KEY_STRIDE
        position = {modality: count(first) for modality in MODALITIES}
        pairs = self._my_pairs()
        paired = (
            _slot(
                cxr=(next(position["cxr"]), self.partners["cxr"][c]),
                ecg=(next(position["ecg"]), self.partners["ecg"][e]),
                paired=True,
            )
            for c, e in pairs
        )
        unpaired = self._unpaired_slots(position)
        yield from interleave(paired, unpaired, len(pairs), self._expected_unpaired())

    def _unpaired_rows(self, modality: str, position: Iterator[int]) -> Iterator[Sample]:
        """One pass over a stream: its rows not dealt as pairs, decoded, with their running positions."""
        skip = self.paired_studies.get(modality, set())
        features = self.features[modality]
        for row in self.streams[modality]:
            if skip and row.get("study_id") in skip:
                continue
            yield next(position), features.decode_example(row) if features is not None else row

    def _refills(self, modality: str, position: Iterator[int]) -> Iterator[Sample]:
        """The stream's unpaired rows pass after pass (the same epoch's order), ending if a pass has none."""
        while True:
            empty = True
            for sample in self._unpaired_rows(modality, position):
                empty = False
                yield sample
            if empty:
                return

    def _unpaired_slots(self, position: dict[str, Iterator[int]]) -> Iterator[dict[str, Any]]:
        """Unpaired slots: the streams zipped; the one that ends first is streamed again until the other ends."""
        present = list(self.streams)
        first_pass = {modality: self._unpaired_rows(modality, position[modality]) for modality in present}
        refill = {modality: self._refills(modality, position[modality]) for modality in present}
        while True:
            samples = {modality: next(first_pass[modality], None) for modality in present}
            if all(sample is None for sample in samples.values()):
                return
            for modality in present:
                if samples[modality] is None:
                    samples[modality] = next(refill[modality], None)  # None: no unpaired rows here at all
            yield _slot(**samples, paired=False)


def _slot(cxr: Sample | None = None, ecg: Sample | None = None, paired: bool = False) -> dict[str, Any]:
    return {
        "cxr": cxr[1] if cxr else None,
        "ecg": ecg[1] if ecg else None,
        "paired": paired,
        "key": (cxr[0] if cxr else NO_ROW, ecg[0] if ecg else NO_ROW, int(paired)),
    }
