"""The arguments of pretraining (`training/pretrain.py`): the model, the data and the Trainer's, with the paper's
recipe as defaults (150 epochs, batch 128, AdamW with weight decay 0.1, lr 4e-4 with cosine annealing, BioBERT and
ImageNet Swin-T backbones). The presets in `presets/pretrain/` set some of them (`medbind_training.arguments`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from transformers import TrainingArguments

from modeling_medbind import BIOBERT_IDENTIFIER, PAPER_CXR_MODEL_NAME
from modeling_medbind.configuration_medbind import MAX_WORDS, VARIANTS


@dataclass
class ModelArguments:
    config_preset: str = field(
        default="paper",
        metadata={"help": "MedBindConfig.from_preset: 'paper' (Swin-T, BERT-base, one ECG token per time step) or 'tiny'"},
    )
    variant: str = field(default="bd", metadata={"help": f"one of {', '.join(VARIANTS)}: TMCL + EMCL, TMCL only, ECG-CLIP"})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "continue from a saved MedBind folder instead of building from a preset"}
    )
    text_backbone: str | None = field(
        default=BIOBERT_IDENTIFIER, metadata={"help": "pretrained BERT for the text tower; 'none': random"}
    )
    cxr_backbone: str | None = field(
        default=PAPER_CXR_MODEL_NAME, metadata={"help": "timm model with ImageNet weights; 'none': random"}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "tokenizer id or folder (default: the text backbone's; demo: trained)"}
    )
    ecg_patch_size: int | None = field(default=None, metadata={"help": "time steps per ECG token (paper: 1)"})
    config_overrides: str | None = field(
        default=None, metadata={"help": 'JSON merged into the preset, e.g. \'{"ecg_config": {"num_hidden_layers": 6}}\''}
    )


@dataclass
class DataArguments:
    dataset_dir: str | None = field(default=None, metadata={"help": "folder with cxr/, ecg/ and pairs/ DatasetDicts"})
    cxr_dataset: str | None = field(default=None, metadata={"help": "CXR DatasetDict folder (overrides dataset_dir)"})
    ecg_dataset: str | None = field(default=None, metadata={"help": "ECG DatasetDict folder (overrides dataset_dir)"})
    pair_dataset: str | None = field(default=None, metadata={"help": "visit-pair DatasetDict folder"})
    synthetic_demo: bool = field(
        default=False, metadata={"help": "the synthetic demo: its data built in dataset_dir when absent, its prompts"}
    )
    max_words: int = field(default=MAX_WORDS, metadata={"help": f"reports are cut to their first N words (paper: {MAX_WORDS})"})
    max_length: int = field(default=256, metadata={"help": "token limit after the word cut"})
    pair_fraction: float = field(default=1.0, metadata={"help": "share of visit pairs dealt as pairs each epoch"})
    augment: bool = field(default=True, metadata={"help": "MedCLIP CXR augmentation and ECG Gaussian noise"})
    ecg_noise_std: float = field(default=0.05, metadata={"help": "std of the ECG noise, in ecg_values units"})
    ecg_normalization: str = field(
        default="per_lead_zscore", metadata={"help": "ECG feature extractor normalization (see its docstring)"}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "truncate each training split (debug)"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "truncate each validation split"})
    demo_num_patients: int = field(default=1000, metadata={"help": "patients in a demo dataset built by this run"})
    streaming: bool = field(
        default=False,
        metadata={"help": "stream the training split (needs --max_steps); --*_dataset may then name Hub datasets"},
    )
    streaming_buffer_size: int = field(
        default=1000, metadata={"help": "shuffle buffer per stream (visit pairs do not depend on it)"}
    )
    streaming_num_shards: int = field(
        default=64, metadata={"help": "shards a local split is streamed in (at least dataloader_num_workers)"}
    )


def default_dataloader_workers(max_workers: int = 8) -> int:
    """Loader processes for one training process: the cores this process may run on (its affinity mask), shared
    between the training processes of this machine (`LOCAL_WORLD_SIZE`, set by `accelerate launch` / torchrun),
    minus one for the training process itself; between 0 and `max_workers`.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(0, min(max_workers, cores // local_processes - 1))


@dataclass
class PretrainingArguments(TrainingArguments):
    """`TrainingArguments` with the paper's recipe as defaults."""

    output_dir: str | None = field(default="outputs/medbind", metadata={"help": "where checkpoints and the model go"})
    num_train_epochs: float = field(default=150.0, metadata={"help": "paper: 150"})
    per_device_train_batch_size: int = field(default=128, metadata={"help": "paper: 128 (n per modality)"})
    per_device_eval_batch_size: int = field(default=128, metadata={"help": "batch size when embedding for eval"})
    learning_rate: float = field(default=4e-4, metadata={"help": "paper: 4e-4"})
    weight_decay: float = field(default=0.1, metadata={"help": "paper: AdamW weight decay 0.1"})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "paper: cosine annealing"})
    weight_decay_exemptions: bool = field(
        default=True,
        metadata={"help": "no weight decay on biases and LayerNorm weights (Trainer default; paper preset: false)"},
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "retrieval evaluation on the validation split"})
    save_strategy: str = field(default="epoch", metadata={"help": "checkpoint interval"})
    save_total_limit: int | None = field(default=3, metadata={"help": "checkpoints kept (the best is always kept)"})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "export the best checkpoint by validation recall_sum"})
    metric_for_best_model: str | None = field(
        default="recall_sum", metadata={"help": "sum of every validation recall@K (not the paper's RSUM)"}
    )
    greater_is_better: bool | None = field(default=True, metadata={"help": "recall_sum: higher is better"})
    remove_unused_columns: bool = field(default=False, metadata={"help": "slots are not column-filtered"})
    hub_strategy: str = field(default="end", metadata={"help": "push the finished folder once, at the end"})
    logging_steps: float = field(default=10, metadata={"help": "log every N steps"})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "a checkpoint folder, or 'auto' for the newest complete one in output_dir"}
    )
    dataloader_num_workers: int = field(
        default_factory=default_dataloader_workers,
        metadata={"help": "loader processes per training process (default: its share of the cores, minus one, <= 8)"},
    )
    contrastive_chunk_size: int | None = field(
        default=None,
        metadata={"help": "embed each batch this many samples per modality at a time (gradient caching, exact)"},
    )
    logging_nan_inf_filter: bool = field(
        default=False, metadata={"help": "skip NaN/inf losses in the logged mean (True costs a host sync per step)"}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "every MedBind parameter takes part in every step; True costs a graph walk per step"},
    )
