"""MedBind multimodal prompt tuning (MEDBind, "Multimodal prompt tuning"): a LoRA-adapted BERT reads a visit's
clinical text followed by one input token per available CXR / ECG embedding of a frozen MedBind model, and a linear
head on [CLS] predicts the outcome (30-day readmission, in-hospital mortality).

A saved model folder holds:

- `config.json`: [`MedBindClinicalPredictionConfig`], naming the base BERT and the MedBind model(s) the embeddings
  came from, with `auto_map` (the code files beside it load it with `trust_remote_code=True`);
- `text_adapter/adapter_config.json`, `text_adapter/adapter_model.safetensors`: the LoRA adapter of the BERT in
  peft's own format, so `PeftModel.from_pretrained(BertModel.from_pretrained(base), folder, subfolder="text_adapter")`
  reads it too;
- `model.safetensors`: the modality projections and the head, plus the BERT's own weights only when no pretrained
  base names them (`base_model_name_or_path=None`: a random BERT in tests and the CPU demo).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
import torch.nn.functional as F
from peft import (
    LoraConfig,
    PeftModel,
    get_peft_model,
    get_peft_model_state_dict,
    load_peft_weights,
    set_base_model_state_dict,
    set_peft_model_state_dict,
)
from peft.utils.constants import SAFETENSORS_WEIGHTS_NAME as ADAPTER_WEIGHTS_NAME
from safetensors.torch import save_file
from torch import nn
from transformers import BertModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_clinical_prediction import MedBindClinicalPredictionConfig
from .hub_loading import load_bert, load_pretrained
from .tokenization_medbind import BIOBERT_IDENTIFIER

ADAPTER_FOLDER = "text_adapter"
# Appended tokens take BERT's second segment, the one a sentence pair's second sentence gets.
MODALITY_TOKEN_TYPE = 1
# from_pretrained arguments that locate files, passed on to the adapter download.
_DOWNLOAD_ARGUMENTS = ("cache_dir", "force_download", "local_files_only", "revision", "subfolder", "token")


def _is_lora(name: str) -> bool:
    return ".lora_A." in name or ".lora_B." in name


def append_modality_tokens(
    text_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor,
    modality_tokens: torch.Tensor,
    modality_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Put each row's present modality tokens right after its text, then pad: row i becomes its `l_i` text tokens, its
    `k_i` present modality tokens in modality order, then padding up to `T = max_i (l_i + k_i)`.

    Args:
        text_embeds: `[B, L, H]` word embeddings of right-padded text.
        attention_mask: `[B, L]`, 1 on the text's `l_i` tokens then 0 (right padding, else ValueError).
        token_type_ids: `[B, L]` segment ids of the text.
        modality_tokens: `[B, M, H]` projected modality embeddings.
        modality_mask: `[B, M]`, 1 where the visit has that modality.

    Returns:
        `(inputs_embeds [B, T, H], attention_mask [B, T], token_type_ids [B, T])`; modality tokens get segment
        `MODALITY_TOKEN_TYPE`.
    """
    length = text_embeds.shape[1]
    positions = torch.arange(length, device=attention_mask.device)
    text_lengths = attention_mask.sum(dim=1)
    if not torch.equal(attention_mask.bool(), positions < text_lengths[:, None]):
        raise ValueError("attention_mask must be right-padded (tokenizer padding_side='right'): text comes first")
    present = modality_mask.bool()
    total_lengths = text_lengths + present.sum(dim=1)
    total = int(total_lengths.max())
    # Pad (or cut padding) to T; the modality tokens then overwrite the padding slots after each row's text.
    text_embeds = F.pad(text_embeds[:, :total], (0, 0, 0, max(0, total - length)))
    token_type_ids = F.pad(token_type_ids[:, :total], (0, max(0, total - length)))
    rows, slots = present.nonzero(as_tuple=True)
    columns = text_lengths[rows] + present.long().cumsum(dim=1)[rows, slots] - 1
    inputs_embeds = text_embeds.index_put((rows, columns), modality_tokens[rows, slots].to(text_embeds.dtype))
    token_type_ids = token_type_ids.index_put((rows, columns), token_type_ids.new_tensor(MODALITY_TOKEN_TYPE))
    attention_mask = (torch.arange(total, device=attention_mask.device) < total_lengths[:, None]).to(
        attention_mask.dtype
    )
    return inputs_embeds, attention_mask, token_type_ids


class MedBindClinicalPredictionPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the declarations `from_pretrained`, accelerate and FSDP read."""

    config: MedBindClinicalPredictionConfig
    config_class = MedBindClinicalPredictionConfig
    base_model_prefix = "medbind_clinical_prediction"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["BertLayer"]


class MedBindForClinicalPrediction(MedBindClinicalPredictionPreTrainedModel):
    """
    A BERT (BioBERT in the paper) adapted with LoRA reads `[CLS] clinical text [SEP]` followed by one token per
    modality embedding the visit has (CXR, ECG: 256-d embeddings of a frozen MedBind model, each through its own
    trainable linear projection into the BERT's hidden size); a linear head on the [CLS] state classifies the visit.
    Only the LoRA weights, the projections and the head are trainable.

    Example:

    ```python
    >>> import torch
    >>> from modeling_medbind import MedBindClinicalPredictionConfig, MedBindForClinicalPrediction
    >>> config = MedBindClinicalPredictionConfig(
    ...     text_config={"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
    ...                  "intermediate_size": 64},
    ... )
    >>> model = MedBindForClinicalPrediction(config)
    >>> logits = model(
    ...     input_ids=torch.tensor([[2, 7, 8, 3]]),
    ...     modality_embeds=torch.randn(1, 2, 256),  # the visit's CXR and ECG embeddings
    ...     modality_mask=torch.tensor([[0, 1]]),  # this visit has an ECG only
    ... ).logits
    ```
    """

    def __init__(self, config: MedBindClinicalPredictionConfig, text_model: BertModel | None = None):
        super().__init__(config)
        text_config = config.text_config
        # A loaded BERT (`from_backbone`) comes with from_pretrained's "initialised" marks: post_init leaves it alone.
        self.text_model = text_model if text_model is not None else BertModel(text_config, add_pooling_layer=False)
        self.modality_projections = nn.ModuleDict(
            {modality: nn.Linear(config.embedding_dim, text_config.hidden_size) for modality in config.modalities}
        )
        dropout = config.classifier_dropout
        self.dropout = nn.Dropout(dropout if dropout is not None else text_config.hidden_dropout_prob)
        self.classifier = nn.Linear(text_config.hidden_size, config.num_labels)
        self.post_init()
        # LoRA goes in after post_init, whose initialisation would overwrite LoRA's own (B = 0: the adapted BERT starts
        # as the base BERT).
        self.text_model: PeftModel = get_peft_model(self.text_model, self.lora_config())
        self.freeze_base_model()
        # from_pretrained finds LoRA in the adapter folder and a named base BERT in its own repository, not in
        # model.safetensors: they are loaded after it (see `from_pretrained`), so their absence there is expected.
        self._keys_to_ignore_on_load_missing = {r"\.lora_[AB]\."} | (
            {r"^text_model\."} if config.base_model_name_or_path is not None else set()
        )

    def lora_config(self) -> LoraConfig:
        """The peft `LoraConfig` this model's BERT is adapted with, built from the model config's `lora_*` fields."""
        return LoraConfig(
            r=self.config.lora_rank,
            lora_alpha=self.config.lora_alpha,
            lora_dropout=self.config.lora_dropout,
            target_modules=list(self.config.lora_target_modules),
            bias="none",
        )

    def freeze_base_model(self) -> None:
        """Make the BERT's own weights frozen and its LoRA weights trainable (projections and head stay trainable)."""
        for name, parameter in self.text_model.named_parameters():
            parameter.requires_grad_(_is_lora(name))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_model.get_base_model().get_input_embeddings()

    def build_inputs_embeds(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        modality_embeds: torch.Tensor | None = None,
        modality_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        The BERT's input: word embeddings of the text, then each present modality embedding projected to the
        hidden size (`append_modality_tokens`).

        Args:
            input_ids: `[B, L]` right-padded token ids of the clinical text (`[CLS] ... [SEP]`).
            attention_mask: `[B, L]` (default: no padding).
            token_type_ids: `[B, L]` (default: zeros).
            modality_embeds: `[B, M, embedding_dim]`, one embedding per modality of `config.modalities`, in that
                order; None for text only.
            modality_mask: `[B, M]`, 1 where the visit has the modality (default: all present).

        Returns:
            `(inputs_embeds [B, T, hidden], attention_mask [B, T], token_type_ids [B, T])`; ValueError for modality
            embeddings of the wrong shape, left padding, or more tokens than the BERT's `max_position_embeddings`.
        """
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        token_type_ids = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        text_embeds = self.get_input_embeddings()(input_ids)
        num_modalities = len(self.config.modalities)
        if modality_embeds is None:
            modality_embeds = text_embeds.new_zeros(input_ids.shape[0], num_modalities, self.config.embedding_dim)
            modality_mask = input_ids.new_zeros(input_ids.shape[0], num_modalities)
        expected = (input_ids.shape[0], num_modalities, self.config.embedding_dim)
        if tuple(modality_embeds.shape) != expected:
            raise ValueError(
                f"modality_embeds must be [batch, {num_modalities} modalities ({', '.join(self.config.modalities)}), "
                f"{self.config.embedding_dim}], got {tuple(modality_embeds.shape)}"
            )
        modality_mask = torch.ones(expected[:2], device=input_ids.device) if modality_mask is None else modality_mask
        modality_tokens = [
            self.modality_projections[modality](modality_embeds[:, index])
            for index, modality in enumerate(self.config.modalities)
        ]
        modality_tokens = torch.stack(modality_tokens, dim=1) if modality_tokens else text_embeds[:, :0]
        packed = append_modality_tokens(text_embeds, attention_mask, token_type_ids, modality_tokens, modality_mask)
        limit = self.config.text_config.max_position_embeddings
        if packed[0].shape[1] > limit:
            raise ValueError(
                f"{packed[0].shape[1]} input tokens exceed the BERT's {limit} positions: tokenize the text with "
                f"max_length={limit - num_modalities} to leave room for the {num_modalities} modality tokens"
            )
        return packed

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        modality_embeds: torch.Tensor | None = None,
        modality_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> SequenceClassifierOutput:
        """Classify visits from their text and modality embeddings (inputs as `build_inputs_embeds`): `logits [B,
        num_labels]`, and with `labels [B]` their cross-entropy as `loss`. Attentions and hidden states are the BERT's
        over the packed sequence."""
        inputs_embeds, attention_mask, token_type_ids = self.build_inputs_embeds(
            input_ids, attention_mask, token_type_ids, modality_embeds, modality_mask
        )
        outputs = self.text_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state[:, 0]))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    def save_pretrained(
        self, save_directory: str | os.PathLike, *args: Any, state_dict: dict | None = None, **kwargs: Any
    ) -> None:
        """Save the folder described in this module's docstring: config and code, the LoRA adapter in peft's format
        under `text_adapter/`, and `model.safetensors` without the LoRA weights and without a named base BERT.
        `state_dict` is the full one to save from (the Trainer passes the unwrapped one; default: this model's)."""
        state_dict = self.state_dict() if state_dict is None else state_dict
        # The adapter is written first: with push_to_hub=True the parent's save uploads the folder at its end.
        if kwargs.get("is_main_process", True):
            self._save_text_adapter(os.path.join(save_directory, ADAPTER_FOLDER), state_dict)
        # register_for_auto_class records one Auto class; AutoModelForSequenceClassification is listed beside it,
        # so both load the folder with trust_remote_code=True.
        self.config.auto_map = {
            **(getattr(self.config, "auto_map", None) or {}),
            "AutoModelForSequenceClassification": f"{type(self).__module__.split('.')[-1]}.{type(self).__name__}",
        }
        kept = {key: value for key, value in state_dict.items() if self._saved_in_model_file(key)}
        super().save_pretrained(save_directory, *args, state_dict=kept, **kwargs)

    def _saved_in_model_file(self, key: str) -> bool:
        return not key.startswith("text_model.") or (self.config.base_model_name_or_path is None and not _is_lora(key))

    def _save_text_adapter(self, adapter_directory: str, state_dict: dict[str, torch.Tensor]) -> None:
        text_state = {key.removeprefix("text_model."): value for key, value in state_dict.items()}
        adapter_state = get_peft_model_state_dict(self.text_model, state_dict=text_state)
        os.makedirs(adapter_directory, exist_ok=True)
        # get_peft_model names the base after the BERT object (unnamed when built from a config): name the real one.
        adapter_config = dataclasses.replace(
            self.text_model.peft_config["default"], base_model_name_or_path=self.config.base_model_name_or_path
        )
        adapter_config.save_pretrained(adapter_directory)
        save_file(
            {key: value.detach().contiguous() for key, value in adapter_state.items()},
            os.path.join(adapter_directory, ADAPTER_WEIGHTS_NAME),
            metadata={"format": "pt"},
        )

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any, **kwargs: Any
    ) -> MedBindForClinicalPrediction:
        """
        Load a saved folder or Hub repository: `model.safetensors` through `PreTrainedModel.from_pretrained`, then the
        base BERT it names (when it names one) and the LoRA adapter of `text_adapter/`.

        Raises:
            FileNotFoundError: when the base BERT or the adapter cannot be loaded; the message names the identifier
                and `HF_HUB_OFFLINE`.
        """
        model = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        base = model.config.base_model_name_or_path
        if base is not None:
            bert = _load_base_bert(base, "point the config's base_model_name_or_path at a local copy")
            set_base_model_state_dict(model.text_model, bert.state_dict())
        download = {name: kwargs[name] for name in _DOWNLOAD_ARGUMENTS if name in kwargs}
        folder = "/".join(part for part in (download.pop("subfolder", None), ADAPTER_FOLDER) if part)
        model.load_text_adapter(pretrained_model_name_or_path, subfolder=folder, **download)
        # Loading replaces the parameters, and with them the frozen flags set in __init__.
        model.freeze_base_model()
        return model

    def load_text_adapter(self, model_id: str | os.PathLike, subfolder: str = ADAPTER_FOLDER, **download: Any) -> None:
        """
        Load LoRA weights saved in peft's format (`model_id/subfolder/adapter_model.safetensors`; `**download`:
        `revision`, `token`, ... for a Hub id) into this model's BERT.

        Raises:
            FileNotFoundError: when the adapter cannot be read (the message names `model_id` and `HF_HUB_OFFLINE`).
            ValueError: when the adapter's weights do not fit this model's LoRA layers.
        """
        weights = load_pretrained(
            model_id,
            lambda: load_peft_weights(str(model_id), device="cpu", subfolder=subfolder, **download),
            "the LoRA adapter of",
            f"Its folder must hold {subfolder}/{ADAPTER_WEIGHTS_NAME}, as save_pretrained writes it.",
        )
        result = set_peft_model_state_dict(self.text_model, weights)
        missing = [key for key in result.missing_keys if _is_lora(key)]
        if result.unexpected_keys or missing:
            raise ValueError(
                f"the adapter in {model_id!s}/{subfolder} does not fit this model's LoRA layers: unexpected "
                f"{sorted(result.unexpected_keys)[:5]}, missing {missing[:5]}"
            )

    @classmethod
    def from_backbone(
        cls, text: str | os.PathLike = BIOBERT_IDENTIFIER, **config_kwargs: Any
    ) -> MedBindForClinicalPrediction:
        """
        A new model whose BERT is a pretrained one (BioBERT by default, as the paper); LoRA, the projections and the
        head start from their initialisation.

        `text` becomes the config's `base_model_name_or_path`; `**config_kwargs` are its other fields. Raises
        FileNotFoundError when the BERT cannot be loaded, naming the identifier and `HF_HUB_OFFLINE`.
        """
        bert = _load_base_bert(text, "pass a local directory")
        config = MedBindClinicalPredictionConfig(
            text_config=bert.config.to_dict(), base_model_name_or_path=str(text), **config_kwargs
        )
        return cls(config, text_model=bert)  # the loaded BERT itself: no second copy, no random init to overwrite


def _load_base_bert(identifier: str | os.PathLike, instead: str) -> BertModel:
    instead = f"Download it once with network access so it sits in the Hugging Face cache, or {instead}."
    return load_bert(identifier, "the base BERT", instead)


__all__ = [
    "MedBindClinicalPredictionPreTrainedModel",
    "MedBindForClinicalPrediction",
    "append_modality_tokens",
]
