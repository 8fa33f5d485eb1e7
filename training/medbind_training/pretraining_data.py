"""Pretraining's data: the DATA folder's `cxr/`, `ecg/` and `pairs/` DatasetDicts as the training set (in memory or
streamed), the validation split, and the synthetic demo's data built where absent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import datasets
from transformers import TrainingArguments

from modeling_medbind.configuration_medbind import MODALITIES

from .data import PretrainingDataset
from .pretraining_arguments import DataArguments
from .splits import RetrievalSplit, dataset_paths, load_dataset_dicts, retrieval_split
from .streaming import StreamingPretrainingDataset

logger = logging.getLogger(__name__)

STREAMED_TOKENIZER_REPORTS = 100_000  # reports a streamed run trains its WordPiece vocabulary on


def pretraining_paths(data_args: DataArguments) -> dict[str, str | None]:
    """`{"cxr", "ecg", "pairs"}`: each dataset's folder (or, with --streaming, Hub id), None where not given."""
    return dataset_paths(
        data_args.dataset_dir, cxr=data_args.cxr_dataset, ecg=data_args.ecg_dataset, pairs=data_args.pair_dataset
    )


def load_splits(data_args: DataArguments) -> dict[str, datasets.DatasetDict | None]:
    """`{"cxr", "ecg", "pairs"}` DatasetDicts from disk, or from the Hub when streaming (None where absent)."""
    return load_dataset_dicts(pretraining_paths(data_args), data_args.streaming)


def streamed_train_set(
    data_args: DataArguments, data: dict[str, datasets.DatasetDict | None], modalities: Sequence[str], seed: int
) -> StreamingPretrainingDataset:
    """The training split as streams: local DatasetDicts through `to_iterable_dataset`, the others from the Hub."""
    paths = pretraining_paths(data_args)

    def stream(name: str) -> datasets.IterableDataset | None:
        local = data[name] and data[name].get("train")
        if local is not None:
            # The pair table is small and read whole by the dataset; only the samples are streamed.
            return local if name == "pairs" else local.to_iterable_dataset(data_args.streaming_num_shards)
        return datasets.load_dataset(paths[name], split="train", streaming=True) if paths[name] else None

    cxr, ecg = (stream(modality) if modality in modalities else None for modality in MODALITIES)
    pairs = stream("pairs") if cxr is not None and ecg is not None else None
    return StreamingPretrainingDataset(cxr, ecg, pairs, seed=seed, buffer_size=data_args.streaming_buffer_size)


def training_set(
    data_args: DataArguments,
    training_args: TrainingArguments,
    data: dict[str, datasets.DatasetDict | None],
    modalities: Sequence[str],
) -> tuple[PretrainingDataset | StreamingPretrainingDataset, list[str]]:
    """The training set, in memory or streamed (`--streaming`), and the reports a trained WordPiece vocabulary learns
    from (a streamed run's first `STREAMED_TOKENIZER_REPORTS` per stream).
    """
    if data_args.streaming:
        if training_args.max_steps <= 0:
            raise ValueError("--streaming needs --max_steps: a stream has no length to count epochs by")
        # accelerate's default for an IterableDataset (process 0 concatenates the processes' batches and slices
        # them) breaks pair_index and the padded text; every process reads the stream and keeps its own slots.
        training_args.accelerator_config.dispatch_batches = False
        seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
        streamed = streamed_train_set(data_args, data, modalities, seed)
        reports = [
            row["text"]
            for stream in streamed.streams.values()
            for row in stream.select_columns(["text"]).take(STREAMED_TOKENIZER_REPORTS)
        ]
        return streamed, reports
    train = retrieval_split(data, "train", data_args.max_train_samples, modalities)
    if train.cxr is None and train.ecg is None:
        raise FileNotFoundError(
            f"no training data found: give --dataset_dir with cxr/ and ecg/ DatasetDicts (got {data_args.dataset_dir!r})"
            " or --cxr_dataset / --ecg_dataset"
        )
    reports = [text for part in (train.cxr, train.ecg) if part is not None for text in part["text"]]
    return PretrainingDataset(train.cxr, train.ecg, train.pairs, data_args.pair_fraction), reports


def validation_split(
    data_args: DataArguments, data: dict[str, datasets.DatasetDict | None], modalities: Sequence[str]
) -> RetrievalSplit:
    """The validation split that chooses the best checkpoint (`MedBindTrainer.evaluate`)."""
    return retrieval_split(data, "validation", data_args.max_eval_samples, modalities)


def build_demo_data_if_absent(data_args: DataArguments, training_args: TrainingArguments) -> None:
    """The demo's data: synthetic patients from `medbind_processing.demo`, written once by the main process."""
    from medbind_processing.demo import DEMO_DATASETS, save_demo

    with training_args.main_process_first(desc="building the synthetic demo dataset"):
        if not all(os.path.isdir(os.path.join(data_args.dataset_dir, name)) for name in DEMO_DATASETS):
            logger.info("building the SYNTHETIC demo dataset in %s", data_args.dataset_dir)
            save_demo(Path(data_args.dataset_dir), num_patients=data_args.demo_num_patients, seed=training_args.seed)
