"""Multimodal prompt tuning (MEDBind, "Multimodal prompt tuning", paper Table 4): a LoRA-adapted BERT predicts 30-day
readmission or in-hospital mortality from a visit's clinical text followed by the frozen MedBind embeddings of the
visit's chest X-ray and ECG, one input token each.

    python training/prompt_tune.py --preset demo --task mortality --mode medbind      # synthetic demo, CPU, minutes
    accelerate launch training/prompt_tune.py --dataset_dir DATA --medbind_model MODEL --task readmission \\
        --mode medbind --output_dir OUT [--bf16]

Modes (the paper's three rows per task):
- `medbind`: CXR and ECG embeddings of `--medbind_model` (a folder or Hub id of a pretrained MedBind).
- `text-only`: no embeddings; the reports of the visit's CXR and ECG (`cxr_text`, `ecg_text`) are appended to the
  text as its second segment instead.
- `encoder-zoo`: the CXR embedding of `--zoo_cxr_model` and the ECG embedding of `--zoo_ecg_model`, two separately
  trained models (a CXR-text model and ECG-CLIP in the paper).

`DATA` holds `outcomes/` (`medbind.processing.mimic_outcomes`, or the demo's), and `cxr/` and `ecg/`, whose
`study_id`s the outcomes' `cxr_study_id` / `ecg_study_id` name (`--outcomes_dataset`, `--cxr_dataset`, `--ecg_dataset`
give them one by one). The embeddings of the attached studies are computed once per model and cached on disk
(`medbind.training.evaluation.Embedder`). Writes the model (LoRA adapter, projections, head: see
`modeling_medbind.modeling_clinical_prediction`), its tokenizer, `results.json` (accuracy, the paper's metric,
balanced accuracy and AUROC on the test split, each with its chance level) and a model card to `--output_dir`;
`--push_to_hub` uploads that folder.

LoRA's rank, alpha and targets, the epochs and the learning rate are not given by the paper; the defaults are the
LoRA paper's for BERT-size encoders and a common LoRA fine-tuning recipe.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import transformers
from huggingface_hub import ModelCard, ModelCardData
from transformers import (
    HfArgumentParser,
    PreTrainedTokenizerBase,
    TrainingArguments,
    set_seed,
)

# Run as a script (`accelerate launch training/prompt_tune.py`), Python puts this folder first on sys.path, where
# training/evaluate.py would shadow the `evaluate` library; the package is imported as installed, `medbind.training`.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

from medbind.training import optional_argument  # noqa: E402
from medbind.training.evaluate import load_model  # noqa: E402
from medbind.training.evaluation import Embedder  # noqa: E402
from medbind.training.pretrain import demo_output_dir  # noqa: E402
from medbind.training.trainer import TokenFreeTrainer  # noqa: E402
from medbind_training.tokenizer import train_wordpiece_tokenizer  # noqa: E402
from medbind.training.metrics import (  # noqa: E402
    CHANCE_AUROC,
    accuracy,
    balanced_accuracy,
    chance_accuracy,
    chance_balanced_accuracy,
    macro_auroc,
)

from modeling_medbind import (  # noqa: E402
    BIOBERT_IDENTIFIER,
    MedBindClinicalPredictionConfig,
    MedBindConfig,
    MedBindForClinicalPrediction,
    load_text_tokenizer,
)

logger = logging.getLogger(__name__)

TASKS = ("mortality", "readmission")
MODES = ("medbind", "text-only", "encoder-zoo")
MODALITIES = ("cxr", "ecg")
RESULTS_FILE = "results.json"
CARD_TEMPLATE = files("medbind.model_cards") / "medbind_clinical_prediction.md"
TEXT_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")
# The models `--preset demo` reads, and the demo pretraining that writes each. The paper's encoder zoo is a CXR-text
# model trained without ECGs beside ECG-CLIP; the demo's takes its CXR embeddings from MEDBind_NM (TMCL only: its
# CXR tower never meets an ECG) and its ECG embeddings from ECG-CLIP.
_PRETRAIN_DEMO = "accelerate launch training/pretrain.py --preset demo"
DEMO_PRETRAININGS = {
    demo_output_dir(variant): f"{_PRETRAIN_DEMO} --variant {variant}" if variant != "bd" else _PRETRAIN_DEMO
    for variant in ("bd", "nm", "ecg-clip")
}
DEMO_MEDBIND_MODEL, DEMO_NM_MODEL, DEMO_ECG_CLIP_MODEL = DEMO_PRETRAININGS
# `--preset demo`: these come first on the command line, so anything the user passes overrides them.
DEMO_ARGUMENTS = [
    "--dataset_dir", "outputs/demo-data",
    "--medbind_model", DEMO_MEDBIND_MODEL,
    "--zoo_cxr_model", DEMO_NM_MODEL,
    "--zoo_ecg_model", DEMO_ECG_CLIP_MODEL,
    "--text_backbone", "none",
    "--num_train_epochs", "10",
    "--per_device_train_batch_size", "32",
    "--learning_rate", "1e-3",
    "--logging_steps", "10",
    "--use_cpu", "true",
]  # fmt: skip
TASK_DESCRIPTIONS = {"mortality": "in-hospital mortality", "readmission": "30-day readmission"}
TEXT_DESCRIPTIONS = {
    "mortality": "demographics and admission (no discharge text, which would leak the outcome)",
    "readmission": "discharge summary",
}


@dataclass
class ModelArguments:
    preset: str = field(
        default="paper",
        metadata={
            "help": "'paper' (BioBERT + LoRA) or 'demo': the synthetic demo data and the demo MedBind of "
            "`accelerate launch training/pretrain.py --preset demo`, a random tiny BERT, CPU"
        },
    )
    medbind_model: str | None = field(
        default=None, metadata={"help": "mode medbind: a pretrained MedBind folder or Hub id (frozen)"}
    )
    zoo_cxr_model: str | None = field(
        default=None, metadata={"help": "mode encoder-zoo: the model whose CXR embeddings are used (a CXR-text model)"}
    )
    zoo_ecg_model: str | None = field(
        default=None, metadata={"help": "mode encoder-zoo: the model whose ECG embeddings are used (ECG-CLIP)"}
    )
    text_backbone: str | None = field(
        default=BIOBERT_IDENTIFIER,
        metadata={"help": "the BERT that LoRA adapts; 'none': a random BERT of MedBind's tiny preset (demo, tests)"},
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "default: the backbone's; without a backbone, WordPiece trained on the training texts"},
    )
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank r"})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA scale numerator (update scaled by alpha / r)"})
    lora_dropout: float = field(default=0.1, metadata={"help": "dropout on the LoRA branch"})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["query", "value"], metadata={"help": "BERT linear layers LoRA adapts"}
    )


@dataclass
class DataArguments:
    task: str = field(metadata={"help": f"one of {', '.join(TASKS)}"})
    mode: str = field(default="medbind", metadata={"help": f"one of {', '.join(MODES)}"})
    dataset_dir: str | None = field(default=None, metadata={"help": "folder with outcomes/, cxr/ and ecg/"})
    outcomes_dataset: str | None = field(default=None, metadata={"help": "outcomes DatasetDict folder"})
    cxr_dataset: str | None = field(default=None, metadata={"help": "CXR DatasetDict folder (study lookup)"})
    ecg_dataset: str | None = field(default=None, metadata={"help": "ECG DatasetDict folder (study lookup)"})
    max_length: int | None = field(
        default=None,
        metadata={"help": "tokens per visit, modality tokens included (default: the BERT's max_position_embeddings)"},
    )
    embedding_batch_size: int = field(default=64, metadata={"help": "studies per MedBind forward pass"})
    embedding_cache_dir: str | None = field(
        default=None, metadata={"help": "default: OUTPUT_DIR/_embedding_cache (kept out of the Hub upload); 'none'"}
    )

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"--task must be one of {TASKS}, got {self.task!r}")
        if self.mode not in MODES:
            raise ValueError(f"--mode must be one of {MODES}, got {self.mode!r}")


@dataclass
class PromptTuningArguments(TrainingArguments):
    """`TrainingArguments` with defaults for LoRA fine-tuning of a BERT classifier."""

    output_dir: str | None = field(
        default=None, metadata={"help": "default: outputs/prompt-tuning[-demo]/TASK-MODE"}
    )
    num_train_epochs: float = field(default=3.0, metadata={"help": "passes over the training visits"})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "visits per step and device"})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "visits per evaluation step"})
    learning_rate: float = field(default=5e-4, metadata={"help": "AdamW learning rate of LoRA, projections, head"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_steps: float = field(default=0.1, metadata={"help": "linear warm-up, as a fraction of the steps"})
    eval_strategy: str = field(default="epoch", metadata={"help": "validation metrics during training"})
    save_strategy: str = field(default="no", metadata={"help": "the final model is saved; see the module docstring"})
    remove_unused_columns: bool = field(default=False, metadata={"help": "the collator reads the study ids"})


@dataclass
class StudyEmbeddings:
    """
    Embeddings of one modality's studies, looked up by study id.

    Args:
        rows: `{study_id: row of embeds}`.
        embeds: `[num_studies, embedding_dim]` L2-normalised MedBind embeddings.
    """

    rows: dict[int, int]
    embeds: torch.Tensor

    def lookup(self, study_ids: Sequence[int | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            study_ids: one study id per visit; None (no study attached) or an id without embedding is absent.

        Returns:
            `(embeds [B, embedding_dim], present [B] bool)`; absent rows hold zeros.
        """
        rows = [self.rows.get(study_id, -1) if study_id is not None else -1 for study_id in study_ids]
        index = torch.tensor(rows, dtype=torch.long)
        present = index >= 0
        embeds = self.embeds[index.clamp(min=0)] * present[:, None]
        return embeds, present


@dataclass
class VisitCollator:
    """
    Pads tokenised visits and adds what `MedBindForClinicalPrediction.forward` reads: `modality_embeds
    [B, M, d]` and `modality_mask [B, M]` looked up from the visits' `cxr_study_id` / `ecg_study_id` (none in
    text-only mode), and `labels [B]`.

    Args:
        tokenizer: pads `input_ids`, `attention_mask`, `token_type_ids` (right padding: the model appends the
            modality tokens after each visit's text).
        embeddings: `{modality: StudyEmbeddings}` in the model's `config.modalities` order; empty for text only.
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


class ClinicalPredictionTrainer(TokenFreeTrainer):
    """
    The Trainer, with the model card of `render_model_card` in place of its generic one (set `model_card`), and
    without the Hub token in the `training_args.bin` it saves and uploads (`TokenFreeTrainer`).
    """

    model_card: ModelCard | None = None

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        if self.model_card is not None and self.is_world_process_zero():
            self.model_card.save(os.path.join(self.args.output_dir, "README.md"))



def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, PromptTuningArguments]:
    """
    Parse the command line (or one YAML / JSON file) into the three argument dataclasses: `--preset demo` puts
    `DEMO_ARGUMENTS` first, and without `--output_dir` the run writes to `outputs/prompt-tuning[-demo]/TASK-MODE`.
    """
    parser = HfArgumentParser((ModelArguments, DataArguments, PromptTuningArguments))
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(os.path.abspath(argv[0]))
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(os.path.abspath(argv[0]))
    demo = "--preset=demo" in argv or ("--preset", "demo") in itertools.pairwise(argv)
    argv = (DEMO_ARGUMENTS if demo else []) + argv
    if not any(arg == "--output_dir" or arg.startswith("--output_dir=") for arg in argv):
        _, data_args, _ = HfArgumentParser((ModelArguments, DataArguments)).parse_args_into_dataclasses(
            args=argv, return_remaining_strings=True
        )
        default = f"outputs/prompt-tuning{'-demo' if demo else ''}/{data_args.task}-{data_args.mode}"
        argv = ["--output_dir", default] + argv
    return parser.parse_args_into_dataclasses(args=argv)


def embedding_sources(mode: str, model_args: ModelArguments) -> dict[str, str]:
    """
    `{modality: MedBind model}` whose embeddings the visits' tokens carry: both from `--medbind_model` (medbind), from
    `--zoo_cxr_model` and `--zoo_ecg_model` (encoder-zoo), none (text-only).

    Raises:
        ValueError: when the mode's models are not given.
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
    """
    `--preset demo` reads what the demo pretraining writes; say what to run when it is not there.

    Raises:
        FileNotFoundError: a missing demo model or demo outcomes table.
    """
    for model in dict.fromkeys(sources.values()):
        if not Path(model, "config.json").is_file():
            run = DEMO_PRETRAININGS.get(model, f"a demo pretraining with --output_dir {model}")
            raise FileNotFoundError(f"no demo MedBind model in {model}: run the demo pretraining first: {run}")
    outcomes = Path(dataset_paths(data_args)["outcomes"])
    if not outcomes.is_dir():
        raise FileNotFoundError(
            f"no demo outcomes in {outcomes}: the demo data predates the outcome table. Run the demo pretraining "
            f"again ({_PRETRAIN_DEMO}): it builds the demo data afresh when a part is missing"
        )


def dataset_paths(data_args: DataArguments) -> dict[str, str | None]:
    """`{"outcomes", "cxr", "ecg"}`: each DatasetDict's folder (explicit argument, else under `--dataset_dir`)."""
    return {
        name: getattr(data_args, f"{name}_dataset")
        or (data_args.dataset_dir and os.path.join(data_args.dataset_dir, name))
        for name in ("outcomes", *MODALITIES)
    }


def load_data(data_args: DataArguments, modalities: Sequence[str]) -> dict[str, datasets.DatasetDict]:
    """
    The outcomes DatasetDict and, for each modality whose embeddings are used, the DatasetDict of its studies.

    Raises:
        FileNotFoundError: a needed folder that is not a saved DatasetDict.
        ValueError: outcomes without the task's columns (or, for text-only, without `cxr_text` / `ecg_text`).
    """
    paths = dataset_paths(data_args)
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
                "medbind.processing.mimic_outcomes"
            )
    return data


def visits_with_text(outcomes: datasets.DatasetDict, task: str) -> datasets.DatasetDict:
    """
    The visits that have the task's text (`readmission_text` is None where MIMIC-IV-Note has no discharge summary).

    Raises:
        ValueError: when a split keeps no visit.
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
    embedder: Embedder, studies: datasets.DatasetDict, modality: str, wanted: set[int], name: str
) -> StudyEmbeddings:
    """
    Embed the studies of `studies` (every split) whose `study_id` is in `wanted`.

    Args:
        embedder: the frozen MedBind model's `Embedder` (progress bar, on-disk cache).
        studies: the modality's DatasetDict (`study_id` plus `image`, or `ecg` / `ecg_path`).
        modality: `"cxr"` or `"ecg"`.
        wanted: the study ids the visits name.
        name: how the progress bar names the model.

    Returns:
        The `StudyEmbeddings`; wanted ids the datasets lack are logged and left absent.
    """
    every_split = datasets.concatenate_datasets(list(studies.values()))
    study_ids = every_split["study_id"]
    rows = [row for row, study in enumerate(study_ids) if study in wanted]
    if missing := len(wanted) - len(rows):
        logger.warning("%d %s studies of the visits are not in the %s dataset: left out", missing, modality, modality)
    embeds = embedder.embed(every_split.select(rows), modality, name)
    return StudyEmbeddings({study_ids[row]: position for position, row in enumerate(rows)}, embeds)


def compute_embeddings(
    sources: Mapping[str, str],
    data: Mapping[str, datasets.DatasetDict],
    data_args: DataArguments,
    training_args: TrainingArguments,
) -> dict[str, StudyEmbeddings]:
    """
    `{modality: StudyEmbeddings}` of every study the visits (all splits) name, each modality from its source model,
    computed once per model and cached on disk. The main process computes first; the others read its cache.
    """
    if data_args.embedding_cache_dir is None:
        cache = os.path.join(training_args.output_dir, "_embedding_cache")
    else:
        cache = optional_argument(data_args.embedding_cache_dir)
    embeddings = {}
    with training_args.main_process_first(desc="embedding the visits' studies with MedBind"):
        for source in dict.fromkeys(sources.values()):
            model, processor = load_model(source)
            model = model.to(training_args.device)
            embedder = Embedder(model, processor, data_args.embedding_batch_size, cache_dir=cache)
            for modality in (m for m, name in sources.items() if name == source):
                wanted = {study for split in data["outcomes"].values() for study in split[f"{modality}_study_id"]}
                wanted.discard(None)
                embeddings[modality] = study_embeddings(embedder, data[modality], modality, wanted, Path(source).name)
    return embeddings


def load_tokenizer(model_args: ModelArguments, outcomes: datasets.DatasetDict, task: str) -> PreTrainedTokenizerBase:
    """
    The backbone's tokenizer (or `--tokenizer_name`); for a random BERT, a WordPiece vocabulary trained on the
    training split's texts (the task's text and both reports, whatever the mode, so every mode reads the same tokens).
    """
    name = optional_argument(model_args.tokenizer_name) or optional_argument(model_args.text_backbone)
    if name:
        return load_text_tokenizer(name)
    train = outcomes["train"]
    columns = [column for column in (f"{task}_text", "cxr_text", "ecg_text") if column in train.column_names]
    return train_wordpiece_tokenizer((text for column in columns for text in train[column]), vocab_size=2048)


def build_model(
    model_args: ModelArguments,
    tokenizer: PreTrainedTokenizerBase,
    sources: Mapping[str, str],
    embedding_dim: int,
    labels: datasets.ClassLabel,
) -> MedBindForClinicalPrediction:
    """
    BioBERT (or `--text_backbone`) with LoRA, one projection per modality of `sources`, a head for `labels`; with
    `--text_backbone none`, a random BERT of MedBind's tiny preset sized to the tokenizer.
    """
    config = {
        "modalities": list(sources),
        "embedding_models": dict(sources),
        "embedding_dim": embedding_dim,
        "id2label": dict(enumerate(labels.names)),
        "label2id": {name: index for index, name in enumerate(labels.names)},
        "lora_rank": model_args.lora_rank,
        "lora_alpha": model_args.lora_alpha,
        "lora_dropout": model_args.lora_dropout,
        "lora_target_modules": model_args.lora_target_modules,
    }
    backbone = optional_argument(model_args.text_backbone)
    if backbone:
        return MedBindForClinicalPrediction.from_backbone(backbone, **config)
    text_config = MedBindConfig.from_preset("tiny").text_config.to_dict()
    text_config.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    return MedBindForClinicalPrediction(MedBindClinicalPredictionConfig(text_config=text_config, **config))


def tokenize_visits(
    batch: Mapping[str, list], tokenizer: PreTrainedTokenizerBase, task: str, mode: str, max_length: int
) -> dict[str, list]:
    """
    `datasets.map(batched=True)` function: the task's text as the first segment; in text-only mode the reports of the
    visit's CXR and ECG (those it has, joined by the separator token) as the second. Pairs are cut longest first, so
    a long discharge summary gives way before the reports.

    Returns:
        `input_ids`, `attention_mask`, `token_type_ids` and `labels` per visit.
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


def outcome_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """
    Accuracy (the paper's metric), balanced accuracy and AUROC of the positive class in percent, each with its chance
    level: the majority class's share, 100 / classes, and 50. AUROC is left out (with a warning) when the labels
    hold one class only.

    Args:
        logits: `[n, 2]` the model's logits.
        labels: `[n]` 0 / 1.

    Returns:
        `{"accuracy": ..., "accuracy/chance": ..., "balanced_accuracy": ..., ..., "auroc": ..., "auroc/chance": 50.0}`.
    """
    # The arithmetic of the metric modules, called directly: `load_metric` would load each module's script again
    # at every evaluation of the run.
    predictions = logits.argmax(axis=-1)
    results = {}
    for name, metric, chance in (
        ("accuracy", accuracy, chance_accuracy),
        ("balanced_accuracy", balanced_accuracy, chance_balanced_accuracy),
    ):
        results[name] = float(metric(predictions, labels))
        results[f"{name}/chance"] = chance(labels)
    if len(np.unique(labels)) < 2:
        logger.warning("one class only among %d visits: no AUROC", len(labels))
        return results
    probabilities = torch.from_numpy(logits).float().softmax(dim=-1)[:, 1].numpy()
    results["auroc"] = macro_auroc(probabilities, labels)
    results["auroc/chance"] = CHANCE_AUROC
    return results


def render_model_card(
    model: MedBindForClinicalPrediction,
    results: Mapping[str, float],
    task: str,
    mode: str,
    repo_id: str,
    synthetic: bool,
    training_settings: Mapping[str, Any],
) -> ModelCard:
    """
    The model card (README.md) of a prompt-tuned model, from `model_cards/medbind_clinical_prediction.md`.

    Args:
        model: the trained model (its config names the base BERT and the embedding models).
        results: `outcome_metrics` on the test split.
        task, mode: as the command line.
        repo_id: the Hub id (or folder) shown in the usage snippet.
        synthetic: trained on the synthetic demo (a warning, a `synthetic` tag and the demo's licence) rather than on
            MIMIC-IV, whose derived weights may be shared only under PhysioNet's credentialed terms.
        training_settings: what the training table lists.
    """
    config = model.config
    base = config.base_model_name_or_path
    # The Hub's model tree links Hub ids only; a local folder (or a random BERT) is named in the text alone.
    hub_base = base if base and not os.path.isdir(base) else None
    license_fields = (
        {"license": "apache-2.0"}
        if synthetic
        else {"license": "other", "license_name": "physionet-credentialed-health-data-license-1.5.0"}
    )
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="text-classification",
        base_model=hub_base,
        tags=["medbind", "medical", "clinical-prediction", task, "lora", "peft", "custom_code"]
        + ["synthetic"] * synthetic,
        **license_fields,
    )
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    return ModelCard.from_template(
        card_data,
        template_path=str(CARD_TEMPLATE),
        model_name=repo_id.rstrip("/").split("/")[-1],
        repo_id=repo_id,
        task_description=TASK_DESCRIPTIONS[task],
        text_description=TEXT_DESCRIPTIONS[task],
        mode=mode,
        synthetic=synthetic,
        base_model=base or f"a randomly initialised BERT ({config.text_config.num_hidden_layers} layers, "
        f"d={config.text_config.hidden_size})",
        base_model_name_or_path=base,
        lora=f"rank {config.lora_rank}, alpha {config.lora_alpha:g}, dropout {config.lora_dropout:g}, on "
        f"{', '.join(config.lora_target_modules)}",
        embedding_models=config.embedding_models,
        embedding_dim=config.embedding_dim,
        labels=[config.id2label[index] for index in range(config.num_labels)],
        trainable_parameters=f"{trainable:,} of {model.num_parameters():,}",
        results=results,
        training_settings=dict(training_settings),
    )


def tokenize_splits(
    outcomes: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    data_args: DataArguments,
    modalities: Sequence[str],
    max_length: int,
) -> datasets.DatasetDict:
    """`tokenize_visits` over every split, keeping only the model's inputs and the study ids the collator reads."""
    kept = {f"{modality}_study_id" for modality in modalities}
    return outcomes.map(
        tokenize_visits,
        batched=True,
        fn_kwargs={"tokenizer": tokenizer, "task": data_args.task, "mode": data_args.mode, "max_length": max_length},
        remove_columns=[column for column in outcomes["train"].column_names if column not in kept],
        desc="tokenizing the visits",
    )


def export(
    trainer: ClinicalPredictionTrainer,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    results: Mapping[str, float | str],
    metrics: Mapping[str, float],
) -> None:
    """results.json and the model card (README.md, written when the model is saved or pushed) in `output_dir`."""
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    settings = {
        "epochs": training_args.num_train_epochs,
        "steps": trainer.state.global_step,
        "batch per device": training_args.per_device_train_batch_size,
        "processes": training_args.world_size,
        "optimizer": f"AdamW, lr {training_args.learning_rate}, weight decay {training_args.weight_decay}",
        "training visits": len(trainer.train_dataset),
        "seed": training_args.seed,
    }
    trainer.model_card = render_model_card(
        trainer.accelerator.unwrap_model(trainer.model),
        metrics,
        data_args.task,
        data_args.mode,
        training_args.hub_model_id or str(output_dir),
        synthetic=model_args.preset == "demo",
        training_settings=settings,
    )


def main(argv: list[str] | None = None) -> dict[str, float | str]:
    """Run prompt tuning; returns the test results (percent, flat keys) also written to results.json."""
    model_args, data_args, training_args = parse_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    datasets.utils.logging.set_verbosity(training_args.get_process_log_level())
    if training_args.load_best_model_at_end or training_args.resume_from_checkpoint:
        # The Trainer restores a checkpoint's model.safetensors only, which holds no LoRA weights (they are in
        # text_adapter/): it would silently go on with the wrong adapter.
        raise ValueError("--load_best_model_at_end and --resume_from_checkpoint are not supported by prompt tuning")
    sources = embedding_sources(data_args.mode, model_args)
    if model_args.preset == "demo":
        check_demo_inputs(data_args, sources)
    set_seed(training_args.seed)

    data = load_data(data_args, list(sources))
    data["outcomes"] = outcomes = visits_with_text(data["outcomes"], data_args.task)
    embeddings = compute_embeddings(sources, data, data_args, training_args)
    embedding_dims = {table.embeds.shape[1] for table in embeddings.values()}
    if len(embedding_dims) > 1:
        raise ValueError(f"the encoder zoo's models embed into different sizes {embedding_dims}")
    tokenizer = load_tokenizer(model_args, outcomes, data_args.task)
    labels = outcomes["train"].features[data_args.task]
    model = build_model(model_args, tokenizer, sources, embedding_dims.pop() if embedding_dims else 256, labels)
    positions = model.config.text_config.max_position_embeddings
    max_length = min(data_args.max_length or positions, positions) - len(sources)
    with training_args.main_process_first(desc="tokenizing the visits"):
        visits = tokenize_splits(outcomes, tokenizer, data_args, list(sources), max_length)

    trainer = ClinicalPredictionTrainer(
        model=model,
        args=training_args,
        train_dataset=visits["train"],
        eval_dataset=visits.get("validation"),
        data_collator=VisitCollator(tokenizer, embeddings),
        processing_class=tokenizer,
        compute_metrics=lambda prediction: outcome_metrics(prediction.predictions, prediction.label_ids),
    )
    train_result = trainer.train()
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_state()
    prediction = trainer.predict(visits["test"], metric_key_prefix="test")
    metrics = outcome_metrics(prediction.predictions, prediction.label_ids)
    prefix = f"prompt_tuning/{data_args.task}/{data_args.mode}"
    results = {f"{prefix}/{key}": value for key, value in metrics.items()}
    results |= {"split": "test", "model": training_args.hub_model_id or training_args.output_dir}
    if trainer.is_world_process_zero():
        export(trainer, model_args, data_args, training_args, results, metrics)
        print(json.dumps(results, indent=2, sort_keys=True))
    # Model (adapter, projections, head, code), tokenizer and card; with --push_to_hub the Trainer saves them itself
    # and uploads the folder (but its `_*` embedding cache and checkpoints) in one commit.
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message=f"MedBind prompt tuning: {data_args.task}, {data_args.mode}")
    else:
        trainer.save_model()
        trainer.create_model_card()
    return results


if __name__ == "__main__":
    main()
