"""Pretrain MEDBind_BD, MEDBind_NM or ECG-CLIP and leave a Hub-ready model folder.

    accelerate launch training/pretrain.py --preset demo                 # synthetic data, tiny model, CPU, minutes
    accelerate launch training/pretrain.py --dataset_dir DATA --output_dir OUT [--variant nm] [--bf16]
    python training/pretrain.py config.yaml                              # the same arguments from a YAML/JSON file

`DATA` holds `cxr/`, `ecg/` and `pairs/` DatasetDicts (`medbind.processing.demo`, or `medbind.processing.mimic_cxr`,
`medbind.processing.mimic_ecg` and `medbind.processing.mimic_pair`; each may also be given alone with `--cxr_dataset` etc.).
Defaults follow the paper: 150 epochs, batch 128, AdamW (weight decay 0.1), lr 4e-4 with cosine annealing,
tau 0.07, 256-d embeddings, BioBERT and ImageNet Swin-T backbones.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import transformers
from transformers import HfArgumentParser, PreTrainedTokenizerBase, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

# Run as a script (`accelerate launch training/pretrain.py`), Python puts this folder first on sys.path, where
# training/evaluate.py would shadow the `evaluate` library; the package is imported as installed, `medbind.training`.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

from modeling_medbind import (  # noqa: E402
    BIOBERT_IDENTIFIER,
    PAPER_CXR_MODEL_NAME,
    MedBindConfig,
    MedBindModel,
    MedBindProcessor,
    load_text_tokenizer,
)
from medbind.training import optional_argument  # noqa: E402
from medbind_training.tokenizer import train_wordpiece_tokenizer  # noqa: E402
from medbind.training.augmentation import CXRAugmentation, ECGNoiseAugmentation  # noqa: E402
from medbind.training.data import MedBindPretrainingCollator, PretrainingDataset  # noqa: E402
from medbind.training.evaluate import EvaluationArguments, run_evaluation  # noqa: E402
from medbind.training.evaluation import PROMPTS, retrieval_split  # noqa: E402
from medbind.training.model_card import render_model_card  # noqa: E402
from medbind.training.streaming import StreamingPretrainingDataset  # noqa: E402
from medbind.training.trainer import MedBindTrainer  # noqa: E402

logger = logging.getLogger(__name__)

# `--preset demo`: these come first on the command line, so anything the user passes overrides them.
DEMO_ARGUMENTS = [
    "--dataset_dir", "outputs/demo-data",
    "--demo_num_patients", "2000",
    "--text_backbone", "none",
    "--cxr_backbone", "none",
    # The synthetic ECGs are in mV and heart size shows as QRS voltage, which per-lead z-scoring would erase.
    "--ecg_normalization", "none",
    # Towers trained from scratch for ten epochs underfit: augmentation, a regulariser, only slowed them (with it
    # the CXR tower had not learned the reports by the last epoch; without, CXR->report R@5 is ~8x chance).
    "--augment", "false",
    "--num_train_epochs", "10",
    "--per_device_train_batch_size", "16",
    "--per_device_eval_batch_size", "64",
    "--learning_rate", "1e-3",
    "--warmup_steps", "0.05",
    "--logging_steps", "10",
    "--eval_strategy", "steps",
    "--eval_steps", "0.2",
    "--save_strategy", "steps",
    "--save_steps", "0.2",
    "--save_total_limit", "1",
    "--use_cpu", "true",
]  # fmt: skip
STREAMED_TOKENIZER_REPORTS = 100_000  # reports a streamed run trains its WordPiece vocabulary on
TRAINED_TOKENIZER_DIR = "_trained-tokenizer"  # "_*" keeps it out of the Hub upload: the processor carries it


@dataclass
class ModelArguments:
    preset: str = field(
        default="paper",
        metadata={
            "help": "'paper' (Swin-T, BERT-base, one ECG token per time step), 'tiny', or 'demo': the tiny model on "
            "the synthetic demo data (built if absent), CPU, no download"
        },
    )
    variant: str = field(default="bd", metadata={"help": "bd (TMCL + EMCL), nm (TMCL only) or ecg-clip"})
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
    max_words: int = field(default=100, metadata={"help": "reports are cut to their first N words (paper: 100)"})
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
        metadata={
            "help": "stream the training data (needs --max_steps): local folders through to_iterable_dataset; "
            "--cxr_dataset / --ecg_dataset / --pair_dataset may then name Hub datasets, of which only the "
            "validation split is downloaded"
        },
    )
    streaming_buffer_size: int = field(
        default=1000, metadata={"help": "shuffle buffer per stream (visit pairs do not depend on it)"}
    )
    streaming_num_shards: int = field(
        default=64, metadata={"help": "shards a local split is streamed in (at least dataloader_num_workers)"}
    )


def default_dataloader_workers(max_workers: int = 8) -> int:
    """
    Loader processes for one training process: the cores this process may run on (its affinity mask), shared
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
        metadata={
            "help": "loader processes per training process (default: this process's share of the cores, minus one "
            "for itself, at most 8)"
        },
    )
    contrastive_chunk_size: int | None = field(
        default=None,
        metadata={
            "help": "embed each batch this many samples per modality at a time (gradient caching): the negatives and "
            "gradients of the whole per_device_train_batch_size batch, the activation memory of one chunk, for one "
            "extra forward pass"
        },
    )
    logging_nan_inf_filter: bool = field(
        default=False, metadata={"help": "skip NaN/inf losses in the logged mean (True costs a host sync per step)"}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "every MedBind parameter takes part in every step; True costs a graph walk per step"},
    )


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, PretrainingArguments]:
    """Parse the command line, or one YAML / JSON file, into the three argument dataclasses."""
    parser = HfArgumentParser((ModelArguments, DataArguments, PretrainingArguments))
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(os.path.abspath(argv[0]))
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(os.path.abspath(argv[0]))
    demo = "--preset=demo" in argv or ("--preset", "demo") in itertools.pairwise(argv)
    if demo:
        argv = DEMO_ARGUMENTS + argv
        if not any(arg == "--output_dir" or arg.startswith("--output_dir=") for arg in argv):
            # One folder per variant, so that the BD, NM and ECG-CLIP demos do not overwrite each other.
            model_args = HfArgumentParser(ModelArguments).parse_args_into_dataclasses(
                args=argv, return_remaining_strings=True
            )[0]
            argv = ["--output_dir", demo_output_dir(model_args.variant)] + argv
    return parser.parse_args_into_dataclasses(args=argv)


def demo_output_dir(variant: str) -> str:
    """Where `--preset demo` writes without `--output_dir`: `outputs/medbind-demo`, or `...-nm`, `...-ecg-clip`."""
    return "outputs/medbind-demo" if variant == "bd" else f"outputs/medbind-demo-{variant}"


def load_splits(data_args: DataArguments) -> dict[str, datasets.DatasetDict | None]:
    """`{"cxr", "ecg", "pairs"}` DatasetDicts from disk, or from the Hub when streaming (None where absent)."""
    return {name: _load(path, data_args.streaming) for name, path in dataset_paths(data_args).items()}


def dataset_paths(data_args: DataArguments) -> dict[str, str | None]:
    """`{"cxr", "ecg", "pairs"}`: each dataset's folder (or, with --streaming, Hub id), None where not given."""
    return {
        name: getattr(data_args, f"{argument}_dataset")
        or (data_args.dataset_dir and os.path.join(data_args.dataset_dir, name))
        for name, argument in (("cxr", "cxr"), ("ecg", "ecg"), ("pairs", "pair"))
    }


def _load(path: str | None, streaming: bool) -> datasets.DatasetDict | None:
    if path and os.path.isdir(path):
        return datasets.load_from_disk(path)
    if path and streaming:  # a Hub dataset: its training split is streamed, its validation split downloaded
        return datasets.DatasetDict({"validation": datasets.load_dataset(path, split="validation")})
    return None


def streamed_train_set(
    data_args: DataArguments, data: dict[str, datasets.DatasetDict | None], with_cxr: bool, seed: int
) -> StreamingPretrainingDataset:
    """The training split as streams: local DatasetDicts through `to_iterable_dataset`, the others from the Hub."""
    paths = dataset_paths(data_args)

    def stream(name: str) -> datasets.IterableDataset | None:
        local = data[name] and data[name].get("train")
        if local is not None:
            # The pair table is small and read whole by the dataset; only the samples are streamed.
            return local if name == "pairs" else local.to_iterable_dataset(data_args.streaming_num_shards)
        return datasets.load_dataset(paths[name], split="train", streaming=True) if paths[name] else None

    cxr, ecg = stream("cxr") if with_cxr else None, stream("ecg")
    pairs = stream("pairs") if cxr is not None and ecg is not None else None
    return StreamingPretrainingDataset(cxr, ecg, pairs, seed=seed, buffer_size=data_args.streaming_buffer_size)


def build_demo_data_if_absent(data_args: DataArguments, training_args: TrainingArguments) -> None:
    """The demo preset's data: synthetic patients from `medbind.processing.demo`, written once by the main process."""
    from medbind.processing.demo import DEMO_DATASETS, save_demo

    with training_args.main_process_first(desc="building the synthetic demo dataset"):
        # A folder from an older MedBind may lack a dataset (the outcomes, which prompt tuning reads): build afresh.
        if not all(os.path.isdir(os.path.join(data_args.dataset_dir, name)) for name in DEMO_DATASETS):
            logger.info("building the SYNTHETIC demo dataset in %s", data_args.dataset_dir)
            save_demo(Path(data_args.dataset_dir), num_patients=data_args.demo_num_patients, seed=training_args.seed)


def build_config(model_args: ModelArguments) -> MedBindConfig:
    """The preset with the variant, the ECG patch size and the JSON overrides applied (or a saved model's config)."""
    if model_args.model_name_or_path:
        return MedBindConfig.from_pretrained(model_args.model_name_or_path)
    overrides: dict[str, Any] = json.loads(model_args.config_overrides) if model_args.config_overrides else {}
    if model_args.ecg_patch_size:
        overrides.setdefault("ecg_config", {})["patch_size"] = model_args.ecg_patch_size
    preset = "tiny" if model_args.preset == "demo" else model_args.preset
    return MedBindConfig.from_preset(preset, variant=model_args.variant, **overrides)


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
                tokenizer = train_wordpiece_tokenizer(reports, vocab_size=2048, model_max_length=data_args.max_length)
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
    """
    The model (`build_model`) and its processor: a saved model's own, or `MedBindProcessor.from_config` of the
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


def resolve_checkpoint(training_args: TrainingArguments) -> str | None:
    """`--resume_from_checkpoint auto`: the newest complete checkpoint in output_dir, or None for a fresh run."""
    requested = training_args.resume_from_checkpoint
    if requested != "auto":
        return requested
    if not os.path.isdir(training_args.output_dir):
        return None
    return get_last_checkpoint(training_args.output_dir)


def describe_contrastive_batch(training_args: TrainingArguments) -> str:
    """
    The start-up line saying what the contrastive loss sees: n per modality = per-device batch x processes (the
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
    chunk_size = getattr(training_args, "contrastive_chunk_size", None)
    if chunk_size and chunk_size < per_device:
        line += f"; embedded {chunk_size} samples per modality at a time (gradient caching, exact)"
    return line


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """
    Run pretraining (the best checkpoint chosen on validation), then evaluate the exported model on the test split
    (`medbind.training.evaluate`); returns what results.json holds (percent, flat keys), `{}` on other processes.
    """
    model_args, data_args, training_args = parse_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    datasets.utils.logging.set_verbosity(training_args.get_process_log_level())
    if training_args.dataloader_num_workers > 0 and os.environ.get("TOKENIZERS_PARALLELISM") != "false":
        # The fast tokenizer's thread pool does not survive fork: with TOKENIZERS_PARALLELISM=true, loader workers
        # forked after the main process has tokenized (training the WordPiece vocabulary, evaluation) deadlock in
        # their first batch. Unset, the library only warns and turns it off; "false" is that, said in advance.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    logger.info(describe_contrastive_batch(training_args))
    if model_args.preset == "demo":
        build_demo_data_if_absent(data_args, training_args)
    set_seed(training_args.seed)

    data = load_splits(data_args)
    with_cxr = model_args.variant != "ecg-clip"
    validation = retrieval_split(data, "validation", data_args.max_eval_samples, with_cxr)
    if data_args.streaming:
        if training_args.max_steps <= 0:
            raise ValueError("--streaming needs --max_steps: a stream has no length to count epochs by")
        # accelerate's default for an IterableDataset (process 0 concatenates the processes' batches and slices
        # them) breaks pair_index and the padded text; every process reads the stream and keeps its own slots.
        training_args.accelerator_config.dispatch_batches = False
        seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
        train_dataset = streamed_train_set(data_args, data, with_cxr, seed)
        reports = [
            row["text"]
            for stream in train_dataset.streams.values()
            for row in stream.select_columns(["text"]).take(STREAMED_TOKENIZER_REPORTS)
        ]
    else:
        train = retrieval_split(data, "train", data_args.max_train_samples, with_cxr)
        if train.cxr is None and train.ecg is None:
            raise FileNotFoundError(
                f"no training data found: give --dataset_dir with cxr/ and ecg/ DatasetDicts (got {data_args.dataset_dir!r})"
                " or --cxr_dataset / --ecg_dataset"
            )
        train_dataset = PretrainingDataset(train.cxr, train.ecg, train.pairs, data_args.pair_fraction)
        reports = [text for part in (train.cxr, train.ecg) if part is not None for text in part["text"]]
    config = build_config(model_args)
    model, processor = build_model_and_processor(model_args, data_args, training_args, config, reports)

    augment = data_args.augment
    train_collator = MedBindPretrainingCollator(
        processor,
        CXRAugmentation(processor.image_processor.image_mean, processor.image_processor.image_std) if augment else None,
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
    )
    checkpoint = resolve_checkpoint(training_args)
    if checkpoint:
        logger.warning("resuming from %s", checkpoint)
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_state()  # trainer_state.json: the whole log history, beside the model
    results = {}
    if trainer.is_world_process_zero():
        results = export(trainer, processor, model_args, data_args, training_args, train_result.metrics)
    # Weights (safetensors), config with auto_map, code files and processor; with --push_to_hub the Trainer saves
    # them itself and uploads the whole folder, card and results included, in one commit.
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="MedBind pretraining")
    else:
        trainer.save_model()
    return results


DEMO_FEW_SHOT_SETS = 50  # the demo's few-shot probes: fewer support sets than the paper's 300, to keep the demo short
DEMO_PROMPTS = PROMPTS / "demo"  # zero-shot prompts in the demo reports' wording


def export(
    trainer: MedBindTrainer,
    processor: MedBindProcessor,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    train_metrics: dict[str, float],
) -> dict[str, Any]:
    """
    The test-split evaluation (`results.json`, its figures) and the model card that reports it, beside the saved
    model. Validation served to choose the checkpoint; the card reports what `training/evaluate.py` measures on the
    held-out test split, with every task it can run (the demo with `DEMO_FEW_SHOT_SETS` few-shot support sets and
    its own prompts, `training/prompts/demo`).

    Returns:
        The evaluation results (`{}` when the data has no local test split, e.g. streamed Hub datasets).
    """
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    synthetic = model_args.preset == "demo"
    local = [f"{name}={path}" for name, path in dataset_paths(data_args).items() if path and os.path.isdir(path)]
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
        results = run_evaluation(evaluation_args, trainer.accelerator.unwrap_model(trainer.model), processor)
    else:
        logger.warning("no local dataset folder to evaluate on: results.json and the card's results are left out")
    data_source = data_args.dataset_dir or data_args.cxr_dataset or data_args.ecg_dataset
    description = (
        f"Trained on the SYNTHETIC demo set ({data_args.demo_num_patients} made-up patients) from `processing/demo.py`."
        if synthetic
        else f"Trained on the datasets in `{data_source}` (built with MedBind's `processing/` scripts)."
    )
    settings = {
        "epochs": training_args.num_train_epochs,
        "steps": trainer.state.global_step,
        "batch per device (n per modality)": training_args.per_device_train_batch_size,
        "processes": training_args.world_size,
        "optimizer": f"AdamW, lr {training_args.learning_rate}, weight decay {training_args.weight_decay}",
        "schedule": getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type),
        "seed": training_args.seed,
        "train samples/s": round(train_metrics.get("train_samples_per_second", float("nan")), 2),
    }
    card = render_model_card(
        trainer.accelerator.unwrap_model(trainer.model).config,
        {key: value for key, value in results.items() if isinstance(value, float | int)},
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
