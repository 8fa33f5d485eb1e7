"""Pretraining MEDBind_BD, MEDBind_NM or ECG-CLIP (paper Section 3) (`training/pretrain.py`; from an installed wheel,
`python -m medbind_training.pretraining`), in the order of a run: the data (in memory or streamed), the model,
`MedBindTrainer`, and the export (the test-split evaluation and the model card of the Hub-ready folder).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import transformers
from transformers import PreTrainedTokenizerBase, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from medbind_model_cards.medbind_pretrained import render_model_card
from modeling_medbind import MedBindConfig, MedBindModel, MedBindProcessor, load_text_tokenizer
from modeling_medbind.configuration_medbind import MODALITIES, TRAINED_VOCAB_SIZE

from .arguments import optional_argument, parse_arguments
from .augmentation import ECGNoiseAugmentation, cxr_augmentation
from .data import MedBindPretrainingCollator, PretrainingDataset
from .evaluation import EvaluationArguments, run_evaluation
from .pretraining_arguments import DataArguments, ModelArguments, PretrainingArguments
from .prompt_files import DEMO_PROMPTS
from .splits import dataset_paths, load_dataset_dicts, retrieval_split
from .streaming import StreamingPretrainingDataset
from .tokenizer import train_wordpiece_tokenizer
from .trainer import MedBindTrainer

logger = logging.getLogger(__name__)

STREAMED_TOKENIZER_REPORTS = 100_000  # reports a streamed run trains its WordPiece vocabulary on
TRAINED_TOKENIZER_DIR = "_trained-tokenizer"  # "_*" keeps it out of the Hub upload: the processor carries it
DEMO_FEW_SHOT_SETS = 50  # the demo's few-shot probes: fewer support sets than the paper's 300, to keep the demo short


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
        from medbind_processing.demo import DEMO_DATASETS, save_demo

        with training_args.main_process_first(desc="building the synthetic demo dataset"):
            if not all(os.path.isdir(os.path.join(data_args.dataset_dir, name)) for name in DEMO_DATASETS):
                logger.info("building the SYNTHETIC demo dataset in %s", data_args.dataset_dir)
                save_demo(Path(data_args.dataset_dir), data_args.demo_num_patients, seed=training_args.seed)
    set_seed(training_args.seed)

    config = build_config(model_args)
    data = load_dataset_dicts(pretraining_paths(data_args), data_args.streaming)
    # The towers the model has (a variant's, or a saved model's) decide which data it trains and validates on; the
    # validation split chooses the best checkpoint (`MedBindTrainer.evaluate`).
    validation = retrieval_split(data, "validation", data_args.max_eval_samples, config.modalities)
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
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint == "auto":  # the newest complete checkpoint in output_dir, or none for a fresh run
        checkpoint = get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
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


# ---- data --------------------------------------------------------------------------------------------------------


def pretraining_paths(data_args: DataArguments) -> dict[str, str | None]:
    """`{"cxr", "ecg", "pairs"}`: each dataset's folder (or, with --streaming, Hub id), None where not given."""
    return dataset_paths(
        data_args.dataset_dir, cxr=data_args.cxr_dataset, ecg=data_args.ecg_dataset, pairs=data_args.pair_dataset
    )


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
        paths = pretraining_paths(data_args)

        def open_stream(name: str) -> datasets.IterableDataset | None:
            """Local DatasetDicts through `to_iterable_dataset`, the others from the Hub."""
            local = data[name] and data[name].get("train")
            if local is not None:
                # The pair table is small and read whole by the dataset; only the samples are streamed.
                return local if name == "pairs" else local.to_iterable_dataset(data_args.streaming_num_shards)
            return datasets.load_dataset(paths[name], split="train", streaming=True) if paths[name] else None

        cxr, ecg = (open_stream(modality) if modality in modalities else None for modality in MODALITIES)
        pairs = open_stream("pairs") if cxr is not None and ecg is not None else None
        seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
        streamed = StreamingPretrainingDataset(cxr, ecg, pairs, seed=seed, buffer_size=data_args.streaming_buffer_size)
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


# ---- model -------------------------------------------------------------------------------------------------------


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
    model's config with `build_tokenizer`'s tokenizer."""
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


# ---- export ------------------------------------------------------------------------------------------------------


def export(
    trainer: MedBindTrainer,
    processor: MedBindProcessor,
    data_args: DataArguments,
    training_args: TrainingArguments,
    train_metrics: dict[str, float],
) -> dict[str, Any]:
    """The test-split evaluation (`results.json`, its figures; `{}` without a local dataset folder, e.g. streamed Hub
    datasets) and the model card that reports it, beside the saved model. Validation served to choose the checkpoint.
    """
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = trainer.accelerator.unwrap_model(trainer.model)
    synthetic = data_args.synthetic_demo
    local = [f"{name}={path}" for name, path in pretraining_paths(data_args).items() if path and os.path.isdir(path)]
    results: dict[str, Any] = {}
    if local:
        evaluation_args = EvaluationArguments(
            model_name_or_path=training_args.hub_model_id or str(output_dir),
            output_dir=str(output_dir),
            eval_dataset=local,
            few_shot_sets=DEMO_FEW_SHOT_SETS if synthetic else EvaluationArguments.few_shot_sets,
            # the demo's reports have their own wording; the paper's prompts name things no demo report says
            prompt_dir=str(DEMO_PROMPTS) if synthetic else None,
            batch_size=training_args.per_device_eval_batch_size,
            device=str(training_args.device),
            embedding_cache_dir="none",  # a one-off evaluation: no cache files in the folder pushed to the Hub
            seed=training_args.seed,
        )
        results = run_evaluation(evaluation_args, model, processor)
    else:
        logger.warning("no local dataset folder to evaluate on: results.json and the card's results are left out")
    data_source = data_args.dataset_dir or data_args.cxr_dataset or data_args.ecg_dataset
    description = (
        f"Trained on the SYNTHETIC demo set ({data_args.demo_num_patients} made-up patients) from `medbind_processing.demo`."
        if synthetic
        else f"Trained on the datasets in `{data_source}` (built with MedBind's `processing/` scripts)."
    )
    settings = {
        "epochs": training_args.num_train_epochs,
        "steps": trainer.state.global_step,
        "batch per device (n per modality)": training_args.per_device_train_batch_size,
        "processes": training_args.world_size,
        "optimizer": f"AdamW, lr {training_args.learning_rate}, weight decay {training_args.weight_decay} "
        + ("(biases and LayerNorm weights exempt: the Trainer's default)" if getattr(training_args,
           "weight_decay_exemptions", True) else "(every parameter)"),  # fmt: skip
        "gradient clipping": (
            f"norm {training_args.max_grad_norm} (the Trainer's default; not in the paper)"
            if training_args.max_grad_norm and training_args.max_grad_norm > 0
            else "none"
        ),
        "schedule": getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type),
        "CXR preprocessing": model.config.cxr_config.preprocessing if model.config.has_cxr else "no CXR tower",
        "seed": training_args.seed,
        "train samples/s": round(train_metrics.get("train_samples_per_second", float("nan")), 2),
    }
    card = render_model_card(
        model.config,
        {key: value for key, value in results.items() if isinstance(value, float | int) or key.startswith("protocol/")},
        settings,
        repo_id=training_args.hub_model_id or str(output_dir),
        training_description=description,
        synthetic=synthetic,
        max_words=data_args.max_words,
        evaluation_split="test",
    )
    card.save(output_dir / "README.md")
    return results


if __name__ == "__main__":
    main()
