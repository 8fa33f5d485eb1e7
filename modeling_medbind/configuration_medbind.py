"""MedBind configuration: one composite config holding a CXR, an ECG and a text (BERT) sub-config."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any, ClassVar

from transformers import BertConfig, PreTrainedConfig

# The paper's CXR tower (MedCLIP's and CXR-CLIP's choice too); the image processor's defaults are its timm config.
PAPER_CXR_MODEL_NAME = "swin_tiny_patch4_window7_224"
# The order of the ECG tower's input rows: the standard 12-lead order MIMIC-IV-ECG, PTB-XL and CPSC2018 store.
CANONICAL_LEAD_NAMES = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
# Auto classes a saved folder answers besides AutoConfig and AutoModel (see `MedBindConfig.__post_init__`).
REMOTE_AUTO_CLASSES = {"AutoModelForZeroShotImageClassification": "modeling_medbind.MedBindModel"}
# MedBind's pipeline tasks -> their class in the saved folder's pipeline module. The config names them (as strings:
# the config does not depend on the pipelines) for `config.custom_pipelines`; `pipeline_medbind` registers them.
PIPELINE_CLASS_NAMES = {
    "zero-shot-ecg-classification": "MedBindZeroShotClassificationPipeline",
    "zero-shot-cxr-classification": "MedBindZeroShotClassificationPipeline",
    "medbind-feature-extraction": "MedBindFeatureExtractionPipeline",
}
PIPELINE_MODULE = "pipeline_medbind"
VARIANTS = ("bd", "nm", "ecg-clip", "cxr-clip")
MODALITIES = ("cxr", "ecg")  # the two signal towers, in the order every output and dataset layout uses
MAX_WORDS = 100  # reports are cut to their first 100 words before tokenising, as the paper does
TRAINED_VOCAB_SIZE = 2048  # the WordPiece vocabulary trained for a randomly initialised text tower (`tiny` preset)
LOSS_REDUCTIONS = ("sum", "mean")
# How radiographs become the CXR tower's input (`MedBindCXRConfig.preprocessing`; `MedBindProcessor.from_config`).
CXR_PREPROCESSINGS = ("timm", "medclip")
POSITION_EMBEDDING_TYPES = ("learned", "sinusoidal")


class MedBindCXRConfig(PreTrainedConfig):
    r"""
    Configuration of the chest X-ray tower: a timm image model (pooled output) and its input size.

    Args:
        model_name (`str`): timm architecture name. The paper's (and MedCLIP's) choice is a Swin-T.
        image_size (`int`): side of the square input in pixels (the processor resizes and crops to it).
        num_channels (`int`): input channels; radiographs are replicated to 3 so ImageNet weights apply.
        drop_path_rate (`float`): stochastic depth of the timm model.
        model_kwargs (`dict`): architecture overrides passed to `timm.create_model` (for example
            `{"embed_dim": 16, "depths": [1, 1], "num_heads": [1, 2]}` for a tiny Swin in tests).
        preprocessing (`str`): how radiographs become the tower's input, one of `CXR_PREPROCESSINGS`:
            - `"timm"` (default; the `tiny` preset and the demo): timm's evaluation transform of `model_name`
              (`timm_preprocessing_defaults`), in training too.
            - `"medclip"` (the `paper` preset: the paper cites MedCLIP's preprocessing): MedCLIP's padding to a
              square, resize and single mean / std (`medclip_preprocessing_defaults`), a random `image_size` crop in
              training (`medbind_training.augmentation`) and a centre crop at inference. (An RGB input stays RGB,
              where MedCLIP converts it to gray: radiographs are gray.)
    """

    model_type = "medbind_cxr"
    base_config_key = "cxr_config"

    model_name: str = PAPER_CXR_MODEL_NAME
    image_size: int = 224
    num_channels: int = 3
    drop_path_rate: float = 0.1
    model_kwargs: dict | None = None
    preprocessing: str = "timm"

    def __post_init__(self, **kwargs):
        if self.preprocessing not in CXR_PREPROCESSINGS:
            raise ValueError(
                f"cxr_config.preprocessing must be one of {CXR_PREPROCESSINGS}, got {self.preprocessing!r}"
            )
        super().__post_init__(**kwargs)


class MedBindECGConfig(PreTrainedConfig):
    r"""
    Configuration of the ECG tower: a vanilla pre-norm transformer encoder over time steps.

    The paper specifies a vanilla transformer encoder over 12 leads x 1000 samples (10 s at 100 Hz), one token per
    time point, a learned class token and positional information; pre-LN, the sizes (`PRESETS`), dropout and the
    position embedding type are the project's choice.

    The paper embeds each time point (the 12 lead values) as one token; `patch_size` > 1 embeds that many consecutive
    time points per token, which divides the attention cost by `patch_size**2` (one token per step over 10 s at
    100 Hz is 1,001 tokens, the dominant cost on a CPU). The input fields (`lead_names`, `num_samples`,
    `sampling_rate`) are also what [`MedBindProcessor.from_config`] builds the ECG feature extractor from.

    Args:
        lead_names (`list[str]`): the input's rows, in order (default `CANONICAL_LEAD_NAMES`: I, II, III, aVR, aVL,
            aVF, V1-V6). Records are matched to them by name, case-insensitively. `num_leads` is their count.
        num_samples (`int`): samples per lead (1000: 10 s at 100 Hz).
        sampling_rate (`int`): the input's rate in Hz (100 in the paper); records are resampled to it.
        patch_size (`int`): time points per token; must divide `num_samples`. 1 reproduces the paper.
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size: transformer sizes.
        hidden_dropout_prob, attention_dropout: dropout on residual branches and on attention weights. Attention
            dropout defaults to 0 (as in ViT and CLIP; the paper is silent): any value above 0 makes
            `scaled_dot_product_attention` fall back to its slow math kernel during training.
        position_embedding_type (`str`): `"learned"` or `"sinusoidal"`; the paper only says positions are needed.
        layer_norm_eps, initializer_range: as in BERT.
    """

    model_type = "medbind_ecg"
    base_config_key = "ecg_config"

    lead_names: list[str] | None = None
    num_samples: int = 1000
    sampling_rate: int = 100
    patch_size: int = 1
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    intermediate_size: int = 1024
    hidden_dropout_prob: float = 0.1
    attention_dropout: float = 0.0
    position_embedding_type: str = "learned"
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self.lead_names = list(CANONICAL_LEAD_NAMES if self.lead_names is None else self.lead_names)
        if not self.lead_names or len({name.lower() for name in self.lead_names}) != len(self.lead_names):
            raise ValueError(
                f"ecg_config.lead_names must be distinct names (compared case-insensitively), got {self.lead_names}"
            )
        # config.json files written before `lead_names` existed hold the count instead: it must agree.
        num_leads = kwargs.pop("num_leads", len(self.lead_names))
        if num_leads != len(self.lead_names):
            raise ValueError(f"ecg_config.num_leads={num_leads} disagrees with lead_names={self.lead_names}")
        if self.sampling_rate <= 0:
            raise ValueError(f"ecg_config.sampling_rate must be a positive number of Hz, got {self.sampling_rate}")
        if self.num_samples % self.patch_size != 0:
            raise ValueError(
                f"ecg_config.patch_size={self.patch_size} must divide ecg_config.num_samples={self.num_samples}"
            )
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"ecg_config.hidden_size={self.hidden_size} is not a multiple of "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(
                f"ecg_config.position_embedding_type must be one of {POSITION_EMBEDDING_TYPES}, "
                f"got {self.position_embedding_type!r}"
            )
        super().__post_init__(**kwargs)

    @property
    def num_leads(self) -> int:
        """Rows of the ECG tower's input: one per entry of `lead_names`."""
        return len(self.lead_names)

    @property
    def num_patches(self) -> int:
        """Tokens per record before the class token is prepended."""
        return self.num_samples // self.patch_size


# Named starting points. "paper" takes from the paper what it gives (Swin-T CXR tower with MedCLIP's preprocessing,
# BERT-base text tower as BioBERT, one ECG token per time step, projection 256, tau 0.07) and fills in what it does not
# with the project's choice: the ECG transformer's 4 layers, d 256, 8 heads, feed-forward 1024 and pre-LN. "tiny" (well
# under a million parameters, timm's preprocessing) exists for tests and the CPU demo, with ECG patches of 10 samples
# so attention runs over 101 tokens instead of 1,001.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "cxr_config": {"model_name": PAPER_CXR_MODEL_NAME, "image_size": 224, "preprocessing": "medclip"},
        "ecg_config": {  # the project's choice: the paper gives no ECG transformer sizes
            "hidden_size": 256,
            "num_hidden_layers": 4,
            "num_attention_heads": 8,
            "intermediate_size": 1024,
            "patch_size": 1,
        },
        "text_config": {},  # BERT-base, the size of dmis-lab/biobert-v1.1
    },
    "tiny": {
        # A ViT-family tower trained from scratch learns nothing from a few hundred radiographs in a CPU-minute
        # budget (a 2-stage Swin stayed at chance on the demo's cardiomegaly label); a narrow ResNet does. Its
        # BatchNorm learns faster than GroupNorm here, but its batch statistics are per process: N processes equal
        # one only for batch-independent towers (the paper's Swin), or with SyncBatchNorm on GPUs.
        "cxr_config": {
            "model_name": "resnet18",
            # 96 px: the demo's findings (heart size, consolidation, wires) survive it, and the CXR tower, most of a
            # step's CPU time at 224 px, costs a quarter as much (0.18 s vs 1.2 s per batch of 16, one thread)
            "image_size": 96,
            "drop_path_rate": 0.0,
            "model_kwargs": {"layers": [1, 1, 1, 1], "channels": [16, 32, 64, 128]},
        },
        "ecg_config": {
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 128,
            "patch_size": 10,
        },
        "text_config": {
            "vocab_size": TRAINED_VOCAB_SIZE,
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 128,
            "max_position_embeddings": 256,
        },
    },
}


class MedBindConfig(PreTrainedConfig):
    r"""
    Configuration of a [`MedBindModel`]: three sub-configs and the contrastive-training settings.

    Args:
        cxr_config (`dict` or [`MedBindCXRConfig`]): the chest X-ray tower.
        ecg_config (`dict` or [`MedBindECGConfig`]): the ECG tower.
        text_config (`dict` or [`BertConfig`]): the report tower (BioBERT in the paper).
        projection_dim (`int`): size of the shared embedding space (256 in the paper).
        temperature (`float`): tau of TMCL and EMCL (0.07 in the paper).
        learnable_temperature (`bool`): learn tau as a CLIP-style logit scale, initialised at `temperature`.
        variant (`str`): `"bd"` (TMCL + EMCL, MEDBind_BD), `"nm"` (TMCL only, MEDBind_NM), `"ecg-clip"`
            (ECG and text towers only; the model then has no CXR tower) or `"cxr-clip"` (CXR and text towers only:
            the CXR-text model of the paper's encoder zoo, trained within this framework).
        loss_reduction (`str`): `"sum"` over the batch as the paper's equations write it, or `"mean"`.
        initializer_range (`float`): std of the normal init of projections and ECG tower weights.

    Example:

    ```python
    >>> from modeling_medbind import MedBindConfig, MedBindModel
    >>> config = MedBindConfig.from_preset("tiny", variant="nm")
    >>> model = MedBindModel(config)
    ```
    """

    model_type = "medbind"
    sub_configs_defaults: ClassVar = {
        "cxr_config": MedBindCXRConfig,
        "ecg_config": MedBindECGConfig,
        "text_config": BertConfig,
    }

    cxr_config: dict | MedBindCXRConfig | None = None
    ecg_config: dict | MedBindECGConfig | None = None
    text_config: dict | BertConfig | None = None
    projection_dim: int = 256
    temperature: float = 0.07
    learnable_temperature: bool = False
    variant: str = "bd"  # one of VARIANTS (checked in __post_init__)
    loss_reduction: str = "sum"  # one of LOSS_REDUCTIONS
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {self.loss_reduction!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        super().__post_init__(**kwargs)
        # What a saved folder serves as remote code beside the AutoConfig / AutoModel entries save_pretrained writes:
        # pipeline("zero-shot-image-classification") loads its model through AutoModelForZeroShotImageClassification,
        # and pipeline(task) finds custom tasks in `custom_pipelines`. Entries read from a config.json win.
        self.auto_map = {**REMOTE_AUTO_CLASSES, **(getattr(self, "auto_map", None) or {})}
        tasks = {
            task: {"impl": f"{PIPELINE_MODULE}.{class_name}", "pt": ["AutoModel"], "type": "multimodal"}
            for task, class_name in PIPELINE_CLASS_NAMES.items()
        }
        self.custom_pipelines = {**tasks, **(getattr(self, "custom_pipelines", None) or {})}

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs: Any) -> None:
        """
        `PreTrainedConfig.save_pretrained`, plus the pipeline module's file when the config is saved as remote code:
        `custom_pipelines` names its classes, and the config does not import it, so transformers' copy of the
        config's code would not bring it. Copied first, so that `push_to_hub=True` uploads it too.
        """
        source = Path(__file__).with_name(f"{PIPELINE_MODULE}.py")
        if self._auto_class is not None and source.is_file():
            os.makedirs(save_directory, exist_ok=True)
            shutil.copy(source, Path(save_directory) / source.name)
        super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)

    @property
    def has_cxr(self) -> bool:
        """Whether the model built from this config has a chest X-ray tower (every variant but ECG-CLIP)."""
        return self.variant != "ecg-clip"

    @property
    def has_ecg(self) -> bool:
        """Whether the model built from this config has an ECG tower (every variant but CXR-CLIP)."""
        return self.variant != "cxr-clip"

    @property
    def modalities(self) -> tuple[str, ...]:
        """The signal modalities the model built from this config embeds besides text, in `MODALITIES` order."""
        return tuple(modality for modality, tower in zip(MODALITIES, (self.has_cxr, self.has_ecg)) if tower)

    def with_cxr_backbone(self, model_name: str) -> "MedBindConfig":
        """A copy of this config whose CXR tower is the timm architecture `model_name` as published:
        pretrained weights fit their own architecture only, so the preset's architecture overrides (`model_kwargs`) go.
        The config itself is left unchanged."""
        config = copy.deepcopy(self)
        config.cxr_config.model_name = model_name
        config.cxr_config.model_kwargs = None
        return config

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "MedBindConfig":
        """A config from a named preset of `PRESETS` (`"paper"` or `"tiny"`). `**overrides` are top-level fields
        (`variant="nm"`, ...) or sub-config dicts, which update the preset's sub-config field by field."""
        if name not in PRESETS:
            raise ValueError(f"unknown MedBind preset {name!r}; choose one of {sorted(PRESETS)}")
        fields = {key: dict(value) for key, value in PRESETS[name].items()}
        for key, value in overrides.items():
            if key in fields and isinstance(value, dict):
                fields[key].update(value)
            else:
                fields[key] = value
        return cls(**fields)


__all__ = ["CANONICAL_LEAD_NAMES", "PAPER_CXR_MODEL_NAME", "MedBindCXRConfig", "MedBindConfig", "MedBindECGConfig"]
