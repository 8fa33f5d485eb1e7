"""The model card (README.md) of a pretrained MedBind folder: `medbind_pretrained.md` beside this file, through
`huggingface_hub.ModelCard`.

Every number on the card, and its `model-index`, comes from the `results.json` that `training/run_evaluation.py` writes on
the test split (flat keys in percent, parsed with `medbind_training.results_keys`), never from typed
numbers. What is in neither the model folder nor results.json (the training settings and data description) is kept in
the card's own metadata (`medbind:`), so that `medbind card` renders the card again from a newer results.json.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from medbind_processing.licenses import PHYSIONET_CREDENTIALED_LICENSE
from medbind_training.results_keys import CLASSIFICATION_KEY, FEW_SHOT_KEY, RETRIEVAL_KEY, RSUM_KEY, retrieval_prefix
from medbind_training.retrieval import RetrievalProtocol
from modeling_medbind import MedBindConfig
from modeling_medbind.configuration_medbind import MAX_WORDS


# Package data (model_cards/medbind_model_cards/), so a wheel finds it as a checkout does.
TEMPLATE = files("medbind_model_cards") / "medbind_pretrained.md"
CARD_FILE = "README.md"
METADATA_KEY = "medbind"  # the card's own metadata: the render inputs that no file of the folder holds
RENDER_INPUTS = {"repo_id", "training_description", "training_settings", "synthetic", "max_words"}
FAMILIES = ("retrieval", "zero_shot", "few_shot", "cross_modality")  # the order of the card's tables
# Each variant's (`VARIANTS`) name and losses, in the paper's words.
VARIANT_NAMES = {
    "bd": "MEDBind_BD (TMCL + EMCL)",
    "nm": "MEDBind_NM (TMCL only)",
    "ecg-clip": "ECG-CLIP",
    "cxr-clip": "CXR-CLIP (within MedBind)",
}
LOSS_DESCRIPTIONS = {
    "bd": "TMCL (text-CXR, text-ECG) + EMCL (CXR-ECG pairs of the same visit)",
    "nm": "TMCL (text-CXR, text-ECG)",
    "ecg-clip": "TMCL (text-ECG)",
    "cxr-clip": "TMCL (text-CXR)",
}
# results.json's dataset names: the DATA folder's cxr / ecg / pairs, and the public sets.
DATASET_NAMES = {
    "cxr": "CXR test split of the pretraining data",
    "ecg": "ECG test split of the pretraining data",
    "pairs": "CXR-ECG visit pairs of the pretraining data",
    "ptbxl": "PTB-XL",
    "cpsc2018": "CPSC2018 (ICBEB)",
    "covid": "COVID",
    "rsna": "RSNA Pneumonia",
    "chexpert5x200": "CheXpert 5x200",
    "openi": "Open-I",
}


@dataclass(frozen=True)
class Result:
    """One measured number of results.json, with its chance level and 95 % interval where evaluation wrote them.

    Attributes:
        family: `"retrieval"`, `"zero_shot"`, `"few_shot"` or `"cross_modality"`.
        dataset: results.json's dataset name; `"pairs"` for cross-modality tasks, which run on the visit pairs.
        setting: the retrieval direction (`cxr_to_text`), the few-shot K (`k4`), the cross-modality task
            (`hypertrophy_from_cxr`); `""` for zero-shot.
        metric: `recall@1`, `balanced_accuracy`, `auroc`.
        value, chance, ci95: in percent.
    """

    family: str
    dataset: str
    setting: str
    metric: str
    value: float
    chance: float | None = None
    ci95: float | None = None

    @property
    def setting_name(self) -> str:
        """The setting in words: `CXR -> text`, `K=4`, `hypertrophy from CXR`."""
        if self.family == "few_shot":
            return f"K={self.setting.removeprefix('k')}"
        return self.setting.replace("_to_", " -> ").replace("_", " ").replace("cxr", "CXR").replace("ecg", "ECG")

    def cell(self) -> str:
        """The table cell: `"44.7"`, `"61.2 ± 1.5"`, with ` (chance 10.0)` where known."""
        text = f"{self.value:.1f}" + (f" ± {self.ci95:.1f}" if self.ci95 is not None else "")
        return text + (f" (chance {self.chance:.1f})" if self.chance is not None else "")

    def eval_result(self, split: str) -> EvalResult:
        """This number as one `model-index` entry. The Hub groups entries by task type and dataset, so the setting
        (retrieval direction, K, cross-modality task) goes into each metric's `config` and name."""
        embedding_task = self.family in ("retrieval", "few_shot")
        return EvalResult(
            task_type="feature-extraction" if embedding_task else "zero-shot-classification",
            task_name="Retrieval and few-shot linear probes" if embedding_task else "Zero-shot classification",
            dataset_type=self.dataset,
            dataset_name=DATASET_NAMES.get(self.dataset, self.dataset),
            dataset_split=split,
            metric_type=self.metric,
            metric_config=self.setting or None,
            metric_name=", ".join([self.metric.replace("_", " ")] + [self.setting_name] * bool(self.setting)) + " (%)",
            metric_value=self.value,
        )


def read_results(results: Mapping[str, Any]) -> list[Result]:
    """The measured numbers of a results.json, by family (`FAMILIES`) then key; chance levels and intervals are attached
    to the number they qualify. Strings (`model`, `split`), RSUM and other models' numbers (the encoder zoo's `zoo/...`)
    are left out."""
    numbers = {key: value for key, value in results.items() if type(value) in (int, float)}  # not bool, not str
    found = []
    for key, value in sorted(numbers.items()):
        if (match := RETRIEVAL_KEY.match(key)) and match["name"] == "recall":
            dataset, direction, k = match["dataset"], match["direction"], match["k"]
            chance = numbers.get(f"{retrieval_prefix(dataset, direction)}/chance@{k}")
            found.append(Result("retrieval", dataset, direction, f"recall@{k}", value, chance))
        elif (match := FEW_SHOT_KEY.match(key)) and match["name"] == "balanced_accuracy":
            prefix = f"few_shot/{match['dataset']}/k{match['k']}"
            found.append(
                Result("few_shot", match["dataset"], f"k{match['k']}", "balanced_accuracy", value,
                       numbers.get(f"{prefix}/chance"), numbers.get(f"{prefix}/ci95"))
            )  # fmt: skip
        elif match := CLASSIFICATION_KEY.match(key):
            chance = numbers.get(f"{key}/chance")
            if match["family"] == "zero_shot":
                found.append(Result("zero_shot", match["dataset"], "", match["name"], value, chance))
            else:
                found.append(Result("cross_modality", "pairs", match["dataset"], match["name"], value, chance))
    return sorted(found, key=lambda result: FAMILIES.index(result.family))


def render_model_card(
    config: MedBindConfig,
    results: Mapping[str, Any],
    training_settings: Mapping[str, Any],
    repo_id: str,
    training_description: str,
    synthetic: bool,
    max_words: int = MAX_WORDS,
    evaluation_split: str = "test",
) -> ModelCard:
    """The model card (README.md) of a pretrained MedBind folder.

    Args:
        results: results.json's content (flat keys in percent; strings such as `model` and `split` are ignored).
        training_settings: what the training table lists (epochs, batch size, learning rate, ...).
        repo_id: the Hub id (or folder) shown in the loading snippets.
        training_description: one paragraph on the data the model was trained on (no patient data: it is printed).
        synthetic: trained on the synthetic demo set: a prominent warning, a `synthetic` tag and the Apache-2.0
            licence; otherwise the weights are derived from MIMIC and carry PhysioNet's credentialed licence.
        max_words: the processor's report word limit.
    """
    measured = read_results(results)
    model_name = repo_id.rstrip("/").split("/")[-1]
    render_inputs = {  # RENDER_INPUTS
        "repo_id": repo_id,
        "training_description": training_description,
        "training_settings": dict(training_settings),
        "synthetic": synthetic,
        "max_words": max_words,
    }
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag="feature-extraction",
        tags=["medbind", "medical", "chest-x-ray", "ecg", "contrastive", "custom_code"] + ["synthetic"] * synthetic,
        eval_results=[result.eval_result(evaluation_split) for result in measured] or None,
        **({"license": "apache-2.0"} if synthetic else PHYSIONET_CREDENTIALED_LICENSE),
        **{METADATA_KEY: render_inputs},
    )
    ecg = config.ecg_config
    text = config.text_config
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=model_name,
        repo_id=repo_id,
        variant_name=VARIANT_NAMES[config.variant],
        has_cxr=config.has_cxr,
        synthetic=synthetic,
        projection_dim=config.projection_dim,
        temperature=config.temperature,
        cxr_tower=f"timm `{config.cxr_config.model_name}`" if config.has_cxr else "none (ECG-CLIP)",
        ecg_tower=(
            f"transformer, {ecg.num_hidden_layers} layers, d={ecg.hidden_size}, {ecg.num_attention_heads} heads, "
            f"{ecg.patch_size} time step(s) per token, {ecg.position_embedding_type} positions (sizes, pre-LN and "
            "positions are the project's choice: the paper gives none)"
            if config.has_ecg
            else "none (CXR-CLIP)"
        ),
        text_tower=f"BERT, {text.num_hidden_layers} layers, d={text.hidden_size}, [CLS] token",
        loss_description=LOSS_DESCRIPTIONS[config.variant],
        training_description=training_description,
        training_settings=dict(training_settings),
        evaluation_split=evaluation_split,
        tables=_tables(measured),
        rsum={
            match["modality"].upper(): f"{value:.1f}"
            for key, value in sorted(results.items())
            if (match := RSUM_KEY.match(key))
        },
        retrieval_protocol=RetrievalProtocol.from_results(results).sentence(),
        max_words=max_words,
        image_size=config.cxr_config.image_size,
        ecg_window=f"{ecg.num_samples / ecg.sampling_rate:g} s at {ecg.sampling_rate} Hz",
        ecg_leads=", ".join(ecg.lead_names),
    )


def rerender_model_card(model_dir: str | Path, results: Mapping[str, Any]) -> ModelCard:
    """
    The card of a saved MedBind folder rendered again with `results`, keeping the training settings and data
    description that `render_model_card` stored in the folder's card (not saved). The `split` of `results` names
    the evaluation split (default `test`).

    Raises:
        ValueError: its README.md was not written by `render_model_card` (no `medbind:` metadata).
    """
    model_dir = Path(model_dir)
    card_path = model_dir / CARD_FILE
    if not card_path.is_file():
        raise FileNotFoundError(f"{card_path} not found: a card is rendered again from the one training wrote")
    stored = ModelCard.load(card_path).data.to_dict().get(METADATA_KEY)
    if not isinstance(stored, dict) or set(stored) != RENDER_INPUTS:
        raise ValueError(f"{card_path} has no `{METADATA_KEY}:` metadata from render_model_card to render it from")
    config = MedBindConfig.from_pretrained(model_dir)
    return render_model_card(config, results, evaluation_split=str(results.get("split", "test")), **stored)


def load_results(path: str | Path) -> dict[str, Any]:
    """A results.json file; ValueError naming it when it is not a JSON object."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(results, dict):
        raise ValueError(f"{path} must hold a JSON object of results, got {type(results).__name__}")
    return results


def _tables(measured: list[Result]) -> dict[str, dict[str, Any]]:
    """The card's results tables, `{title: {"columns": [...], "rows": [[cell, ...], ...]}}`, one per family
    present: a row per dataset and setting (retrieval direction, cross-modality task), a column per metric or K."""
    layouts = {  # in FAMILIES order
        "retrieval": ("Retrieval (recall@K)", ["dataset", "direction"]),
        "zero_shot": ("Zero-shot classification", ["dataset"]),
        "few_shot": ("Few-shot linear probe (balanced accuracy)", ["dataset"]),
        "cross_modality": ("Cross-modality zero-shot", ["dataset", "task"]),
    }
    tables = {}
    for family, (title, row_columns) in layouts.items():
        rows: dict[tuple[str, ...], dict[str, str]] = {}
        columns: list[str] = []
        for result in (result for result in measured if result.family == family):
            row = (DATASET_NAMES.get(result.dataset, result.dataset),)
            row += (result.setting_name,) if len(row_columns) == 2 else ()
            column = result.setting_name if family == "few_shot" else result.metric.replace("_", " ")
            columns += [column] if column not in columns else []
            rows.setdefault(row, {})[column] = result.cell()
        if rows:
            columns.sort(key=_natural_order)
            tables[title] = {
                "columns": row_columns + columns,
                "rows": [list(row) + [cells.get(column, "-") for column in columns] for row, cells in rows.items()],
            }
    return tables


def _natural_order(column: str) -> tuple[str, int]:
    """Columns with numbers (`R@10`, `K=16`) in numeric order."""
    prefix, number = re.match(r"^(\D*)(\d*)", column).groups()
    return prefix, int(number or 0)


__all__ = ["Result", "load_results", "read_results", "render_model_card", "rerender_model_card"]
