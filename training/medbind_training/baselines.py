"""External checkpoints as baselines (paper Table 2, Figure 3): one embedding interface for every format users have.

`--baseline NAME=PATH` names a folder in one of these formats (`detect_format` tells them apart):

- `clip` / `siglip`: a `transformers` `CLIPModel` or `SiglipModel` folder (OpenAI CLIP, MedSigLIP-style);
- `open_clip`: an open_clip folder (`open_clip_config.json` + weights: BiomedCLIP's format; needs the optional
  extra `pip install "medbind[baselines]"`);
- `medbind`: a MedBind folder of any variant (BD, NM, ECG-CLIP, CXR-CLIP), through `AutoModel` / `AutoProcessor`.

Every adapter embeds with its model's own processor and conventions; the evaluation tasks embed through
`task_embedder(adapter)`.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm
from transformers import AutoModel, AutoProcessor
from transformers.utils import ModelOutput

from modeling_medbind import MedBindImageProcessor
from modeling_medbind.hub_loading import load_pretrained

from .data import per_sampling_rate
from .embedding import Embedder, TaskEmbedder

BASELINE_MODALITIES = ("cxr", "ecg", "text")
TRANSFORMERS_MODEL_TYPES = ("clip", "siglip", "medbind")  # config.json `model_type`s an adapter exists for
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_EXTRA = 'pip install "medbind[baselines]"'

ImageItem = str | os.PathLike | np.ndarray | torch.Tensor | Image.Image
_RADIOGRAPH_READER = MedBindImageProcessor()


def parse_baselines(specs: Sequence[str]) -> dict[str, Path]:
    """`--baseline NAME=PATH` values -> `{NAME: PATH}`, in order."""
    baselines: dict[str, Path] = {}
    for spec in specs:
        name, separator, path = spec.partition("=")
        if not separator or not name or not path:
            raise ValueError(f"--baseline takes NAME=PATH (a name for the results, a model folder), got {spec!r}")
        if name in baselines:
            raise ValueError(f"--baseline {name} is given twice; each baseline needs its own name")
        if not Path(path).is_dir():
            raise FileNotFoundError(f"--baseline {name}: {path} is not a folder")
        baselines[name] = Path(path)
    return baselines


def detect_format(path: str | os.PathLike) -> str:
    """The format of a model folder: `"open_clip"` when it holds `open_clip_config.json`, else its `config.json`'s
    `model_type` (`"clip"`, `"siglip"` or `"medbind"`).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"baseline model folder not found: {folder}")
    if (folder / OPEN_CLIP_CONFIG).is_file():
        return "open_clip"
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(
            f"{folder} is not a model folder this evaluation knows: no config.json (transformers CLIP, SigLIP, "
            f"MedBind) and no {OPEN_CLIP_CONFIG} (open_clip)"
        )
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type not in TRANSFORMERS_MODEL_TYPES:
        raise ValueError(
            f"{config_file}: model_type {model_type!r} has no baseline adapter; supported: "
            f"{', '.join(TRANSFORMERS_MODEL_TYPES)} and open_clip folders"
        )
    return model_type


def radiograph_rgb(image: ImageItem) -> Image.Image:
    """A radiograph as the 8-bit RGB picture general-domain processors expect: read as MedBind's image processor reads
    it (paths, DICOM, 16-bit scaled by its full range, alpha onto black), grayscale replicated to 3 channels.
    """
    pixels = _RADIOGRAPH_READER.process_image(_RADIOGRAPH_READER.fetch_images(image))
    rgb = pixels.float().round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()
    return Image.fromarray(rgb.numpy())


def pooled_embedding(output: torch.Tensor | ModelOutput) -> torch.Tensor:
    """A `get_*_features` result as a tensor: the `pooler_output` of a `ModelOutput` (transformers 5's CLIP and
    SigLIP, MedBind's), else the tensor itself."""
    return output.pooler_output if isinstance(output, ModelOutput) else output


class BaselineEncoder(ABC):
    """A model that embeds some of CXR, ECG and text into one space, whatever its format; `name` is how results and
    messages name the baseline."""

    format: str
    modalities: tuple[str, ...]

    def __init__(self, name: str, path: str | os.PathLike, batch_size: int = 64, device: torch.device | str = "cpu"):
        self.name = name
        self.path = Path(path)
        self.batch_size = batch_size
        self.device = torch.device(device)

    def embed_images(self, images: Sequence[ImageItem]) -> torch.Tensor:
        """`[N, d]` embeddings of radiographs (paths, PIL images, arrays)."""
        return self.embed("cxr", images)

    def embed_ecgs(self, ecgs: Sequence[Any], sampling_rate: float | None = None) -> torch.Tensor:
        """`[N, d]` embeddings of ECGs (WFDB record paths, or `[leads, samples]` arrays at `sampling_rate` Hz)."""
        return self.embed("ecg", ecgs, sampling_rate=sampling_rate)

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """`[N, d]` embeddings of reports or prompts, with the model's own tokenisation."""
        return self.embed("text", texts)

    def embed(self, modality: str, items: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        """`[len(items), d]` L2-normalised float32 embeddings on the CPU, `batch_size` items per forward pass."""
        if modality not in self.modalities:
            raise ValueError(
                f"baseline {self.name!r} ({self.format} model at {self.path}) embeds {', '.join(self.modalities)}, "
                f"not {modality}"
            )
        items = list(items)
        chunks = [items[start : start + self.batch_size] for start in range(0, len(items), self.batch_size)]
        parts = []
        with torch.no_grad():
            for chunk in tqdm(chunks, desc=f"embedding {self.name} {modality}", disable=len(chunks) < 2):
                parts.append(F.normalize(self._features(modality, chunk, **kwargs).float(), dim=-1).cpu())
        return torch.cat(parts) if parts else torch.zeros(0, 0)

    @abstractmethod
    def _features(self, modality: str, items: list[Any], **kwargs: Any) -> torch.Tensor:
        """`[len(items), d]` embeddings of one batch (not yet normalised), on any device."""


class TransformersDualEncoder(BaselineEncoder):
    """A `transformers` `CLIPModel` or `SiglipModel` folder, embedding CXR and text with its own processor. Text is
    truncated to the model's positions; SigLIP's is padded to them (`padding="max_length"`), as it was trained, which
    changes its embeddings. Texts are embedded as given: the prompt files already hold sentences.
    """

    modalities = ("cxr", "text")

    def __init__(self, name: str, path: str | os.PathLike, batch_size: int = 64, device: torch.device | str = "cpu"):
        super().__init__(name, path, batch_size, device)
        self.format = detect_format(path)
        if self.format not in ("clip", "siglip"):
            raise ValueError(f"baseline {name!r}: {path} is a {self.format} folder, not a CLIPModel or SiglipModel one")
        self.model, self.processor = load_pretrained(
            path,
            lambda: (AutoModel.from_pretrained(path).eval().to(self.device), AutoProcessor.from_pretrained(path)),
            f"the {self.format} baseline {name!r}",
            "Pass a folder saved with save_pretrained (model and processor).",
        )
        self._text_kwargs = {
            "padding": "max_length" if self.format == "siglip" else True,
            "truncation": True,
            "max_length": self.model.config.text_config.max_position_embeddings,
        }

    def _features(self, modality: str, items: list[Any], **kwargs: Any) -> torch.Tensor:
        if modality == "cxr":
            inputs = self.processor(images=[radiograph_rgb(item) for item in items], return_tensors="pt")
            return pooled_embedding(self.model.get_image_features(pixel_values=inputs["pixel_values"].to(self.device)))
        inputs = self.processor(text=items, return_tensors="pt", **self._text_kwargs)
        text_inputs = {key: inputs[key].to(self.device) for key in ("input_ids", "attention_mask") if key in inputs}
        return pooled_embedding(self.model.get_text_features(**text_inputs))


class OpenCLIPEncoder(BaselineEncoder):
    """An open_clip folder (`open_clip_config.json` and its weights, as BiomedCLIP ships), embedding CXR and text with
    the transform and tokenizer its config names (BiomedCLIP: 224 px, its own mean / std, 256 tokens). Loading fails
    when a Hugging Face text tower the config names is not cached.
    """

    format = "open_clip"
    modalities = ("cxr", "text")

    def __init__(self, name: str, path: str | os.PathLike, batch_size: int = 64, device: torch.device | str = "cpu"):
        super().__init__(name, path, batch_size, device)
        try:
            import open_clip
        except ImportError as error:
            raise ImportError(f"baseline {name!r} is an open_clip model: {OPEN_CLIP_EXTRA}") from error
        identifier = f"local-dir:{Path(path).resolve()}"

        def load() -> tuple[torch.nn.Module, Callable, Callable]:
            model, transform = open_clip.create_model_from_pretrained(identifier, device=self.device)
            return model.eval(), transform, open_clip.get_tokenizer(identifier)

        self.model, self.transform, self.tokenizer = load_pretrained(
            path, load, f"the open_clip baseline {name!r}", f"Pass a folder with {OPEN_CLIP_CONFIG} and its weights."
        )

    def _features(self, modality: str, items: list[Any], **kwargs: Any) -> torch.Tensor:
        if modality == "cxr":
            pixels = torch.stack([self.transform(radiograph_rgb(item)) for item in items]).to(self.device)
            return self.model.encode_image(pixels)
        return self.model.encode_text(self.tokenizer(items).to(self.device))


class MedBindEncoder(BaselineEncoder):
    """A MedBind folder of any variant, through `AutoModel` / `AutoProcessor` (remote code where MedBind is not
    installed): the towers its config has, with its own processor (reports cut to its `max_words`).
    """

    format = "medbind"

    def __init__(self, name: str, path: str | os.PathLike, batch_size: int = 64, device: torch.device | str = "cpu"):
        super().__init__(name, path, batch_size, device)
        self.model, self.processor = load_pretrained(
            path,
            lambda: (
                AutoModel.from_pretrained(path, trust_remote_code=True).eval().to(self.device),
                AutoProcessor.from_pretrained(path, trust_remote_code=True),
            ),
            f"the MedBind baseline {name!r}",
            "Pass a folder written by training/pretrain.py.",
        )
        config = self.model.config
        towers = {"cxr": config.has_cxr, "ecg": getattr(config, "has_ecg", True), "text": True}
        self.modalities = tuple(modality for modality in BASELINE_MODALITIES if towers[modality])

    def _features(self, modality: str, items: list[Any], **kwargs: Any) -> torch.Tensor:
        if modality == "cxr":
            inputs = self.processor(images=items, return_tensors="pt")
            return pooled_embedding(self.model.get_cxr_features(inputs["pixel_values"].to(self.device)))
        if modality == "ecg":
            inputs = self.processor(ecgs=items, sampling_rate=kwargs.get("sampling_rate"), return_tensors="pt")
            return pooled_embedding(self.model.get_ecg_features(inputs["ecg_values"].to(self.device)))
        inputs = {key: value.to(self.device) for key, value in self.processor(text=items, return_tensors="pt").items()}
        return pooled_embedding(self.model.get_text_features(**inputs))


ADAPTERS: dict[str, type[BaselineEncoder]] = {
    "clip": TransformersDualEncoder,
    "siglip": TransformersDualEncoder,
    "open_clip": OpenCLIPEncoder,
    "medbind": MedBindEncoder,
}


def load_baseline(
    name: str, path: str | os.PathLike, batch_size: int = 64, device: torch.device | str = "cpu"
) -> BaselineEncoder:
    """The adapter for a baseline folder, by its format (`detect_format`)."""
    return ADAPTERS[detect_format(path)](name, path, batch_size=batch_size, device=device)


def load_baselines(
    specs: Sequence[str], batch_size: int = 64, device: torch.device | str = "cpu"
) -> dict[str, BaselineEncoder]:
    """`--baseline NAME=PATH` values -> `{NAME: adapter}` (`parse_baselines`, `load_baseline`)."""
    return {name: load_baseline(name, path, batch_size, device) for name, path in parse_baselines(specs).items()}


def _dataset_items(dataset: datasets.Dataset, modality: str) -> tuple[list[Any], list[float | None]]:
    """A dataset's samples as an adapter takes them: images, or ECG record paths / arrays, with each one's rate."""
    if modality == "cxr":
        return list(dataset["image"]), [None] * len(dataset)
    if "ecg_path" in dataset.column_names:
        return list(dataset["ecg_path"]), [None] * len(dataset)
    rates = dataset["sampling_rate"] if "sampling_rate" in dataset.column_names else [None] * len(dataset)
    return [np.asarray(ecg, dtype=np.float32) for ecg in dataset["ecg"]], list(rates)


class BaselineEmbedder:
    """A `BaselineEncoder` as the evaluation tasks take a model (`TaskEmbedder`), each dataset and text list embedded
    once (in memory). `max_words` is effectively unbounded: these tokenizers cut reports by tokens, not words.
    """

    max_words = 1_000_000

    def __init__(self, encoder: BaselineEncoder):
        self.encoder = encoder
        self.device = encoder.device
        self.modalities = tuple(modality for modality in encoder.modalities if modality != "text")
        self._memory: dict[tuple[str, ...], torch.Tensor] = {}

    def embed(self, dataset: datasets.Dataset, modality: str, name: str = "") -> torch.Tensor:
        """`[len(dataset), d]` embeddings of a CXR or ECG dataset's samples (ECG arrays grouped by their rate)."""
        key = ("dataset", modality, dataset._fingerprint)
        if key not in self._memory:
            items, rates = _dataset_items(dataset, modality)

            def embed(group: list[Any], rate: float | None) -> torch.Tensor:
                return self.encoder.embed(modality, group, sampling_rate=rate)

            self._memory[key] = per_sampling_rate(items, rates, embed) if items else embed([], None)
        return self._memory[key]

    def embed_rows(self, dataset: datasets.Dataset, rows: Sequence[int], modality: str, name: str = "") -> torch.Tensor:
        return self.embed(dataset.select([int(row) for row in rows]), modality, name)

    def embed_texts(self, texts: Sequence[str], name: str = "") -> torch.Tensor:
        key = ("texts", *texts)
        if key not in self._memory:
            self._memory[key] = self.encoder.embed_texts(texts)
        return self._memory[key]


def task_embedder(encoder: BaselineEncoder, cache_dir: str | os.PathLike | None = None) -> TaskEmbedder:
    """What the evaluation tasks embed with: an `Embedder` for a MedBind folder (cached in `cache_dir`, like the
    evaluated model's), a `BaselineEmbedder` for the other formats."""
    if isinstance(encoder, MedBindEncoder):
        return Embedder(encoder.model, encoder.processor, encoder.batch_size, encoder.device, cache_dir)
    return BaselineEmbedder(encoder)
