"""Pretraining's model: its config (a preset, the variant and overrides, or a saved model's), its tokenizer (the
text backbone's, or a WordPiece vocabulary trained on the reports for a random text tower), the model and its processor.
"""

from __future__ import annotations

import json
import os
from typing import Any

from transformers import PreTrainedTokenizerBase, TrainingArguments

from modeling_medbind import MedBindConfig, MedBindModel, MedBindProcessor, load_text_tokenizer
from modeling_medbind.configuration_medbind import TRAINED_VOCAB_SIZE

from .tokenizer import train_wordpiece_tokenizer
from .arguments import optional_argument
from .pretraining_arguments import DataArguments, ModelArguments

TRAINED_TOKENIZER_DIR = "_trained-tokenizer"  # "_*" keeps it out of the Hub upload: the processor carries it


def build_config(model_args: ModelArguments) -> MedBindConfig:
    """The preset with the variant, the ECG patch size and the JSON overrides applied (or a saved model's config)."""
    if model_args.model_name_or_path:
        return MedBindConfig.from_pretrained(model_args.model_name_or_path)
    overrides: dict[str, Any] = json.loads(model_args.config_overrides) if model_args.config_overrides else {}
    if model_args.ecg_patch_size:
        overrides.setdefault("ecg_config", {})["patch_size"] = model_args.ecg_patch_size
    return MedBindConfig.from_preset(model_args.config_preset, variant=model_args.variant, **overrides)


def build_tokenizer(
    model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments, reports: list[str]
) -> PreTrainedTokenizerBase:
    """The tokenizer named by `--tokenizer_name`, else the text backbone's, else for a random text tower one trained
    on the reports."""
    tokenizer_name = optional_argument(model_args.tokenizer_name) or optional_argument(model_args.text_backbone)
    if not tokenizer_name:
        # No pretrained text tower and no tokenizer named: learn a WordPiece vocabulary from the training reports.
        # One process trains and saves it; every process, and a resumed run, loads that copy, so the ids a
        # checkpoint was trained with never depend on retraining it (which is deterministic, but costs time).
        tokenizer_name = os.path.join(training_args.output_dir, TRAINED_TOKENIZER_DIR)
        with training_args.main_process_first(desc="training the WordPiece tokenizer"):
            if training_args.should_save and not os.path.isdir(tokenizer_name):
                staging = f"{tokenizer_name}.tmp"
                tokenizer = train_wordpiece_tokenizer(
                    reports, vocab_size=TRAINED_VOCAB_SIZE, model_max_length=data_args.max_length
                )
                tokenizer.save_pretrained(staging)
                os.replace(staging, tokenizer_name)
    return load_text_tokenizer(tokenizer_name)


def build_model_and_processor(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    config: MedBindConfig,
    reports: list[str],
) -> tuple[MedBindModel, MedBindProcessor]:
    """The model (`build_model`) and its processor: a saved model's own, or `MedBindProcessor.from_config` of the
    model's config (image size, mean / std of the CXR tower it really has, ECG samples, rate and leads) with
    `build_tokenizer`'s tokenizer.
    """
    if model_args.model_name_or_path and not optional_argument(model_args.tokenizer_name):
        processor = MedBindProcessor.from_pretrained(model_args.model_name_or_path)
        return build_model(model_args, config, vocab_size=len(processor.tokenizer)), processor
    tokenizer = build_tokenizer(model_args, data_args, training_args, reports)
    model = build_model(model_args, config, vocab_size=len(tokenizer))
    processor = MedBindProcessor.from_config(
        model.config,
        tokenizer,
        feature_extractor_kwargs={"normalization": data_args.ecg_normalization},
        max_words=data_args.max_words,
        max_length=data_args.max_length,
    )
    return model, processor


def build_model(model_args: ModelArguments, config: MedBindConfig, vocab_size: int) -> MedBindModel:
    """A MedBind model from a saved folder, or from `config` with the pretrained backbones asked for."""
    if model_args.model_name_or_path:
        return MedBindModel.from_pretrained(model_args.model_name_or_path)
    text_backbone = optional_argument(model_args.text_backbone)
    cxr_backbone = optional_argument(model_args.cxr_backbone)
    if text_backbone or cxr_backbone:
        return MedBindModel.from_backbones(config=config, text=text_backbone, cxr=cxr_backbone)
    config.text_config.vocab_size = vocab_size
    return MedBindModel(config)
