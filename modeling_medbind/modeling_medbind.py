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
from transformers.utils import ModelOutput

from .configuration_medbind import PAPER_CXR_MODEL_NAME, MedBindConfig, MedBindCXRConfig, MedBindECGConfig
from .hub_loading import hub_offline, load_pretrained
from .losses import emcl_loss, tmcl_loss
from .tokenization_medbind import BIOBERT_IDENTIFIER

_INSTEAD = (
    "Download it once with network access so it sits in the Hugging Face cache, pass a local directory, or pass "
    "None to start that tower from random weights."
)


@dataclass
class MedBindOutput(ModelOutput):
    """
    Output of [`MedBindModel.forward`]. Embeddings are L2-normalised `[rows, projection_dim]`; absent inputs give None.

    Args:
        loss: TMCL + EMCL (per the variant), when `return_loss=True`.
        tmcl_loss: TMCL summed over the modalities present.
        emcl_loss: EMCL over the CXR-ECG pairs (0 with no pairs); None for the variants without EMCL.
        logits_per_cxr: `[n_cxr, n_text]` cosine similarities divided by the temperature (CLIP's `logits_per_image`).
        logits_per_ecg: `[n_ecg, n_text]` likewise for the ECGs.
        logits_per_text: `[n_text, n_cxr + n_ecg]`: each text against the CXRs, then the ECGs (those given).
        cxr_embeds, ecg_embeds, text_embeds: the embeddings.
    """

    loss: torch.FloatTensor | None = None
    tmcl_loss: torch.FloatTensor | None = None
    emcl_loss: torch.FloatTensor | None = None
    logits_per_cxr: torch.FloatTensor | None = None
    logits_per_ecg: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    cxr_embeds: torch.FloatTensor | None = None
    ecg_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None

    @property
    def logits_per_image(self) -> torch.FloatTensor | None:
        """`logits_per_cxr` under CLIP's name, which `pipeline("zero-shot-image-classification")` reads."""
        return self.logits_per_cxr


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
    """Multi-head self-attention through `scaled_dot_product_attention` (flash / memory-efficient kernels)."""

    def __init__(self, config: MedBindECGConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.attention_dropout

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch_size, length, hidden_size = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch_size, length, 3, self.num_heads, hidden_size // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(
            query, key, value, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(attended.transpose(1, 2).reshape(batch_size, length, hidden_size))


class MedBindECGLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

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

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.dropout(self.attention(self.attention_norm(hidden_states)))
        return hidden_states + self.dropout(self.mlp(self.mlp_norm(hidden_states)))


class MedBindECGEncoder(nn.Module):
    """The ECG tower: embeddings, transformer blocks, final norm; returns the class-token state `[B, hidden]`."""

    def __init__(self, config: MedBindECGConfig):
        super().__init__()
        self.config = config
        self.embeddings = MedBindECGEmbeddings(config)
        self.layers = nn.ModuleList(MedBindECGLayer(config) for _ in range(config.num_hidden_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, ecg_values: torch.Tensor) -> torch.Tensor:
        expected = (self.config.num_leads, self.config.num_samples)
        if ecg_values.dim() != 3 or tuple(ecg_values.shape[1:]) != expected:
            raise ValueError(
                f"ecg_values must be [batch, {expected[0]} leads, {expected[1]} samples], "
                f"got {tuple(ecg_values.shape)}; run the ECG feature extractor first"
            )
        hidden_states = self.embeddings(ecg_values)
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        return self.final_norm(hidden_states[:, 0])


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
        """
        Recompute the non-persistent buffers of `module`, a submodule of the timm model (Swin's relative position
        index, ...). `from_pretrained` builds the model on the meta device and restores only what the checkpoint
        holds, so these would stay uninitialised memory otherwise.
        """
        if self._reference_buffers is None:
            with torch.device("cpu"):
                self._reference_buffers = dict(self._create(pretrained=False).named_buffers())
        prefix = next(name for name, candidate in self.model.named_modules() if candidate is module)
        for buffer_name in module._non_persistent_buffers_set:
            init.copy_(getattr(module, buffer_name), self._reference_buffers[f"{prefix}.{buffer_name}".lstrip(".")])

    @property
    def num_features(self) -> int:
        return self.model.num_features

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values)


class MedBindPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the declarations `from_pretrained`, accelerate and FSDP read."""

    config: MedBindConfig
    config_class = MedBindConfig
    base_model_prefix = "medbind"
    main_input_name = "ecg_values"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
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
        config: the model's config.
        cxr_model, text_model: towers built already (by [`MedBindModel.from_backbones`], with pretrained weights)
            instead of new random ones; they must match `config.cxr_config` and `config.text_config`.

    Example:

    ```python
    >>> import torch
    >>> from modeling_medbind import MedBindConfig, MedBindModel
    >>> model = MedBindModel(MedBindConfig.from_preset("tiny")).eval()
    >>> ecg = model.get_ecg_features(torch.randn(2, 12, 1000))  # [2, 256], unit norm
    ```
    """

    def __init__(
        self, config: MedBindConfig, cxr_model: MedBindCXREncoder | None = None, text_model: BertModel | None = None
    ):
        super().__init__(config)
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

    def get_cxr_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """
        Args:
            pixel_values: `[B, 3, image_size, image_size]` from the image processor.

        Returns:
            `[B, projection_dim]` L2-normalised CXR embeddings.

        Raises:
            ValueError: for the ECG-CLIP variant, which has no CXR tower.
        """
        if self.cxr_model is None:
            raise ValueError(f"this MedBind model (variant={self.config.variant!r}) has no CXR tower")
        return F.normalize(self.cxr_projection(self.cxr_model(pixel_values)), dim=-1)

    def get_ecg_features(self, ecg_values: torch.Tensor) -> torch.Tensor:
        """
        Args:
            ecg_values: `[B, num_leads, num_samples]` from the ECG feature extractor (`[B, 12, 1000]`: 10 s at 100 Hz
                in the paper's models).

        Returns:
            `[B, projection_dim]` L2-normalised ECG embeddings.

        Raises:
            ValueError: when `ecg_values` is not `[B, num_leads, num_samples]`, or for the CXR-CLIP variant, which
                has no ECG tower.
        """
        if self.ecg_model is None:
            raise ValueError(f"this MedBind model (variant={self.config.variant!r}) has no ECG tower")
        return F.normalize(self.ecg_projection(self.ecg_model(ecg_values)), dim=-1)

    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            input_ids, attention_mask, token_type_ids: `[B, L]` from the tokenizer.

        Returns:
            `[B, projection_dim]` L2-normalised embeddings of the [CLS] token.
        """
        hidden = self.text_model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        return F.normalize(self.text_projection(hidden[:, 0]), dim=-1)

    def similarity_logits(self, embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """
        CLIP's logits: the cosine similarities of L2-normalised embeddings divided by the temperature.

        Args:
            embeds: `[n, projection_dim]` CXR, ECG or text embeddings from `get_*_features`.
            text_embeds: `[m, projection_dim]` embeddings to compare them with (texts, in `forward`).

        Returns:
            `[n, m]` logits; a softmax over a row gives zero-shot class probabilities.
        """
        return embeds @ text_embeds.T / self.temperature

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        ecg_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        text_group_ids: torch.Tensor | None = None,
        pair_index: torch.Tensor | None = None,
        return_loss: bool | None = None,
    ) -> MedBindOutput:
        """
        Embed whichever of the processor's outputs are given, compare every CXR and ECG with every text (CLIP's
        logits) and, with `return_loss=True`, compute the MEDBind loss of a training batch.

        Args:
            pixel_values: `[n_cxr, 3, H, W]` radiographs from the processor.
            ecg_values: `[n_ecg, leads, samples]` ECGs from the processor.
            input_ids, attention_mask, token_type_ids: `[n_text, L]` tokenised texts (reports or prompts).
            text_group_ids: `[n_text]` equal exactly where two texts are identical (TMCL's positives); default: all
                distinct. Training only.
            pair_index: `[m, 2]` (CXR row, ECG row) of the samples from the same visit; EMCL uses them (variant bd).
                Training only.
            return_loss: compute the loss of a training batch, in which text row i is the report of CXR i for
                i < n_cxr and the report of ECG i - n_cxr after them (so n_text = n_cxr + n_ecg).

        Returns:
            [`MedBindOutput`].

        Raises:
            ValueError: for a loss request whose texts are not one report per CXR and ECG, pairs without both
                modalities, or a CXR input to ECG-CLIP.
        """
        cxr_embeds = self.get_cxr_features(pixel_values) if pixel_values is not None else None
        ecg_embeds = self.get_ecg_features(ecg_values) if ecg_values is not None else None
        text_embeds = (
            self.get_text_features(input_ids, attention_mask, token_type_ids) if input_ids is not None else None
        )
        logits = {}
        if text_embeds is not None:
            for modality, embeds in (("cxr", cxr_embeds), ("ecg", ecg_embeds)):
                logits[modality] = self.similarity_logits(embeds, text_embeds) if embeds is not None else None
            # The text's logits are the images' transposed (as CLIP's logits_per_image): no second matmul.
            present = [logits[modality] for modality in ("cxr", "ecg") if logits[modality] is not None]
            logits["text"] = torch.cat(present).T if present else None
        loss = tmcl = emcl = None
        if return_loss:
            loss, tmcl, emcl = self.contrastive_loss(cxr_embeds, ecg_embeds, text_embeds, text_group_ids, pair_index)
        return MedBindOutput(
            loss=loss,
            tmcl_loss=tmcl,
            emcl_loss=emcl,
            logits_per_cxr=logits.get("cxr"),
            logits_per_ecg=logits.get("ecg"),
            logits_per_text=logits.get("text"),
            cxr_embeds=cxr_embeds,
            ecg_embeds=ecg_embeds,
            text_embeds=text_embeds,
        )

    def contrastive_loss(
        self,
        cxr_embeds: torch.Tensor | None,
        ecg_embeds: torch.Tensor | None,
        text_embeds: torch.Tensor | None,
        text_group_ids: torch.Tensor | None = None,
        pair_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """
        The MEDBind loss of a training batch from its embeddings: TMCL for each modality present, plus EMCL over the
        visit pairs for variant bd. Kept apart from `forward` so that a trainer can embed a batch in chunks
        (gradient caching) and take the loss of the whole batch at once.

        Args:
            cxr_embeds: `[n_cxr, d]` or None; ecg_embeds: `[n_ecg, d]` or None.
            text_embeds: `[n_cxr + n_ecg, d]`: the reports of the CXRs, then those of the ECGs.
            text_group_ids: `[n_cxr + n_ecg]` equal where reports are identical (default: all distinct).
            pair_index: `[m, 2]` (CXR row, ECG row) visit pairs.

        Returns:
            `(loss, tmcl, emcl)`; `emcl` is None for the variants without EMCL (and for a one-modality batch).

        Raises:
            ValueError: no modality, texts that are not one per sample, or pairs without both modalities.
        """
        counts = {"cxr": _rows(cxr_embeds), "ecg": _rows(ecg_embeds)}
        if cxr_embeds is None and ecg_embeds is None:
            raise ValueError("return_loss=True needs CXR or ECG inputs with their reports")
        num_texts = counts["cxr"] + counts["ecg"]
        if text_embeds is None or text_embeds.shape[0] != num_texts:
            got = "no texts" if text_embeds is None else f"{text_embeds.shape[0]} texts"
            raise ValueError(
                f"return_loss=True needs one report per sample, the CXRs' then the ECGs' ({counts['cxr']} + "
                f"{counts['ecg']} = {num_texts} rows of input_ids); got {got}"
            )
        if text_group_ids is None:
            text_group_ids = torch.arange(num_texts, device=text_embeds.device)
        tmcl = None
        start = 0
        for embeds in (cxr_embeds, ecg_embeds):
            if embeds is None:
                continue
            rows = slice(start, start + embeds.shape[0])
            start = rows.stop
            loss = tmcl_loss(
                text_embeds[rows], embeds, text_group_ids[rows], self.temperature, self.config.loss_reduction
            )
            tmcl = loss if tmcl is None else tmcl + loss
        emcl = self._emcl(cxr_embeds, ecg_embeds, pair_index) if self.config.variant == "bd" else None
        return (tmcl + emcl if emcl is not None else tmcl), tmcl, emcl

    def _emcl(
        self, cxr_embeds: torch.Tensor | None, ecg_embeds: torch.Tensor | None, pair_index: torch.Tensor | None
    ) -> torch.Tensor | None:
        if pair_index is not None and pair_index.numel() > 0 and (cxr_embeds is None or ecg_embeds is None):
            raise ValueError("pair_index was given but the batch lacks CXRs or ECGs to pair")
        if cxr_embeds is None or ecg_embeds is None:
            return None
        if pair_index is None:
            pair_index = torch.zeros(0, 2, dtype=torch.long, device=cxr_embeds.device)
        # n: the paper's batch holds n of each modality; with unequal counts the pairs come from the larger.
        batch_size = max(cxr_embeds.shape[0], ecg_embeds.shape[0])
        return emcl_loss(
            cxr_embeds[pair_index[:, 0]],
            ecg_embeds[pair_index[:, 1]],
            batch_size,
            self.temperature,
            self.config.loss_reduction,
        )

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
            **config_overrides: fields of the `"paper"` preset, when `config` is None.

        Returns:
            The model.

        Raises:
            FileNotFoundError: when a backbone cannot be loaded; the message names the identifier and `HF_HUB_OFFLINE`.
        """
        config = MedBindConfig.from_preset("paper", **config_overrides) if config is None else copy.deepcopy(config)
        text_model = None
        if text is not None:
            text_model = load_pretrained(
                text,
                lambda: BertModel.from_pretrained(text, add_pooling_layer=False, local_files_only=hub_offline()),
                "the text backbone",
                _INSTEAD,
            )
            config.text_config = text_model.config
        cxr_model = None
        if cxr is not None and config.has_cxr:
            config = config.with_cxr_backbone(cxr)
            cxr_model = load_pretrained(
                cxr, lambda: MedBindCXREncoder(config.cxr_config, pretrained=True), "the timm CXR backbone", _INSTEAD
            )
        return cls(config, cxr_model=cxr_model, text_model=text_model)


__all__ = ["MedBindModel", "MedBindOutput", "MedBindPreTrainedModel"]
