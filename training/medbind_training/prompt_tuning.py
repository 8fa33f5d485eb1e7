"""Multimodal prompt tuning (MEDBind, "Multimodal prompt tuning", paper Table 4): a LoRA-adapted BERT predicts 30-day
readmission or in-hospital mortality from a visit's clinical text followed by the frozen MedBind embeddings of the
visit's chest X-ray and ECG, one input token each (usage: `training/prompt_tune.py`).

Modes (the paper's three rows per task):
- `medbind`: CXR and ECG embeddings of `--medbind_model` (a folder or Hub id of a pretrained MedBind).
- `text-only`: no embeddings; the reports of the visit's CXR and ECG (`cxr_text`, `ecg_text`) are appended to the
  text as its second segment instead.
- `encoder-zoo`: the CXR embedding of `--zoo_cxr_model` and the ECG embedding of `--zoo_ecg_model`, two separately
  trained models (a CXR-text model and ECG-CLIP in the paper).

Each `--baseline NAME=PATH` adds a row (`tune_baseline`). `DATA` holds `outcomes/` (`medbind_processing.mimic_outcomes`,
or the demo's), and `cxr/` and `ecg/`, whose `study_id`s the outcomes' `cxr_study_id` / `ecg_study_id` name. Writes
the model (LoRA adapter, projections, head), its tokenizer, `results.json` (accuracy, the paper's metric, balanced
accuracy and AUROC on the test split, each with its chance level) and a model card to `--output_dir`.

LoRA's rank, alpha and targets, the epochs and the learning rate are not given by the paper; the defaults are the
LoRA paper's for BERT-size encoders and a common LoRA fine-tuning recipe.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import transformers
from huggingface_hub import ModelCard
from transformers import PreTrainedTokenizerBase, TrainingArguments, set_seed

from medbind_model_cards.medbind_clinical_prediction import render_model_card
from modeling_medbind import (
    MedBindClinicalPredictionConfig, MedBindConfig, MedBindForClinicalPrediction, load_text_tokenizer
)
from modeling_medbind.configuration_medbind import MODALITIES, TRAINED_VOCAB_SIZE

from . import metrics
from .arguments import optional_argument, parse_arguments
from .baselines import BaselineEncoder, load_baseline, parse_baselines
from .prompt_tuning_arguments import DataArguments, ModelArguments, PromptTuningArguments
from .prompt_tuning_data import (
    StudyEmbeddings,
    VisitCollator,
    baseline_embedders,
    check_demo_inputs,
    compute_embeddings,
    embedding_cache,
    embedding_sources,
    load_data,
    mode_embedders,
    tokenize_splits,
    visits_with_text,
)
from .results_keys import BASELINE_PREFIX, model_key, prompt_tuning_prefix, prompt_tuning_rows
from .tokenizer import train_wordpiece_tokenizer
from .trainer import TokenFreeTrainer

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
BASELINES_DIR = "_baselines"  # OUTPUT_DIR/_baselines/NAME: each --baseline's model (`_*`: never uploaded)


def main(argv: Sequence[str] | None = None) -> dict[str, float | str]:
    """`training/prompt_tune.py`: parse the arguments and prompt-tune; returns the test results."""
    return prompt_tune(*parse_prompt_tuning_arguments(argv))


def parse_prompt_tuning_arguments(
    argv: Sequence[str] | None = None,
) -> tuple[ModelArguments, DataArguments, PromptTuningArguments]:
    """A preset (`--preset`, default `paper`) and the command line (default `sys.argv[1:]`), which wins."""
    return parse_arguments((ModelArguments, DataArguments, PromptTuningArguments), "prompt_tune", argv, "paper")


class ClinicalPredictionTrainer(TokenFreeTrainer):
    """The Trainer, with the model card of `render_model_card` in place of its generic one (set `model_card`), and
    without the Hub token in the `training_args.bin` it saves and uploads (`TokenFreeTrainer`).
    """

    model_card: ModelCard | None = None

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        if self.model_card is not None and self.is_world_process_zero():
            self.model_card.save(os.path.join(self.args.output_dir, "README.md"))


def load_tokenizer(model_args: ModelArguments, outcomes: datasets.DatasetDict, task: str) -> PreTrainedTokenizerBase:
    """The backbone's tokenizer (or `--tokenizer_name`); for a random BERT, a WordPiece vocabulary trained on the
    training split's texts (the task's text and both reports, whatever the mode, so every mode reads the same tokens).
    """
    name = optional_argument(model_args.tokenizer_name) or optional_argument(model_args.text_backbone)
    if name:
        return load_text_tokenizer(name)
    train = outcomes["train"]
    columns = [column for column in (f"{task}_text", "cxr_text", "ecg_text") if column in train.column_names]
    return train_wordpiece_tokenizer((text for column in columns for text in train[column]), vocab_size=TRAINED_VOCAB_SIZE)


def build_model(
    model_args: ModelArguments,
    tokenizer: PreTrainedTokenizerBase,
    sources: Mapping[str, str],
    embedding_dim: int,
    labels: datasets.ClassLabel,
) -> MedBindForClinicalPrediction:
    """BioBERT (or `--text_backbone`) with LoRA, one projection per modality of `sources`, a head for `labels`; with
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


def outcome_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy (the paper's metric), balanced accuracy and AUROC of the positive class (`logits` `[n, 2]`) in percent,
    each with its chance level: the majority class's share, 100 / classes, and 50. AUROC is left out (with a warning)
    when the labels hold one class only.
    """
    # The arithmetic of the metric modules, called directly: `load_metric` would load each module's script again
    # at every evaluation of the run.
    predictions = logits.argmax(axis=-1)
    results = {}
    for name, metric, chance in (
        ("accuracy", metrics.accuracy, metrics.chance_accuracy),
        ("balanced_accuracy", metrics.balanced_accuracy, metrics.chance_balanced_accuracy),
    ):
        results[name] = float(metric(predictions, labels))
        results[f"{name}/chance"] = chance(labels)
    if len(np.unique(labels)) < 2:
        logger.warning("one class only among %d visits: no AUROC", len(labels))
        return results
    probabilities = torch.from_numpy(logits).float().softmax(dim=-1)[:, 1].numpy()
    results["auroc"] = metrics.macro_auroc(probabilities, labels)
    results["auroc/chance"] = metrics.CHANCE_AUROC
    return results


def export(
    trainer: ClinicalPredictionTrainer,
    data_args: DataArguments,
    training_args: TrainingArguments,
    results: Mapping[str, float | str],
    test_metrics: Mapping[str, float],
) -> None:
    """results.json and the model card (README.md, written when the model is saved or pushed) in `output_dir`; the card
    lists every row of `results` (the mode's, each baseline's) when there is more than one.
    """
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
        test_metrics,
        data_args.task,
        data_args.mode,
        training_args.hub_model_id or str(output_dir),
        synthetic=data_args.synthetic_demo,
        training_settings=settings,
        comparison=prompt_tuning_rows(results, data_args.mode),
    )


@dataclass
class TunedModel:
    """One row of the paper's Table 4: a prompt-tuned model, its Trainer (and so its data) and its test metrics."""

    trainer: ClinicalPredictionTrainer
    test_metrics: dict[str, float]


def tune_and_test(
    embeddings: Mapping[str, StudyEmbeddings],
    sources: Mapping[str, str],
    mode: str,
    tokenizer: PreTrainedTokenizerBase,
    outcomes: datasets.DatasetDict,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: PromptTuningArguments,
) -> TunedModel:
    """Build a model whose tokens carry `embeddings` (from `sources`, in their order), train it on the training visits
    and test it: the same recipe for the mode's model and for each baseline's.
    """
    # Every row's model starts from the seed, so that a baseline that is the mode's own model gives the mode's row.
    set_seed(training_args.seed)
    embedding_dims = {table.embeds.shape[1] for table in embeddings.values()}
    if len(embedding_dims) > 1:
        raise ValueError(f"the encoder zoo's models embed into different sizes {embedding_dims}")
    labels = outcomes["train"].features[data_args.task]
    embedding_dim = embedding_dims.pop() if embedding_dims else MedBindClinicalPredictionConfig.embedding_dim
    model = build_model(model_args, tokenizer, sources, embedding_dim, labels)
    positions = model.config.text_config.max_position_embeddings
    max_length = min(data_args.max_length or positions, positions) - len(sources)
    with training_args.main_process_first(desc="tokenizing the visits"):
        visits = tokenize_splits(outcomes, tokenizer, data_args.task, mode, list(sources), max_length)

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
    return TunedModel(trainer, outcome_metrics(prediction.predictions, prediction.label_ids))


def tune_baseline(
    encoder: BaselineEncoder,
    path: str,
    data: Mapping[str, datasets.DatasetDict],
    tokenizer: PreTrainedTokenizerBase,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: PromptTuningArguments,
) -> TunedModel:
    """A `--baseline`'s row: its CXR and / or ECG embeddings (those it has) as the tokens, in place of MedBind's, and
    otherwise the run's recipe from the same seed (a MedBind folder gives the row `--mode medbind` would). The model
    is saved to `OUTPUT_DIR/_baselines/NAME` (`_*` stays out of the Hub upload, which is the mode's model's).
    """
    cache = embedding_cache(data_args, training_args)
    embedders = baseline_embedders(encoder, cache)
    if not embedders:
        raise ValueError(f"--baseline {encoder.name}: {path} embeds neither CXR nor ECG, so it gives no token")
    sources = dict.fromkeys(embedders, path)
    embeddings = compute_embeddings(embedders, sources, data, training_args)
    output_dir = os.path.join(training_args.output_dir, BASELINES_DIR, encoder.name)
    # Its own folder and no upload, with what the run's arguments say otherwise (a `replace` re-validates them).
    baseline_args = replace(training_args, output_dir=output_dir, push_to_hub=False, hub_model_id=None)
    # Its visits read as in mode medbind: the text, then the embedding tokens (no report texts).
    outcomes = data["outcomes"]
    tuned = tune_and_test(embeddings, sources, "medbind", tokenizer, outcomes, model_args, data_args, baseline_args)
    tuned.trainer.save_model()
    return tuned


def prompt_tune(
    model_args: ModelArguments, data_args: DataArguments, training_args: PromptTuningArguments
) -> dict[str, float | str]:
    """Run prompt tuning, in the mode's model and in one model per `--baseline`; returns the test results (percent, flat
    keys: `prompt_tuning/{task}/{mode}/...`, `baselines/{NAME}/prompt_tuning/{task}/...`), also in results.json.
    """
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    datasets.utils.logging.set_verbosity(training_args.get_process_log_level())
    if training_args.load_best_model_at_end or training_args.resume_from_checkpoint:
        # The Trainer restores a checkpoint's model.safetensors only, which holds no LoRA weights (they are in
        # text_adapter/): it would silently go on with the wrong adapter.
        raise ValueError("--load_best_model_at_end and --resume_from_checkpoint are not supported by prompt tuning")
    sources = embedding_sources(data_args.mode, model_args)
    if data_args.synthetic_demo:
        check_demo_inputs(data_args, sources)
    baselines = parse_baselines(model_args.baseline)
    encoders = {
        name: load_baseline(name, path, data_args.embedding_batch_size, training_args.device)
        for name, path in baselines.items()
    }
    embedded = set(sources).union(*(encoder.modalities for encoder in encoders.values()))
    data = load_data(data_args, [modality for modality in MODALITIES if modality in embedded])
    data["outcomes"] = outcomes = visits_with_text(data["outcomes"], data_args.task)
    cache = embedding_cache(data_args, training_args)
    embedders = mode_embedders(sources, data_args.embedding_batch_size, training_args.device, cache)
    embeddings = compute_embeddings(embedders, sources, data, training_args)
    tokenizer = load_tokenizer(model_args, outcomes, data_args.task)
    task, mode = data_args.task, data_args.mode
    tuned = tune_and_test(embeddings, sources, mode, tokenizer, outcomes, model_args, data_args, training_args)
    results = prefixed(prompt_tuning_prefix(task, mode), tuned.test_metrics)
    for name, encoder in encoders.items():
        row = tune_baseline(encoder, str(baselines[name]), data, tokenizer, model_args, data_args, training_args)
        results |= prefixed(model_key(f"{BASELINE_PREFIX}{name}/", prompt_tuning_prefix(task)), row.test_metrics)
    results |= {"split": "test", "model": training_args.hub_model_id or training_args.output_dir}
    trainer = tuned.trainer
    if trainer.is_world_process_zero():
        export(trainer, data_args, training_args, results, tuned.test_metrics)
        print(json.dumps(results, indent=2, sort_keys=True))
    # Model (adapter, projections, head, code), tokenizer and card; with --push_to_hub the Trainer saves them itself
    # and uploads the folder (but its `_*` embedding cache, baselines and checkpoints) in one commit.
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message=f"MedBind prompt tuning: {data_args.task}, {data_args.mode}")
    else:
        trainer.save_model()
        trainer.create_model_card()
    return results


def prefixed(prefix: str, metrics: Mapping[str, float]) -> dict[str, float]:
    """`{prefix/metric: value}`."""
    return {f"{prefix}/{key}": value for key, value in metrics.items()}


if __name__ == "__main__":
    main()
