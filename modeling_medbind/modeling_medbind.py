"""MedBind model: CXR (timm Swin), ECG (transformer) and text (BERT) towers projected into one L2-normalised space."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import BertModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.clip.modeling_clip import eager_attention_forward
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from .configuration_medbind import (
    MODALITIES,
    PAPER_CXR_MODEL_NAME,
    MedBindConfig,
    MedBindCXRConfig,
    MedBindECGConfig,
)
from .hub_loading import load_bert, load_pretrained
from .tokenization_medbind import BIOBERT_IDENTIFIER

# What a training batch holds for the TMCL / EMCL loss only (training code); forward refuses them rather than
# passing them on to the towers with the other keyword arguments.
TRAINING_INPUTS = frozenset({"text_group_ids", "pair_index"})
_INSTEAD = (
    "Download it once with network access so it sits in the Hugging Face cache, pass a local directory, or pass "
    "None to start that tower from random weights."
)


@dataclass
class MedBindOutput(ModelOutput):
    """
    Output of [`MedBindModel.forward`]. Embeddings are L2-normalised `[rows, projection_dim]`; absent inputs give None.

    Args:
        loss: with `return_loss=True`, CLIP's symmetric contrastive loss of each modality given against its reports,
            summed (one process, no identical-report positives: MEDBind's own TMCL / EMCL objective is training
            code, `medbind_training.losses`).
        logits_per_cxr: `[n_cxr, n_text]` cosine similarities divided by the temperature (CLIP's `logits_per_image`).
        logits_per_ecg: `[n_ecg, n_text]` likewise for the ECGs.
        logits_per_text: `[n_text, n_cxr]`, CLIP's `logits_per_text` with the CXR as the image (the transpose of
            `logits_per_cxr`); the texts against the ECGs are `logits_per_ecg.T`.
        cxr_embeds, ecg_embeds, text_embeds: the embeddings.
        cxr_model_output, ecg_model_output, text_model_output: each tower's [`BaseModelOutputWithPooling`]
            (`pooler_output`: the embedding; `hidden_states` / `attentions` when asked for, from the ECG and text
            towers; the timm CXR tower gives its final feature map as `last_hidden_state`).
    """

    loss: torch.FloatTensor | None = None
    logits_per_cxr: torch.FloatTensor | None = None
    logits_per_ecg: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    cxr_embeds: torch.FloatTensor | None = None
    ecg_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    cxr_model_output: BaseModelOutputWithPooling | None = None
    ecg_model_output: BaseModelOutputWithPooling | None = None
    text_model_output: BaseModelOutputWithPooling | None = None

    @property
    def logits_per_image(self) -> torch.FloatTensor | None:
        """`logits_per_cxr` under CLIP's name, which `pipeline("zero-shot-image-classification")` reads."""
        return self.logits_per_cxr

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(value.to_tuple() if isinstance(value, ModelOutput) else value for value in self.values())


def clip_loss(logits: torch.Tensor) -> torch.Tensor:
    r"""
    CLIP's symmetric contrastive loss for `[n, n]` logits whose diagonal holds the matching pairs:

        L = ( CE(logits, diag) + CE(logits^T, diag) ) / 2

    with CE the mean cross-entropy over rows and diag the targets 0..n-1. Written here, not imported from CLIP's
    module, because transformers renamed that function within 5.x (`clip_loss`, then `image_text_contrastive_loss`).
    """
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def _rows(embeds: torch.Tensor | None) -> int:
    return 0 if embeds is None else embeds.shape[0]


def sinusoidal_position_embeddings(num_positions: int, dim: int) -> torch.Tensor:
    """The fixed sine/cosine table of "Attention is all you need": `[num_positions, dim]` float32."""
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


class MedBindECGEmbeddings(nn.Module):
    """Linear embedding of each patch of `patch_size` time points (all leads), a class token and positions."""

    def __init__(self, config: MedBindECGConfig):
        super().__init__()
        self.config = config
        self.patch_embedding = nn.Linear(config.num_leads * config.patch_size, config.hidden_size)
        self.class_embedding = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        num_positions = config.num_patches + 1
        if config.position_embedding_type == "learned":
            self.position_embedding = nn.Parameter(torch.zeros(1, num_positions, config.hidden_size))
        else:
            # Filled in `_init_weights`, which also runs after a meta-device `from_pretrained`.
            self.register_buffer("position_embedding", torch.zeros(1, num_positions, config.hidden_size), persistent=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, ecg_values: torch.Tensor) -> torch.Tensor:
        batch_size, num_leads, num_samples = ecg_values.shape
        patch_size = self.config.patch_size
        # [B, leads, T] -> [B, T/patch, patch * leads]: one token holds every lead of `patch_size` consecutive steps.
        patches = ecg_values.transpose(1, 2).reshape(batch_size, num_samples // patch_size, patch_size * num_leads)
        tokens = self.patch_embedding(patches)
        tokens = torch.cat([self.class_embedding.expand(batch_size, -1, -1).to(tokens.dtype), tokens], dim=1)
        return self.dropout(tokens + self.position_embedding.to(tokens.dtype))


class MedBindECGAttention(nn.Module):
    """Multi-head self-attention, dispatched through transformers' attention interface by
    `config._attn_implementation` ("eager": CLIP's plain matmuls, "sdpa", ...), as the text tower is."""

    def __init__(self, config: MedBindECGConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.attention_dropout

    def forward(self, hidden_states: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size, length, hidden_size = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch_size, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        dropout = self.dropout if self.training else 0.0
        attended, attn_weights = attention_interface(
            self, query, key, value, None, scaling=self.scaling, dropout=dropout, **kwargs
        )
        return self.out_proj(attended.reshape(batch_size, length, hidden_size)), attn_weights


class MedBindECGLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x)). Returns the new states and the weights."""

    def __init__(self, config: MedBindECGConfig):
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = MedBindECGAttention(config)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = nn.Sequential(
            nn.Linear(config.hidden_size, config.intermediate_size),
            nn.GELU(),
            nn.Linear(config.intermediate_size, config.hidden_size),
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, attn_weights = self.attention(self.attention_norm(hidden_states), **kwargs)
        hidden_states = hidden_states + self.dropout(attended)
        return hidden_states + self.dropout(self.mlp(self.mlp_norm(hidden_states))), attn_weights


class MedBindECGEncoder(nn.Module):
    """The ECG tower: embeddings, transformer blocks, then the final norm of the class token (as CLIP's
    vision tower: `last_hidden_state` is the blocks' output, `pooler_output` the normalised class token)."""

    def __init__(self, config: MedBindECGConfig):
        super().__init__()
        self.config = config
        self.embeddings = MedBindECGEmbeddings(config)
        self.layers = nn.ModuleList(MedBindECGLayer(config) for _ in range(config.num_hidden_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self,
        ecg_values: torch.Tensor,
        output_attentions: bool = False,
        output_hidden_states: bool | list[int] = False,
        **kwargs: Any,
    ) -> BaseModelOutputWithPooling:
        output_attentions, output_hidden_states = bool(output_attentions), bool(output_hidden_states)
        expected = (self.config.num_leads, self.config.num_samples)
        if ecg_values.dim() != 3 or tuple(ecg_values.shape[1:]) != expected:
            raise ValueError(
                f"ecg_values must be [batch, {expected[0]} leads, {expected[1]} samples], "
                f"got {tuple(ecg_values.shape)}; run the ECG feature extractor first"
            )
        hidden_states = self.embeddings(ecg_values)
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            hidden_states, attn_weights = layer(hidden_states, output_attentions=output_attentions, **kwargs)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (attn_weights,)
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden_states,
            pooler_output=self.final_norm(hidden_states[:, 0]),
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )


class MedBindCXREncoder(nn.Module):
    """The CXR tower: a timm model without its classifier; its pooled output (Swin has no class token)."""

    def __init__(self, config: MedBindCXRConfig, pretrained: bool = False):
        super().__init__()
        self.config = config
        self.model = self._create(pretrained)
        self._reference_buffers: dict[str, torch.Tensor] | None = None
        if pretrained:
            # The flag from_pretrained sets on what it loaded: the model's post_init leaves these weights alone.
            for tensor in (*self.model.parameters(), *self.model.buffers()):
                tensor._is_hf_initialized = True

    def _create(self, pretrained: bool) -> nn.Module:
        # Transformers (Swin, ViT) are built for one input size and must be told it; CNNs take any size.
        pretrained_cfg = timm.models.get_pretrained_cfg(self.config.model_name)
        fixed_size = pretrained_cfg is None or pretrained_cfg.fixed_input_size
        return timm.create_model(
            self.config.model_name,
            pretrained=pretrained,
            num_classes=0,
            in_chans=self.config.num_channels,
            drop_path_rate=self.config.drop_path_rate,
            **({"img_size": self.config.image_size} if fixed_size else {}),
            **(self.config.model_kwargs or {}),
        )

    @torch.no_grad()
    def reset_non_persistent_buffers(self, module: nn.Module) -> None:
        """Recompute the non-persistent buffers of `module`, a submodule of the timm model (Swin's relative position
        index, ...). `from_pretrained` builds the model on the meta device and restores only what the checkpoint holds,
        so these would stay uninitialised memory otherwise."""
        if self._reference_buffers is None:
            with torch.device("cpu"):
                self._reference_buffers = dict(self._create(pretrained=False).named_buffers())
        prefix = next(name for name, candidate in self.model.named_modules() if candidate is module)
        for buffer_name in module._non_persistent_buffers_set:
            init.copy_(getattr(module, buffer_name), self._reference_buffers[f"{prefix}.{buffer_name}".lstrip(".")])

    @property
    def num_features(self) -> int:
        return self.model.num_features

    def forward(self, pixel_values: torch.Tensor, **kwargs: Any) -> BaseModelOutputWithPooling:
        """The timm model's final feature map as `last_hidden_state` and its pooled features as `pooler_output`."""
        # The two halves of timm's own `forward`: the same arithmetic, with the feature map kept.
        features = self.model.forward_features(pixel_values)
        return BaseModelOutputWithPooling(last_hidden_state=features, pooler_output=self.model.forward_head(features))


class MedBindPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the declarations `from_pretrained`, accelerate and FSDP read."""

    config: MedBindConfig
    config_class = MedBindConfig
    base_model_prefix = "medbind"
    # `forward` takes ECGs first, as this attribute says: the ECG tower is MEDBind's own (all but CXR-CLIP have it).
    main_input_name = "ecg_values"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    # What `attn_implementation=` may ask for: BERT and the ECG transformer both dispatch through transformers'
    # attention interface (the timm CXR tower has its own attention, or none).
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True
    _no_split_modules = ["MedBindECGLayer", "BertLayer", "SwinTransformerBlock", "BasicBlock", "Bottleneck"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, MedBindECGEmbeddings):
            init.normal_(module.class_embedding, std=std)
            if module.config.position_embedding_type == "learned":
                init.normal_(module.position_embedding, std=std)
            else:
                table = sinusoidal_position_embeddings(module.config.num_patches + 1, module.config.hidden_size)
                init.copy_(module.position_embedding, table[None])
        elif module._non_persistent_buffers_set and self._cxr_tower_holds(module):
            self.cxr_model.reset_non_persistent_buffers(module)
        elif isinstance(module, MedBindModel) and module.logit_scale is not None:
            init.constant_(module.logit_scale, math.log(1.0 / self.config.temperature))

    def _cxr_tower_holds(self, module: nn.Module) -> bool:
        cxr_model = getattr(self, "cxr_model", None)
        return cxr_model is not None and any(module is candidate for candidate in cxr_model.model.modules())

    def _set_gradient_checkpointing(
        self, enable: bool = True, gradient_checkpointing_func: Callable = checkpoint, every_n_layers: int = 1
    ) -> None:
        # timm models checkpoint through their own switch, which transformers' flag walk does not reach.
        for module in self.modules():
            if isinstance(module, MedBindCXREncoder):
                module.model.set_grad_checkpointing(enable)
        super()._set_gradient_checkpointing(enable, gradient_checkpointing_func, every_n_layers)


class MedBindModel(MedBindPreTrainedModel):
    """
    MEDBind: a CXR tower (absent in ECG-CLIP), an ECG tower and one text tower shared by CXR and ECG reports, each
    followed by a linear projection to `projection_dim` and L2 normalisation.

    Args:
        cxr_model, text_model: towers built already (by [`MedBindModel.from_backbones`], with pretrained weights)
            instead of new random ones; they must match `config.cxr_config` and `config.text_config`.

    Example:

    ```python
    >>> import torch
    >>> from modeling_medbind import MedBindConfig, MedBindModel
    >>> model = MedBindModel(MedBindConfig.from_preset("tiny")).eval()
    >>> ecg = model.get_ecg_features(torch.randn(2, 12, 1000)).pooler_output  # [2, 256], unit norm
    ```
    """

    def __init__(
        self, config: MedBindConfig, cxr_model: MedBindCXREncoder | None = None, text_model: BertModel | None = None
    ):
        super().__init__(config)
        config = self.config
        if config.ecg_config._attn_implementation is None:
            # The ECG tower is no PreTrainedModel of its own, so nothing resolved its sub-config's implementation:
            # it takes the model's (`set_attn_implementation` later sets the sub-config itself).
            config.ecg_config._attn_implementation_internal = config._attn_implementation
        if cxr_model is None and config.has_cxr:
            cxr_model = MedBindCXREncoder(config.cxr_config)
        self.cxr_model = cxr_model
        self.ecg_model = MedBindECGEncoder(config.ecg_config) if config.has_ecg else None
        if text_model is None:
            text_model = BertModel(config.text_config, add_pooling_layer=False)
        self.text_model = text_model
        self.cxr_projection = (
            nn.Linear(self.cxr_model.num_features, config.projection_dim, bias=False) if config.has_cxr else None
        )
        self.ecg_projection = (
            nn.Linear(config.ecg_config.hidden_size, config.projection_dim, bias=False) if config.has_ecg else None
        )
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.zeros([])) if config.learnable_temperature else None
        self.post_init()

    @property
    def temperature(self) -> float | torch.Tensor:
        """tau: the config's constant, or 1 / exp(logit_scale) when learned (clamped as CLIP does, tau >= 0.01)."""
        if self.logit_scale is None:
            return self.config.temperature
        return 1.0 / self.logit_scale.clamp(max=math.log(100.0)).exp()

    def get_input_embeddings(self) -> nn.Module:
        """The text tower's word embeddings (what peft's `enable_input_require_grads` hooks)."""
        return self.text_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.text_model.set_input_embeddings(value)

    def _embedding(
        self, tower_output: BaseModelOutputWithPooling, projection: nn.Module, pooled: torch.Tensor
    ) -> BaseModelOutputWithPooling:
        # As CLIP's get_*_features: the tower's output, its pooler_output replaced by the (here normalised) projection.
        tower_output.pooler_output = F.normalize(projection(pooled), dim=-1)
        return tower_output

    @can_return_tuple
    def get_cxr_features(self, pixel_values: torch.Tensor, **kwargs: Any) -> BaseModelOutputWithPooling:
        """The CXR tower's output for `pixel_values [B, 3, image_size, image_size]`, its `pooler_output` the
        `[B, projection_dim]` L2-normalised embeddings. ValueError for ECG-CLIP, which has no CXR tower."""
        if self.cxr_model is None:
            raise ValueError(f"this MedBind model (variant={self.config.variant!r}) has no CXR tower")
        output = self.cxr_model(pixel_values)
        return self._embedding(output, self.cxr_projection, output.pooler_output)

    @can_return_tuple
    def get_image_features(self, pixel_values: torch.Tensor, **kwargs: Any) -> BaseModelOutputWithPooling:
        """`get_cxr_features` under CLIP's name: a MedBind image is a chest X-ray."""
        return self.get_cxr_features(pixel_values, return_dict=True, **kwargs)

    @can_return_tuple
    def get_ecg_features(
        self,
        ecg_values: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPooling:
        """The ECG tower's output for `ecg_values [B, num_leads, num_samples]` (`[B, 12, 1000]`: 10 s at 100 Hz in the
        paper's models), its `pooler_output` the `[B, projection_dim]` L2-normalised embeddings. The output flags
        default to the config's (attention weights need eager attention). ValueError for another input shape, or for
        CXR-CLIP, which has no ECG tower."""
        if self.ecg_model is None:
            raise ValueError(f"this MedBind model (variant={self.config.variant!r}) has no ECG tower")
        output = self.ecg_model(
            ecg_values,
            output_attentions=self._flag("output_attentions", output_attentions, self.config.ecg_config),
            output_hidden_states=self._flag("output_hidden_states", output_hidden_states, self.config.ecg_config),
            **kwargs,
        )
        return self._embedding(output, self.ecg_projection, output.pooler_output)

    @can_return_tuple
    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPooling:
        """The BERT tower's output for `[B, L]` tokenised texts, its `pooler_output` the `[B, projection_dim]`
        L2-normalised embeddings of the [CLS] token; `**kwargs` go to BERT (`output_attentions`, ...)."""
        bert_output = self.text_model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True, **kwargs
        )
        # BERT's output class also has cross-attention fields, which an encoder-only tower never fills.
        output = BaseModelOutputWithPooling(
            last_hidden_state=bert_output.last_hidden_state,
            hidden_states=bert_output.hidden_states,
            attentions=bert_output.attentions,
        )
        return self._embedding(output, self.text_projection, output.last_hidden_state[:, 0])

    def _flag(self, name: str, value: bool | list[int] | None, tower_config: Any) -> bool | list[int]:
        """An output flag: the argument (BERT also takes a list of layer indices for `output_hidden_states`), else
        the tower's config, else the model's config."""
        if value is not None:
            return value
        return bool(getattr(tower_config, name, False) or getattr(self.config, name, False))

    def similarity_logits(self, embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """CLIP's `[n, m]` logits of `[n, projection_dim]` and `[m, projection_dim]` L2-normalised
        embeddings: their cosine similarities over the temperature (a row's softmax: zero-shot class probabilities)."""
        return embeds @ text_embeds.T / self.temperature

    @can_return_tuple
    def forward(
        self,
        ecg_values: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        return_loss: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Any,
    ) -> MedBindOutput:
        """
        Embed whichever of the processor's outputs are given and compare every CXR and ECG with every text (CLIP's
        logits).

        Args:
            return_loss: also return CLIP's loss (see [`MedBindOutput`]). The texts are then the reports of the
                samples: one per visit (`n_text = n_cxr = n_ecg`, or the one modality given), or the CXRs' reports
                followed by the ECGs' (`n_text = n_cxr + n_ecg`); ValueError otherwise, or without CXR or ECG inputs.
            output_attentions, output_hidden_states: the towers' attention weights / per-layer states in
                `*_model_output`; default: the config's.
            **kwargs: passed to the BERT and ECG towers (attention-interface options).
        """
        training_inputs = sorted(TRAINING_INPUTS & kwargs.keys())
        if training_inputs:
            raise TypeError(
                f"MedBindModel.forward does not take {training_inputs}: they are MEDBind's training-loss inputs "
                "(medbind_training.losses.batch_loss takes a training batch with them)"
            )
        flags = {"output_attentions": output_attentions, "output_hidden_states": output_hidden_states}
        # BERT falls back to its own config; the model's config must win over it, as it does for the ECG tower.
        text_flags = {name: self._flag(name, value, self.config.text_config) for name, value in flags.items()}
        outputs = dict.fromkeys(("cxr", "ecg", "text"))
        if pixel_values is not None:
            outputs["cxr"] = self.get_cxr_features(pixel_values, return_dict=True)
        if ecg_values is not None:
            outputs["ecg"] = self.get_ecg_features(ecg_values, return_dict=True, **flags, **kwargs)
        if input_ids is not None:
            text = (input_ids, attention_mask, token_type_ids)
            outputs["text"] = self.get_text_features(*text, return_dict=True, **text_flags, **kwargs)
        embeds = {modality: output.pooler_output if output is not None else None for modality, output in outputs.items()}
        logits = {}
        if embeds["text"] is not None:
            for modality in MODALITIES:
                present = embeds[modality] is not None
                logits[modality] = self.similarity_logits(embeds[modality], embeds["text"]) if present else None
            # The text's logits are the images' transposed (as CLIP's logits_per_text): no second matmul.
            logits["text"] = logits["cxr"].T if logits["cxr"] is not None else None
        loss = self._clip_loss(embeds) if return_loss else None
        return MedBindOutput(
            loss=loss,
            logits_per_cxr=logits.get("cxr"),
            logits_per_ecg=logits.get("ecg"),
            logits_per_text=logits.get("text"),
            cxr_embeds=embeds["cxr"],
            ecg_embeds=embeds["ecg"],
            text_embeds=embeds["text"],
            cxr_model_output=outputs["cxr"],
            ecg_model_output=outputs["ecg"],
            text_model_output=outputs["text"],
        )

    def _clip_loss(self, embeds: dict[str, torch.Tensor | None]) -> torch.Tensor:
        """`clip_loss` of each modality given against its own reports, summed (see `forward`'s `return_loss`)."""
        counts = {modality: _rows(embeds[modality]) for modality in MODALITIES}
        if not any(counts.values()):
            raise ValueError("return_loss=True needs CXR or ECG inputs with their reports")
        num_texts = _rows(embeds["text"])
        one_per_visit = all(count in (0, num_texts) for count in counts.values())
        if not one_per_visit and num_texts != counts["cxr"] + counts["ecg"]:
            raise ValueError(
                f"return_loss=True needs one report per sample: one per visit ({max(counts.values())} rows of "
                f"input_ids) or the CXRs' then the ECGs' ({counts['cxr']} + {counts['ecg']} rows); got {num_texts}"
            )
        loss, start = None, 0
        for modality in MODALITIES:
            if not counts[modality]:
                continue
            rows = slice(0, num_texts) if one_per_visit else slice(start, start + counts[modality])
            start = rows.stop
            part = clip_loss(self.similarity_logits(embeds[modality], embeds["text"][rows]))
            loss = part if loss is None else loss + part
        return loss

    @classmethod
    def from_backbones(
        cls,
        config: MedBindConfig | None = None,
        text: str | os.PathLike | None = BIOBERT_IDENTIFIER,
        cxr: str | None = PAPER_CXR_MODEL_NAME,
        **config_overrides: Any,
    ) -> "MedBindModel":
        """
        A MedBind model whose text tower starts from a pretrained BERT (BioBERT by default) and whose CXR tower starts
        from timm's ImageNet weights, as the paper trains it; the ECG tower and the projections are random.

        Like `VisionTextDualEncoderModel.from_vision_text_pretrained`, the loaded backbones become the towers (no
        random tower is built and overwritten, so no backbone is held twice), and the model gets a new config.

        Args:
            config: starting config (default: the `"paper"` preset with `config_overrides`); it is not changed. The
                model's config takes the pretrained BERT's `text_config`, and a `cxr_config` naming `cxr` without
                architecture overrides (see `MedBindConfig.with_cxr_backbone`).
            text: a Hub id or local directory of a BERT model, or None to keep a random text tower.
            cxr: a timm model name with pretrained weights (Hub or cache), or None to keep a random CXR tower.

        Raises:
            FileNotFoundError: when a backbone cannot be loaded; the message names the identifier and `HF_HUB_OFFLINE`.
        """
        config = MedBindConfig.from_preset("paper", **config_overrides) if config is None else copy.deepcopy(config)
        text_model = None
        if text is not None:
            text_model = load_bert(text, "the text backbone", _INSTEAD)
            config.text_config = text_model.config
        cxr_model = None
        if cxr is not None and config.has_cxr:
            config = config.with_cxr_backbone(cxr)
            cxr_model = load_pretrained(
                cxr, lambda: MedBindCXREncoder(config.cxr_config, pretrained=True), "the timm CXR backbone", _INSTEAD
            )
        return cls(config, cxr_model=cxr_model, text_model=text_model)


__all__ = ["MedBindModel", "MedBindOutput", "MedBindPreTrainedModel"]
