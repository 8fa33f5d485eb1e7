"""The end of pretraining: the exported model evaluated on the test split (`results.json` and its figures) and the
model card that reports it, beside the saved model.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from medbind_model_cards.medbind_pretrained import render_model_card
from modeling_medbind import MedBindProcessor

from .evaluation import EvaluationArguments, run_evaluation
from .prompt_files import DEMO_PROMPTS
from .pretraining_arguments import DataArguments
from .pretraining_data import pretraining_paths
from .trainer import MedBindTrainer

logger = logging.getLogger(__name__)

DEMO_FEW_SHOT_SETS = 50  # the demo's few-shot probes: fewer support sets than the paper's 300, to keep the demo short


def export(
    trainer: MedBindTrainer,
    processor: MedBindProcessor,
    data_args: DataArguments,
    training_args: TrainingArguments,
    train_metrics: dict[str, float],
) -> dict[str, Any]:
    """The test-split evaluation (`results.json`, its figures) and the model card that reports it, beside the saved
    model. Validation served to choose the checkpoint; the card reports what `training/run_evaluation.py` measures on the
    held-out test split, with every task it can run (the demo with `DEMO_FEW_SHOT_SETS` few-shot support sets and
    its own prompts, `training/medbind_training/prompts/demo`). The results are `{}` when the data has no local test
    split (e.g. streamed Hub datasets).
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
