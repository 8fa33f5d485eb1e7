"""Embedding datasets and texts with a saved MedBind model, with an on-disk cache (`Embedder`), and loading that model.

Evaluation, pretraining's validation and prompt tuning embed through this one class; the evaluation tasks ask only
for a `TaskEmbedder`, which `medbind_training.baselines.BaselineEmbedder` also is.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import datasets
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import AutoModel, AutoProcessor

from modeling_medbind import MedBindModel, MedBindProcessor
from modeling_medbind.hub_loading import load_pretrained

from .data import modality_inputs


def load_model(name_or_path: str, trust_remote_code: bool = True) -> tuple[MedBindModel, MedBindProcessor]:
    """A saved MedBind model (folder or Hub id) and its processor, through the Auto classes; `trust_remote_code` runs
    the folder's own code (a model saved by another MedBind version), False the installed `modeling_medbind` classes.
    """
    return load_pretrained(
        name_or_path,
        lambda: (
            AutoModel.from_pretrained(name_or_path, trust_remote_code=trust_remote_code),
            AutoProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code),
        ),
        "the MedBind model",
        "Pass a folder written by training/pretrain.py, or a Hub id reachable from here.",
    )


def modality_of(dataset: datasets.Dataset) -> str:
    """`"cxr"` for a dataset with an `image` column, `"ecg"` for one with `ecg` or `ecg_path`."""
    columns = set(dataset.column_names)
    if "image" in columns:
        return "cxr"
    if columns & {"ecg", "ecg_path"}:
        return "ecg"
    raise ValueError(f"cannot tell the modality of a dataset with columns {sorted(columns)}: no image, ecg or ecg_path")


def _input_columns(dataset: datasets.Dataset, modality: str) -> list[str]:
    if modality == "cxr":
        return ["image"]
    signal = "ecg_path" if "ecg_path" in dataset.column_names else "ecg"
    return [signal] + (["sampling_rate"] if "sampling_rate" in dataset.column_names else [])


class TaskEmbedder(Protocol):
    """What an evaluation task needs of a model: L2-normalised `[N, d]` float32 CPU embeddings of a dataset's samples
    (all rows, or some), and of texts, in one space; `modalities` the sample modalities it embeds (every one embeds
    text), `device` where its model runs (retrieval ranks there). Reports whose first `max_words` words agree reach its
    text encoder as the same text, so they are one report for retrieval's identical-report rule.
    """

    modalities: Sequence[str]
    device: torch.device
    max_words: int

    def embed(self, dataset: datasets.Dataset, modality: str, name: str = "") -> torch.Tensor: ...

    def embed_rows(
        self, dataset: datasets.Dataset, rows: Sequence[int], modality: str, name: str = ""
    ) -> torch.Tensor: ...

    def embed_texts(self, texts: Sequence[str], name: str = "") -> torch.Tensor: ...


class Embedder:
    """The `TaskEmbedder` of a MedBind model and its processor (the model in eval mode meanwhile, on `device`, by
    default where its parameters are). With `cache_dir`, embeddings are stored as safetensors files named by a hash of
    the model (weights, config, processor, vocabulary) and of the dataset's fingerprint or the texts, so a second
    evaluation of the same model on the same data reads them. Within one `Embedder` a dataset is embedded once,
    however many tasks use it: do not train the model in between.
    """

    def __init__(
        self, model: MedBindModel, processor: MedBindProcessor, batch_size: int = 64,
        device: torch.device | str | None = None, cache_dir: str | Path | None = None,
    ):  # fmt: skip
        self.model = model
        self.processor = processor
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.modalities = model.config.modalities
        self.max_words = processor.max_words  # the processor's word limit on reports
        self._memory: dict[str, torch.Tensor] = {}
        self._rows: dict[tuple[str, str], dict[int, torch.Tensor]] = {}
        self._model_hash: str | None = None

    def embed(self, dataset: datasets.Dataset, modality: str, name: str = "") -> torch.Tensor:
        """`[len(dataset), d]` embeddings of a CXR or ECG dataset's samples."""
        if modality not in self.modalities:
            raise ValueError(f"this model embeds {self.modalities}, not {modality!r}")
        key = ("dataset", modality, dataset._fingerprint)

        def compute() -> torch.Tensor:
            subset = dataset.select_columns(_input_columns(dataset, modality))
            batches = tqdm(
                subset.iter(batch_size=self.batch_size), total=math.ceil(len(subset) / self.batch_size),
                desc=f"embedding {name} {modality.upper()}",
            )  # fmt: skip
            features = getattr(self.model, f"get_{modality}_features")
            return self._run(features, lambda batch: modality_inputs(self.processor, batch, modality), batches)

        return self._cached(key, compute)

    def embed_rows(self, dataset: datasets.Dataset, rows: Sequence[int], modality: str, name: str = "") -> torch.Tensor:
        """`[len(rows), d]` embeddings of some rows of a dataset (support samples drawn from a large train split): only
        the rows this `Embedder` has not embedded yet, for any task, are embedded (and cached as that selection).
        """
        known = self._rows.setdefault((dataset._fingerprint, modality), {})
        if missing := sorted({int(row) for row in rows} - known.keys()):
            known.update(zip(missing, self.embed(dataset.select(missing), modality, name), strict=True))
        if len(rows) == 0:
            return torch.zeros(0, self.model.config.projection_dim)
        return torch.stack([known[int(row)] for row in rows])

    def embed_texts(self, texts: Sequence[str], name: str = "") -> torch.Tensor:
        """`[len(texts), d]` embeddings of reports or prompts (cut to the processor's `max_words`, as in training)."""
        texts = list(texts)
        key = ("texts", hashlib.sha256(json.dumps(texts).encode()).hexdigest())

        def compute() -> torch.Tensor:
            chunks = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
            batches = tqdm(chunks, desc=f"embedding {name} text")
            return self._run(
                self.model.get_text_features, lambda chunk: self.processor(text=chunk, return_tensors="pt"), batches
            )

        return self._cached(key, compute)

    @torch.no_grad()
    def _run(
        self, features: Callable[..., Any], inputs: Callable[[Any], Mapping[str, torch.Tensor]], batches: Iterable[Any]
    ) -> torch.Tensor:
        """`features(**inputs(batch)).pooler_output` for every batch, on `self.device`, in eval mode: `[N, d]` float32
        on the CPU."""
        was_training = self.model.training
        self.model.eval()
        try:
            parts = []
            for batch in batches:
                on_device = {key: value.to(self.device) for key, value in inputs(batch).items()}
                parts.append(features(**on_device).pooler_output.float().cpu())
        finally:
            self.model.train(was_training)
        return torch.cat(parts) if parts else torch.zeros(0, self.model.config.projection_dim)

    def _cached(self, key: tuple[str, ...], compute) -> torch.Tensor:
        memory_key = "/".join(key)
        if memory_key in self._memory:
            return self._memory[memory_key]
        path = self.cache_dir / f"{self._hash(key)}.safetensors" if self.cache_dir else None
        if path is not None and path.is_file():
            embeds = load_file(path)["embeds"]
        else:
            embeds = compute()
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                staging = path.with_suffix(f".tmp{os.getpid()}")
                save_file({"embeds": embeds.contiguous()}, staging, metadata={"key": memory_key})
                os.replace(staging, path)  # a reader never sees half a file
        self._memory[memory_key] = embeds
        return embeds

    def _hash(self, key: tuple[str, ...]) -> str:
        if self._model_hash is None:
            digest = hashlib.sha256(self.model.config.to_json_string().encode())
            digest.update(json.dumps(self.processor.to_dict(), sort_keys=True, default=str).encode())
            digest.update(json.dumps(sorted(self.processor.tokenizer.get_vocab().items())).encode())
            for parameter_name, tensor in sorted(self.model.state_dict().items()):
                digest.update(parameter_name.encode())
                digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            self._model_hash = digest.hexdigest()
        return hashlib.sha256("/".join((self._model_hash, *key)).encode()).hexdigest()[:32]
