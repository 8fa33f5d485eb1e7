"""Pretraining MEDBind_BD, MEDBind_NM or ECG-CLIP (paper Section 3): data, model, `MedBindTrainer`, then the test
evaluation and the model card of the exported Hub-ready folder (`training/pretrain.py`; from an installed wheel,
`python -m medbind_training.pretraining`).

`DATA` holds `cxr/`, `ecg/` and `pairs/` DatasetDicts (`medbind_processing.demo`, or `medbind_processing.mimic_cxr`,
`medbind_processing.mimic_ecg` and `medbind_processing.mimic_pair`; each may also be given alone with `--cxr_dataset`
etc.). The arguments and their paper defaults: `medbind_training.pretraining_arguments`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import datasets
import transformers
from transformers import TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from .arguments import parse_arguments
from .augmentation import ECGNoiseAugmentation, cxr_augmentation
from .data import MedBindPretrainingCollator
from .pretraining_arguments import DataArguments, ModelArguments, PretrainingArguments
from .pretraining_data import build_demo_data_if_absent, load_splits, training_set, validation_split
from .pretraining_export import export
from .pretraining_model import build_config, build_model_and_processor
from .trainer import MedBindTrainer

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """`training/pretrain.py`: parse the arguments and pretrain; returns what results.json holds."""
    return pretrain(*parse_pretraining_arguments(argv))


def parse_pretraining_arguments(
    argv: Sequence[str] | None = None,
) -> tuple[ModelArguments, DataArguments, PretrainingArguments]:
    """A preset (`--preset`, default `paper`) and the command line (default `sys.argv[1:]`), which wins."""
    return parse_arguments((ModelArguments, DataArguments, PretrainingArguments), "pretrain", argv, "paper")


def pretrain(
    model_args: ModelArguments, data_args: DataArguments, training_args: PretrainingArguments
) -> dict[str, Any]:
    """Run pretraining (the best checkpoint chosen on validation), then evaluate the exported model on the test split
    (`medbind_training.evaluation`); returns what results.json holds (percent, flat keys), `{}` on other processes.
    """
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    datasets.utils.logging.set_verbosity(training_args.get_process_log_level())
    if training_args.dataloader_num_workers > 0 and os.environ.get("TOKENIZERS_PARALLELISM") != "false":
        # The fast tokenizer's thread pool does not survive fork: with TOKENIZERS_PARALLELISM=true, loader workers
        # forked after the main process has tokenized (training the WordPiece vocabulary, evaluation) deadlock in
        # their first batch. Unset, the library only warns and turns it off; "false" is that, said in advance.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    logger.info(describe_contrastive_batch(training_args))
    if data_args.synthetic_demo:
        build_demo_data_if_absent(data_args, training_args)
    set_seed(training_args.seed)

    config = build_config(model_args)
    data = load_splits(data_args)
    # The towers the model has (a variant's, or a saved model's) decide which data it trains and validates on.
    validation = validation_split(data_args, data, config.modalities)
    train_dataset, reports = training_set(data_args, training_args, data, config.modalities)
    model, processor = build_model_and_processor(model_args, data_args, training_args, config, reports)

    augment = data_args.augment
    train_collator = MedBindPretrainingCollator(
        processor,
        cxr_augmentation(model.config.cxr_config, processor.image_processor) if augment else None,
        ECGNoiseAugmentation(data_args.ecg_noise_std) if augment else None,
        seed=training_args.seed,
    )
    trainer = MedBindTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=train_collator,
        eval_dataset=validation,
        processing_class=processor,
        contrastive_chunk_size=training_args.contrastive_chunk_size,
    )
    checkpoint = resolve_checkpoint(training_args)
    if checkpoint:
        logger.warning("resuming from %s", checkpoint)
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_state()  # trainer_state.json: the whole log history, beside the model
    results = {}
    if trainer.is_world_process_zero():
        results = export(trainer, processor, data_args, training_args, train_result.metrics)
    # Weights (safetensors), config with auto_map, code files and processor; with --push_to_hub the Trainer saves
    # them itself and uploads the whole folder, card and results included, in one commit.
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="MedBind pretraining")
    else:
        trainer.save_model()
    return results


def resolve_checkpoint(training_args: TrainingArguments) -> str | None:
    """`--resume_from_checkpoint auto`: the newest complete checkpoint in output_dir, or None for a fresh run."""
    if training_args.resume_from_checkpoint != "auto":
        return training_args.resume_from_checkpoint
    return get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None


def describe_contrastive_batch(training_args: TrainingArguments) -> str:
    """The start-up line saying what the contrastive loss sees: n per modality = per-device batch x processes (the
    losses gather every process's embeddings), which is what the paper's "batch 128" means, per micro-batch.
    """
    per_device, processes = training_args.per_device_train_batch_size, training_args.world_size
    line = (
        f"contrastive batch: {per_device * processes} CXR-report and ECG-report samples per step "
        f"({per_device} per process x {processes} processes; the paper trains with 128)"
    )
    if training_args.gradient_accumulation_steps > 1:
        line += (
            f"; the optimizer steps every {training_args.gradient_accumulation_steps} such batches, whose "
            "negatives stay within each batch"
        )
    chunk_size = training_args.contrastive_chunk_size
    if chunk_size and chunk_size < per_device:
        line += f"; embedded {chunk_size} samples per modality at a time (gradient caching, exact)"
    return line


if __name__ == "__main__":
    main()
