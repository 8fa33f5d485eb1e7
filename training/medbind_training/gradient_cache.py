"""Gradient caching: the exact MEDBind step over a contrastive batch too large to embed with its graph at once.

The MEDBind loss L depends on the parameters theta only through the batch's embeddings e = f_theta(x) (and, with a
learned temperature, through tau). By the chain rule, for the batch cut into chunks C_1..C_K,

    dL/dtheta = sum_{k=1..K} (dL/de_{C_k})^T  de_{C_k}/dtheta  (+ dL/dtau dtau/dtheta)

so a step can (1) embed every chunk without the autograd graph, (2) take the loss of the whole batch on those
embeddings and its gradient g = dL/de, then (3) run each chunk's forward again, with the graph, and back-propagate
the surrogate <e_{C_k}, g_{C_k}>, whose parameter gradient is the chunk's term of the sum. The negatives are those of
the whole batch, activations are held for one chunk at a time, and the price is one extra forward pass
(Gao et al., "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup", 2021).

Exactness: the loss and gradients equal the whole-batch ones to float tolerance when every tower computes each row
independently of the others (Swin, BERT and the ECG transformer do). A BatchNorm tower in training mode (the `tiny`
preset's ResNet) normalises per chunk and updates its running statistics twice per chunk: put it in eval mode, or
use a LayerNorm tower, when chunking. Each chunk's second forward restores the random state of its first, so dropout
and drop-path draw the same masks in both passes.

Under `torch.distributed` the loss gathers every process's embeddings (`medbind_training.losses`), so g is the
gradient of the global batch's loss; every process must run the same number of chunks, since each forward of a
DDP / FSDP model is a collective (checked once per step, one host sync).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn

from medbind_training.losses import MedBindLossOutput, embeddings_loss, process_counts
from modeling_medbind import MedBindModel, MedBindOutput
from modeling_medbind.configuration_medbind import MODALITIES

# The model inputs each tower reads; the loss inputs (`text_group_ids`, `pair_index`) stay whole.
TOWER_INPUTS = {
    "cxr": ("pixel_values",),
    "ecg": ("ecg_values",),
    "text": ("input_ids", "attention_mask", "token_type_ids"),
}
MODALITY_INPUT = {modality: TOWER_INPUTS[modality][0] for modality in MODALITIES}  # a row per sample


@dataclass(frozen=True)
class Chunk:
    """One chunk of a training batch: CXR rows `cxr`, ECG rows `ecg`, and their reports. A training batch's texts are
    the CXRs' reports, then the ECGs' (`MedBindModel.forward`), so the chunk's reports are text rows `cxr` and
    `num_cxr + ecg` (`num_cxr`: the whole batch's CXR rows), in that order: the chunk is a training batch itself.
    """

    cxr: slice
    ecg: slice
    num_cxr: int

    @property
    def text(self) -> tuple[slice, slice]:
        """The chunk's text rows: its CXRs' reports, then its ECGs' reports."""
        return self.cxr, slice(self.num_cxr + self.ecg.start, self.num_cxr + self.ecg.stop)

    def rows(self, modality: str, tensor: torch.Tensor) -> torch.Tensor:
        """The chunk's rows of a whole-batch tensor of `modality` (`"cxr"`, `"ecg"` or `"text"`)."""
        if modality == "text":
            return torch.cat([tensor[part] for part in self.text])
        return tensor[getattr(self, modality)]

    def model_inputs(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The `MedBindModel.forward` inputs that embed this chunk (a modality with no rows here is left out)."""
        inputs = {}
        for modality, names in TOWER_INPUTS.items():
            present = [name for name in names if batch.get(name) is not None]
            if not present or (modality != "text" and _rows(getattr(self, modality)) == 0):
                continue
            inputs.update({name: self.rows(modality, batch[name]) for name in present})
        return inputs


def _rows(rows: slice) -> int:
    return rows.stop - rows.start


def chunk_batch(batch: Mapping[str, torch.Tensor], chunk_size: int) -> list[Chunk]:
    """Cut a training batch into chunks of at most `chunk_size` CXRs and `chunk_size` ECGs (with their reports): chunk k
    holds CXR and ECG rows `[k * chunk_size, (k + 1) * chunk_size)`, so chunk 0 holds every modality the batch has;
    visit pairs may straddle chunks (the loss sees the whole batch).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    counts = {modality: batch_rows(batch, modality) for modality in MODALITY_INPUT}
    if not any(counts.values()):
        raise ValueError("a training batch needs pixel_values or ecg_values to cut into chunks")
    num_chunks = math.ceil(max(counts.values()) / chunk_size)

    def part(modality: str, k: int) -> slice:
        return slice(min(k * chunk_size, counts[modality]), min((k + 1) * chunk_size, counts[modality]))

    return [Chunk(part("cxr", k), part("ecg", k), counts["cxr"]) for k in range(num_chunks)]


def batch_rows(batch: Mapping[str, torch.Tensor], modality: str) -> int:
    """The samples of `modality` (`"cxr"` or `"ecg"`) in a training batch: 0 when it has none."""
    values = batch.get(MODALITY_INPUT[modality])
    return 0 if values is None else values.shape[0]


def _rng_states(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The current states of the default generators that dropout on `device` (and any CPU draw) will start from."""
    accelerator = None if device.type == "cpu" else torch.get_device_module(device.type).get_rng_state(device)
    return torch.get_rng_state(), accelerator


@contextlib.contextmanager
def _replay(states: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> Iterator[None]:
    """Run the block from `_rng_states`' `states`, then put back the states the block started from."""
    cpu, accelerator = states
    with torch.random.fork_rng(devices=[] if accelerator is None else [device], device_type=device.type):
        torch.set_rng_state(cpu)
        if accelerator is not None:
            torch.get_device_module(device.type).set_rng_state(accelerator, device)
        yield


def _embeddings(output: MedBindOutput, chunk: Chunk) -> dict[str, torch.Tensor]:
    """The chunk's embeddings by tower, from the forward output of `chunk.model_inputs`."""
    present = [modality for modality in MODALITY_INPUT if _rows(getattr(chunk, modality)) > 0]
    return {"text": output.text_embeds} | {modality: output[f"{modality}_embeds"] for modality in present}


def _whole_batch(parts: list[dict[str, torch.Tensor]], chunks: list[Chunk]) -> dict[str, torch.Tensor]:
    """Reassemble the chunks' embeddings in batch order (texts: all CXR reports, then all ECG reports)."""
    whole = {}
    for modality in MODALITY_INPUT:
        pieces = [part[modality] for part in parts if modality in part]
        if pieces:
            whole[modality] = torch.cat(pieces)
    cxr_reports = [part["text"][: _rows(chunk.cxr)] for part, chunk in zip(parts, chunks)]
    ecg_reports = [part["text"][_rows(chunk.cxr) :] for part, chunk in zip(parts, chunks)]
    whole["text"] = torch.cat(cxr_reports + ecg_reports)
    return whole


def gradient_cached_step(
    model: nn.Module,
    inputs: Mapping[str, torch.Tensor],
    chunk_size: int,
    loss_model: MedBindModel | None = None,
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
    no_sync: Callable[[], AbstractContextManager] = contextlib.nullcontext,
    loss_scale: float = 1.0,
    context: Callable[[], AbstractContextManager] = contextlib.nullcontext,
) -> MedBindLossOutput:
    """Forward and backward of one MEDBind training batch in chunks of `chunk_size` samples per modality, with the loss
    and parameter gradients of the whole batch (see the module docstring for the equation and its limits): gradients
    are accumulated into `.grad` as `backward(loss * loss_scale)` would; nothing else of the training step (clipping,
    optimizer) happens here. Returns the batch's unscaled losses and its embeddings, detached.

    `model` may be the DDP / FSDP wrapper around the bare `loss_model` (`batch_loss`); `backward` is
    `accelerator.backward` (fp16 loss scaling); every chunk but the last runs in `no_sync` (`accelerator.no_sync`), so a
    data-parallel model reduces its gradients once per step; `context` wraps the forwards and the loss (autocast).
    """
    loss_model = loss_model if loss_model is not None else model
    chunks = chunk_batch(inputs, chunk_size)
    device = next(value.device for value in inputs.values() if isinstance(value, torch.Tensor))
    chunk_counts = process_counts([len(chunks)], device)
    if len({count for (count,) in chunk_counts}) > 1:
        raise ValueError(
            f"gradient caching needs the same number of chunks on every process (each forward is a collective), "
            f"got {[count for (count,) in chunk_counts]}; give every process the same batch size"
        )

    # (1) Embed every chunk without the graph, remembering the random state each forward started from.
    states, parts = [], []
    with torch.no_grad(), context():
        for chunk in chunks:
            states.append(_rng_states(device))
            parts.append(_embeddings(model(**chunk.model_inputs(inputs)), chunk))
    embeds = {name: value.detach().requires_grad_() for name, value in _whole_batch(parts, chunks).items()}

    # (2) The loss of the whole batch and its gradient w.r.t. the embeddings (and a learned temperature).
    with context():
        losses = embeddings_loss(
            loss_model, embeds.get("cxr"), embeds.get("ecg"), embeds["text"], inputs.get("text_group_ids"),
            inputs.get("pair_index"),
        )  # fmt: skip
    loss = losses.loss
    temperature = [loss_model.logit_scale] if loss_model.logit_scale is not None else []
    gradients = torch.autograd.grad(loss * loss_scale, [*embeds.values(), *temperature])
    embed_grads = dict(zip(embeds, gradients))
    temperature_grad = gradients[len(embeds) :]

    # (3) Each chunk again, with the graph, back-propagating <e, dL/de>. Chunk 0 goes last: it holds rows of every
    # tower, so the one synchronised backward reaches every parameter (DDP without find_unused_parameters needs that).
    for index in reversed(range(len(chunks))):
        chunk = chunks[index]
        with (no_sync() if index > 0 else contextlib.nullcontext()), _replay(states[index], device), context():
            chunk_embeds = _embeddings(model(**chunk.model_inputs(inputs)), chunk)
            surrogate = sum(
                (value * chunk.rows(name, embed_grads[name]).to(value.dtype)).sum()
                for name, value in chunk_embeds.items()
            )
            if index == 0 and temperature:
                surrogate = surrogate + (temperature[0] * temperature_grad[0]).sum()
        backward(surrogate)

    return MedBindLossOutput(
        loss=loss.detach(),
        tmcl_loss=losses.tmcl_loss.detach(),
        emcl_loss=losses.emcl_loss.detach() if losses.emcl_loss is not None else None,
        **{f"{name}_embeds": value.detach() for name, value in embeds.items()},
    )
