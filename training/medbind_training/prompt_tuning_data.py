"""Prompt tuning's data: the visits (`outcomes/`) tokenised, the frozen embeddings of their attached studies (MedBind's,
or a `--baseline`'s) looked up by study id, and the collator that puts both into a batch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import PreTrainedTokenizerBase, TrainingArguments

from modeling_medbind.configuration_medbind import MODALITIES

from .arguments import optional_argument
from .baselines import BaselineEncoder, task_embedder
from .embedding import Embedder, TaskEmbedder, load_model
from .prompt_tuning_arguments import DataArguments, ModelArguments
from .splits import dataset_paths

logger = logging.getLogger(__name__)

TEXT_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")
DEMO_PRETRAINING = "accelerate launch training/pretrain.py --preset demo"


@dataclass
class StudyEmbeddings:
    """Embeddings of one modality's studies (`[num_studies, embedding_dim]`, L2-normalised), looked up by study id."""

    rows: dict[int, int]
    embeds: torch.Tensor

    def lookup(self, study_ids: Sequence[int | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """`(embeds [B, embedding_dim], present [B] bool)` of one study id per visit; None (no study attached) or an id
        without embedding is absent, its row zeros.
        """
        rows = [self.rows.get(study_id, -1) if study_id is not None else -1 for study_id in study_ids]
        index = torch.tensor(rows, dtype=torch.long)
        present = index >= 0
        embeds = self.embeds[index.clamp(min=0)] * present[:, None]
        return embeds, present


@dataclass
class VisitCollator:
    """Pads tokenised visits and adds what `MedBindForClinicalPrediction.forward` reads: `modality_embeds
    [B, M, d]` and `modality_mask [B, M]` looked up from the visits' `cxr_study_id` / `ecg_study_id` (none in
    text-only mode), and `labels [B]`. Padding is on the right: the model appends the modality tokens after each
    visit's text. `embeddings` follow the model's `config.modalities` order.
    """

    tokenizer: PreTrainedTokenizerBase
    embeddings: Mapping[str, StudyEmbeddings] = field(default_factory=dict)

    def __call__(self, visits: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        text = [{key: visit[key] for key in TEXT_COLUMNS if key in visit} for visit in visits]
        batch = dict(self.tokenizer.pad(text, padding=True, padding_side="right", return_tensors="pt"))
        batch["labels"] = torch.tensor([visit["labels"] for visit in visits], dtype=torch.long)
        if self.embeddings:
            looked_up = [table.lookup([v[f"{m}_study_id"] for v in visits]) for m, table in self.embeddings.items()]
            batch["modality_embeds"] = torch.stack([embeds for embeds, _ in looked_up], dim=1)
            batch["modality_mask"] = torch.stack([present for _, present in looked_up], dim=1).long()
        return batch


def embedding_sources(mode: str, model_args: ModelArguments) -> dict[str, str]:
    """`{modality: MedBind model}` whose embeddings the visits' tokens carry: both from `--medbind_model` (medbind),
    from `--zoo_cxr_model` and `--zoo_ecg_model` (encoder-zoo), none (text-only).
    """
    if mode == "text-only":
        return {}
    if mode == "medbind":
        if not model_args.medbind_model:
            raise ValueError("--mode medbind needs --medbind_model (a pretrained MedBind folder or Hub id)")
        return dict.fromkeys(MODALITIES, model_args.medbind_model)
    if not (model_args.zoo_cxr_model and model_args.zoo_ecg_model):
        raise ValueError("--mode encoder-zoo needs --zoo_cxr_model and --zoo_ecg_model (two separately trained models)")
    return {"cxr": model_args.zoo_cxr_model, "ecg": model_args.zoo_ecg_model}


def check_demo_inputs(data_args: DataArguments, sources: Mapping[str, str]) -> None:
    """The demo reads what the demo pretrainings write; say what to run when it is not there."""
    for model in dict.fromkeys(sources.values()):
        if not Path(model, "config.json").is_file():
            raise FileNotFoundError(
                f"no demo MedBind model in {model}: run the demo pretraining first: {DEMO_PRETRAINING} "
                f"--variant VARIANT --output_dir {model} (the demo preset reads bd, nm and ecg-clip)"
            )
    outcomes = Path(outcomes_paths(data_args)["outcomes"])
    if not outcomes.is_dir():
        raise FileNotFoundError(
            f"no demo outcomes in {outcomes}: run the demo pretraining ({DEMO_PRETRAINING}): it builds the demo data"
        )


def outcomes_paths(data_args: DataArguments) -> dict[str, str | None]:
    """`{"outcomes", "cxr", "ecg"}`: each DatasetDict's folder (explicit argument, else under `--dataset_dir`)."""
    return dataset_paths(
        data_args.dataset_dir, outcomes=data_args.outcomes_dataset, cxr=data_args.cxr_dataset, ecg=data_args.ecg_dataset
    )


def load_data(data_args: DataArguments, modalities: Sequence[str]) -> dict[str, datasets.DatasetDict]:
    """The outcomes DatasetDict and, for each modality whose embeddings are used, the DatasetDict of its studies."""
    paths = outcomes_paths(data_args)
    data = {}
    for name in ("outcomes", *modalities):
        if not paths[name] or not os.path.isdir(paths[name]):
            raise FileNotFoundError(
                f"no {name} DatasetDict at {paths[name]!r}: give --dataset_dir with {name}/, or --{name}_dataset"
            )
        data[name] = datasets.load_from_disk(paths[name])
    needed = {f"{data_args.task}_text", data_args.task, *(f"{m}_study_id" for m in MODALITIES)}
    needed |= {f"{m}_text" for m in MODALITIES} if data_args.mode == "text-only" else set()
    for split, outcomes in data["outcomes"].items():
        if missing := needed - set(outcomes.column_names):
            raise ValueError(
                f"outcomes[{split!r}] lacks columns {sorted(missing)}: rebuild it with "
                "medbind_processing.mimic_outcomes"
            )
    return data


def visits_with_text(outcomes: datasets.DatasetDict, task: str) -> datasets.DatasetDict:
    """The visits that have the task's text (`readmission_text` is None where MIMIC-IV-Note has no discharge
    summary).
    """
    column = f"{task}_text"
    kept = outcomes.filter(lambda text: text is not None and text.strip() != "", input_columns=column)
    for split in outcomes:
        dropped = len(outcomes[split]) - len(kept[split])
        if len(kept[split]) == 0:
            raise ValueError(f"no {split} visit has a {column}: for readmission, build the outcomes with --note_dir")
        if dropped:
            logger.warning("%s: %d of %d visits have no %s: left out", split, dropped, len(outcomes[split]), column)
    return kept


def study_embeddings(
    embedder: TaskEmbedder, studies: datasets.DatasetDict, modality: str, wanted: set[int], name: str
) -> StudyEmbeddings:
    """Embed the studies of `studies` (every split) whose `study_id` is in `wanted`; wanted ids the datasets lack are
    logged and left absent. `name` is how the progress bar names the model.
    """
    every_split = datasets.concatenate_datasets(list(studies.values()))
    study_ids = every_split["study_id"]
    rows = [row for row, study in enumerate(study_ids) if study in wanted]
    if missing := len(wanted) - len(rows):
        logger.warning("%d %s studies of the visits are not in the %s dataset: left out", missing, modality, modality)
    embeds = embedder.embed(every_split.select(rows), modality, name)
    return StudyEmbeddings({study_ids[row]: position for position, row in enumerate(rows)}, embeds)


def embedding_cache(data_args: DataArguments, training_args: TrainingArguments) -> str | None:
    """The on-disk embedding cache: `--embedding_cache_dir`, by default `OUTPUT_DIR/_embedding_cache` (`_*` stays
    out of a Hub upload); None for `none`."""
    if data_args.embedding_cache_dir is None:
        return os.path.join(training_args.output_dir, "_embedding_cache")
    return optional_argument(data_args.embedding_cache_dir)


def mode_embedders(
    sources: Mapping[str, str], batch_size: int, device: torch.device, cache_dir: str | None
) -> dict[str, TaskEmbedder]:
    """`{modality: Embedder}` of the mode's MedBind models (`embedding_sources`), each model loaded once."""
    loaded = {}
    for source in dict.fromkeys(sources.values()):
        model, processor = load_model(source)
        loaded[source] = Embedder(model.to(device), processor, batch_size, cache_dir=cache_dir)
    return {modality: loaded[source] for modality, source in sources.items()}


def baseline_embedders(encoder: BaselineEncoder, cache_dir: str | None) -> dict[str, TaskEmbedder]:
    """`{modality: embedder}` of a `--baseline`: the evaluation's embedder of that model (`task_embedder`) for each of
    CXR and ECG it embeds, in `MODALITIES` order (a CXR-text CLIP gives a CXR token only).
    """
    embedder = task_embedder(encoder, cache_dir)
    return {modality: embedder for modality in MODALITIES if modality in embedder.modalities}


def compute_embeddings(
    embedders: Mapping[str, TaskEmbedder],
    sources: Mapping[str, str],
    data: Mapping[str, datasets.DatasetDict],
    training_args: TrainingArguments,
) -> dict[str, StudyEmbeddings]:
    """`{modality: StudyEmbeddings}` of every study the visits (all splits) name, each modality from its embedder
    (`mode_embedders`, `baseline_embedders`; `sources` names their models for the progress bars). The main process
    computes first; the others read its cache.
    """
    embeddings = {}
    with training_args.main_process_first(desc="embedding the visits' studies"):
        for modality, embedder in embedders.items():
            wanted = {study for split in data["outcomes"].values() for study in split[f"{modality}_study_id"]}
            wanted.discard(None)
            name = Path(sources[modality]).name
            embeddings[modality] = study_embeddings(embedder, data[modality], modality, wanted, name)
    return embeddings


def tokenize_visits(
    batch: Mapping[str, list], tokenizer: PreTrainedTokenizerBase, task: str, mode: str, max_length: int
) -> dict[str, list]:
    """`datasets.map(batched=True)` function: the task's text as the first segment; in text-only mode the reports of the
    visit's CXR and ECG (those it has, joined by the separator token) as the second. Pairs are cut longest first, so
    a long discharge summary gives way before the reports.
    """
    texts = batch[f"{task}_text"]
    if mode == "text-only":
        separator = f" {tokenizer.sep_token} "
        reports = [
            separator.join(report for report in (cxr, ecg) if report) or None
            for cxr, ecg in zip(batch["cxr_text"], batch["ecg_text"])
        ]
    else:
        reports = [None] * len(texts)
    encoded = [
        tokenizer(text, report, truncation="longest_first" if report else True, max_length=max_length)
        for text, report in zip(texts, reports)
    ]
    tokenized = {key: [visit[key] for visit in encoded] for key in encoded[0]}
    return {**tokenized, "labels": batch[task]}


def tokenize_splits(
    outcomes: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    task: str,
    mode: str,
    modalities: Sequence[str],
    max_length: int,
) -> datasets.DatasetDict:
    """`tokenize_visits` over every split, keeping only the model's inputs and the study ids the collator reads."""
    kept = {f"{modality}_study_id" for modality in modalities}
    return outcomes.map(
        tokenize_visits,
        batched=True,
        fn_kwargs={"tokenizer": tokenizer, "task": task, "mode": mode, "max_length": max_length},
        remove_columns=[column for column in outcomes["train"].column_names if column not in kept],
        desc="tokenizing the visits",
    )
