"""The arguments of multimodal prompt tuning (`training/prompt_tune.py`): the models, the data and the Trainer's. LoRA's
defaults are `MedBindClinicalPredictionConfig`'s; the presets in `presets/prompt_tune/` set some of them
(`medbind_training.arguments`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from modeling_medbind import BIOBERT_IDENTIFIER, MedBindClinicalPredictionConfig

from .baselines import parse_baselines
from .results_keys import BASELINE_PREFIX

TASKS = ("mortality", "readmission")
MODES = ("medbind", "text-only", "encoder-zoo")
LORA = MedBindClinicalPredictionConfig  # LoRA's defaults, read from the model's config class


@dataclass
class ModelArguments:
    medbind_model: str | None = field(
        default=None, metadata={"help": "mode medbind: a pretrained MedBind folder or Hub id (frozen)"}
    )
    zoo_cxr_model: str | None = field(
        default=None, metadata={"help": "mode encoder-zoo: the model whose CXR embeddings are used (a CXR-text model)"}
    )
    zoo_ecg_model: str | None = field(
        default=None, metadata={"help": "mode encoder-zoo: the model whose ECG embeddings are used (ECG-CLIP)"}
    )
    baseline: list[str] = field(
        default_factory=list,
        metadata={
            "action": "extend",  # argparse's default keeps only the last of repeated `--baseline`s
            "help": "NAME=PATH, repeatable: a CLIP, SigLIP, open_clip or MedBind folder whose CXR / ECG embeddings "
            "(those it has) become the tokens of a model of its own, trained and tested beside the mode's; its "
            f"results under {BASELINE_PREFIX}NAME/",
        },
    )
    text_backbone: str | None = field(
        default=BIOBERT_IDENTIFIER,
        metadata={"help": "the BERT that LoRA adapts; 'none': a random BERT of MedBind's tiny preset (demo, tests)"},
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "default: the backbone's; without a backbone, WordPiece trained on the training texts"},
    )
    lora_rank: int = field(default=LORA.lora_rank, metadata={"help": "LoRA rank r"})
    lora_alpha: float = field(
        default=LORA.lora_alpha, metadata={"help": "LoRA scale numerator (update scaled by alpha / r)"}
    )
    lora_dropout: float = field(default=LORA.lora_dropout, metadata={"help": "dropout on the LoRA branch"})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(LORA.lora_target_modules), metadata={"help": "BERT linear layers LoRA adapts"}
    )

    def __post_init__(self) -> None:
        parse_baselines(self.baseline)  # a malformed or missing baseline fails before any training


@dataclass
class DataArguments:
    task: str = field(metadata={"help": f"one of {', '.join(TASKS)}"})
    mode: str = field(default="medbind", metadata={"help": f"one of {', '.join(MODES)}"})
    synthetic_demo: bool = field(
        default=False,
        metadata={"help": "the synthetic demo: what to run is said when its models or data are missing; the card says so"},
    )
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
        default=None, metadata={"help": "default (the presets): outputs/prompt-tuning[-demo]/TASK-MODE"}
    )
    num_train_epochs: float = field(default=3.0, metadata={"help": "passes over the training visits"})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "visits per step and device"})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "visits per evaluation step"})
    learning_rate: float = field(default=5e-4, metadata={"help": "AdamW learning rate of LoRA, projections, head"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_steps: float = field(default=0.1, metadata={"help": "linear warm-up, as a fraction of the steps"})
    eval_strategy: str = field(default="epoch", metadata={"help": "validation metrics during training"})
    save_strategy: str = field(default="no", metadata={"help": "the final model is saved (a checkpoint holds no LoRA weights)"})
    remove_unused_columns: bool = field(default=False, metadata={"help": "the collator reads the study ids"})
