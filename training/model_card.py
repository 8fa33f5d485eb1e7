"""Fill `model_cards/medbind_pretrained.md` from a trained model's config, its training arguments and its metrics."""

from __future__ import annotations

import re
from importlib.resources import files
from collections.abc import Mapping
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from modeling_medbind import MedBindConfig

# Package data (model_cards/ installs as medbind.model_cards), so a wheel finds it as a checkout does.
TEMPLATE = files("medbind.model_cards") / "medbind_pretrained.md"
VARIANT_NAMES = {"bd": "MEDBind_BD (TMCL + EMCL)", "nm": "MEDBind_NM (TMCL only)", "ecg-clip": "ECG-CLIP"}
LOSS_DESCRIPTIONS = {
    "bd": "TMCL (text-CXR, text-ECG) + EMCL (CXR-ECG pairs of the same visit)",
    "nm": "TMCL (text-CXR, text-ECG)",
    "ecg-clip": "TMCL (text-ECG)",
}
_RECALL_KEY = re.compile(r"^(?:eval_)?(?P<direction>\w+_to_\w+)/(?P<name>recall|chance)@(?P<k>\d+)$")


def recall_values(metrics: Mapping[str, float], name: str = "recall") -> dict[str, dict[int, float]]:
    """
    `{"cxr_to_text/recall@1": 42.0, ...}` -> `{"CXR -> text": {1: 42.0, ...}}` (an `eval_` prefix is accepted);
    `name="chance"` reads the random-ranking baselines (`cxr_to_text/chance@1`) instead.
    """
    values: dict[str, dict[int, float]] = {}
    for key, value in metrics.items():
        if (match := _RECALL_KEY.match(key)) and match["name"] == name:
            direction = match["direction"].replace("_to_", " -> ").replace("cxr", "CXR").replace("ecg", "ECG")
            values.setdefault(direction, {})[int(match["k"])] = value
    return values


def recall_table(metrics: Mapping[str, float]) -> dict[str, dict[int, str]]:
    """
    `recall_values` as the card's cells: `{"CXR -> text": {1: "42.0", 5: ..., 10: ...}}` (missing K: "-"); a
    `cxr_to_text/chance@1` beside a recall is shown in the same cell, `"42.0 (chance 1.3)"`.
    """
    chances = recall_values(metrics, name="chance")
    table: dict[str, dict[int, str]] = {}
    for direction, recalls in recall_values(metrics).items():
        row = table.setdefault(direction, {1: "-", 5: "-", 10: "-"})
        for k, value in recalls.items():
            chance = chances.get(direction, {}).get(k)
            row[k] = f"{value:.1f}" + (f" (chance {chance:.1f})" if chance is not None else "")
    return table


def render_model_card(
    config: MedBindConfig,
    metrics: Mapping[str, float],
    training_settings: Mapping[str, Any],
    repo_id: str,
    training_description: str,
    synthetic: bool,
    max_words: int = 100,
    evaluation_split: str = "validation",
) -> ModelCard:
    """
    The model card (README.md) of a pretrained MedBind folder.

    Args:
        config: the trained model's config.
        metrics: retrieval metrics with flat keys `{direction}/recall@{k}` (an `eval_` prefix is accepted).
        training_settings: what to list in the training table (epochs, batch size, learning rate, ...).
        repo_id: the Hub id (or folder) shown in the usage snippet.
        training_description: one paragraph on the data the model was trained on.
        synthetic: whether the data was the synthetic demo set (adds a prominent warning and a `synthetic` tag).
    """
    card_data = ModelCardData(
        library_name="transformers",
        license="apache-2.0",
        tags=["medbind", "medical", "chest-x-ray", "ecg", "contrastive", "custom_code"] + (["synthetic"] * synthetic),
        pipeline_tag="feature-extraction",
    )
    ecg = config.ecg_config
    text = config.text_config
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=repo_id.rstrip("/").split("/")[-1],
        repo_id=repo_id,
        variant_name=VARIANT_NAMES[config.variant],
        synthetic=synthetic,
        projection_dim=config.projection_dim,
        temperature=config.temperature,
        cxr_tower=f"timm `{config.cxr_config.model_name}`" if config.has_cxr else "none (ECG-CLIP)",
        ecg_tower=(
            f"transformer, {ecg.num_hidden_layers} layers, d={ecg.hidden_size}, {ecg.num_attention_heads} heads, "
            f"{ecg.patch_size} time step(s) per token, {ecg.position_embedding_type} positions"
        ),
        text_tower=f"BERT, {text.num_hidden_layers} layers, d={text.hidden_size}, [CLS] token",
        loss_description=LOSS_DESCRIPTIONS[config.variant],
        training_description=training_description,
        training_settings=dict(training_settings),
        evaluation_split=evaluation_split,
        recall_table=recall_table(metrics),
        max_words=max_words,
        image_size=config.cxr_config.image_size,
    )


__all__ = ["recall_table", "recall_values", "render_model_card"]
