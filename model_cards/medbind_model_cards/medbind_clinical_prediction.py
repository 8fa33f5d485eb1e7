"""The model card (README.md) of a prompt-tuned clinical-prediction model (paper Table 4): `medbind_clinical_prediction.md`
beside this file, through `huggingface_hub.ModelCard`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib.resources import files
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from medbind_processing.licenses import PHYSIONET_CREDENTIALED_LICENSE
from modeling_medbind import MedBindForClinicalPrediction

TEMPLATE = files("medbind_model_cards") / "medbind_clinical_prediction.md"  # package data, found in a wheel too
TASK_DESCRIPTIONS = {"mortality": "in-hospital mortality", "readmission": "30-day readmission"}
TEXT_DESCRIPTIONS = {
    "mortality": "demographics and admission (no discharge text, which would leak the outcome)",
    "readmission": "discharge summary",
}


def render_model_card(
    model: MedBindForClinicalPrediction,
    results: Mapping[str, float],
    task: str,
    mode: str,
    repo_id: str,
    synthetic: bool,
    training_settings: Mapping[str, Any],
    comparison: Mapping[str, Mapping[str, float]] | None = None,
) -> ModelCard:
    """The model card (README.md) of a prompt-tuned model, from `medbind_clinical_prediction.md`.

    Args:
        results: `outcome_metrics` on the test split.
        repo_id: the Hub id (or folder) shown in the usage snippet.
        synthetic: trained on the synthetic demo (a warning, a `synthetic` tag and the demo's licence) rather than on
            MIMIC-IV, whose derived weights may be shared only under PhysioNet's credentialed terms.
        comparison: `{row: metrics}` of every model the run trained (`prompt_tuning_rows`: this model's mode, then
            each `--baseline`), shown as the paper's Table 4 when there is more than one.
    """
    config = model.config
    base = config.base_model_name_or_path
    # The Hub's model tree links Hub ids only; a local folder (or a random BERT) is named in the text alone.
    hub_base = base if base and not os.path.isdir(base) else None
    license_fields = {"license": "apache-2.0"} if synthetic else PHYSIONET_CREDENTIALED_LICENSE
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
        template_path=str(TEMPLATE),
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
        comparison={row: dict(metrics) for row, metrics in (comparison or {}).items()},
    )
