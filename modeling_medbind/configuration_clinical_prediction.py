"""Configuration of MedBind's multimodal prompt tuning: a LoRA-adapted BERT reading a visit's text and embeddings."""

from __future__ import annotations

from typing import ClassVar

from transformers import BertConfig, PreTrainedConfig

from .configuration_medbind import MODALITIES


class MedBindClinicalPredictionConfig(PreTrainedConfig):
    r"""
    Configuration of a [`MedBindForClinicalPrediction`]: the BERT it adapts, the LoRA applied to it, the modality
    embeddings appended to the text, and the classification labels (`id2label`, `num_labels`).

    The paper (MEDBind, "Multimodal prompt tuning") fixes the design but not LoRA's hyperparameters; the defaults are
    those of the LoRA paper for BERT-size encoders (rank 8 on the attention's query and value projections).

    Args:
        text_config (`dict` or [`BertConfig`]): architecture of the language model (BioBERT's, a BERT-base, by
            default).
        base_model_name_or_path (`str`, *optional*): Hub id or folder of the pretrained BERT that LoRA adapts
            (`"dmis-lab/biobert-v1.1"` in the paper). Its weights are loaded from there and are not saved with the
            model; None means a randomly initialised BERT (tests, the CPU demo), whose weights are then saved too.
        modalities (`list[str]`): the embeddings appended after the text, in this order, one input token each
            (`"cxr"`, `"ecg"`); empty for a text-only model.
        embedding_models (`dict[str, str]`): for each modality, the Hub id or folder of the frozen MedBind model its
            embeddings come from (one model for both in `medbind` mode; two in the encoder zoo). Provenance only:
            the model reads embeddings, never computes them.
        embedding_dim (`int`): size of the modality embeddings (MedBind's `projection_dim`, 256 in the paper).
        lora_rank (`int`): rank r of the LoRA update `B A` of each adapted weight.
        lora_alpha (`float`): LoRA's scale numerator; the update is scaled by `lora_alpha / lora_rank`.
        lora_dropout (`float`): dropout on the LoRA branch's input.
        lora_target_modules (`list[str]`): names of the BERT linear layers LoRA adapts.
        classifier_dropout (`float`, *optional*): dropout before the classification head (default: the text
            config's `hidden_dropout_prob`, as `BertForSequenceClassification`).
        initializer_range (`float`): std of the normal initialisation of the projections and the head.

    Example:

    ```python
    >>> from modeling_medbind import MedBindClinicalPredictionConfig
    >>> config = MedBindClinicalPredictionConfig(
    ...     text_config={"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128},
    ...     base_model_name_or_path=None,
    ...     id2label={0: "survived", 1: "died"},
    ... )
    ```
    """

    model_type = "medbind_clinical_prediction"
    sub_configs_defaults: ClassVar = {"text_config": BertConfig}

    text_config: dict | BertConfig | None = None
    base_model_name_or_path: str | None = None
    modalities: list[str] | tuple[str, ...] = MODALITIES
    embedding_models: dict[str, str] | None = None
    embedding_dim: int = 256
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    lora_target_modules: list[str] | tuple[str, ...] = ("query", "value")
    classifier_dropout: float | None = None
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self.modalities = list(self.modalities)
        self.lora_target_modules = list(self.lora_target_modules)
        self.embedding_models = dict(self.embedding_models or {})
        unknown = [modality for modality in self.modalities if modality not in MODALITIES]
        if unknown or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities must be distinct names among {MODALITIES}, got {self.modalities}")
        if not set(self.embedding_models) <= set(self.modalities):
            raise ValueError(
                f"embedding_models names {sorted(self.embedding_models)}, not all among modalities {self.modalities}"
            )
        super().__post_init__(**kwargs)


__all__ = ["MedBindClinicalPredictionConfig"]
