"""MEDBind's training objective: TMCL and EMCL (the paper's loss equations) as pure functions over embedding tensors.

Training code, not part of the model: the model (`modeling_medbind`, the Hub remote code) only embeds and keeps a
one-process CLIP loss; `medbind_loss` takes its embeddings, the batch's report groups and visit pairs.

Under `torch.distributed` with more than one process, each loss first gathers its inputs from every process (with
gradient, following open_clip's `gather_features`), so the batch it sees is the global one: n, m and the negatives are
global and the loss value is the same on every process. The backward pass of the gather sums each process's gradient
into the local rows, i.e. the local gradient is `world_size` times the single-process one; DDP's gradient averaging
divides that back, so a data-parallel run takes exactly the step a single process takes on the global batch.
Every process must call the losses in the same order (the gathers are collectives), even with an empty local batch.

Host syncs: a gather must know every process's row count before it can shape its output, so each loss exchanges the
counts once (`process_counts`): one sync per `tmcl_loss` / `emcl_loss` call under `torch.distributed` (three per
MEDBind_BD step), none in a single process. Removing them would need a row bound known to every process in advance
(padding to it and masking the padded rows out of the softmax).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

REDUCTIONS = ("sum", "mean")
# The collator's inputs that only the loss reads (TMCL's identical-report groups, EMCL's visit pairs).
LOSS_INPUTS = ("text_group_ids", "pair_index")


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def process_counts(counts: Sequence[int], device: torch.device | str) -> list[list[int]]:
    """Every process's `counts`, in rank order: one `all_gather` and one host sync, whatever the number of counts;
    `[list(counts)]` when not running distributed (no collective, no sync). `device` is where the collective's tensors
    live (the device of the embeddings: CUDA for NCCL, CPU for gloo).
    """
    world_size = _world_size()
    if world_size == 1:
        return [list(counts)]
    local = torch.tensor(list(counts), dtype=torch.long, device=device)
    everyone = [torch.empty_like(local) for _ in range(world_size)]
    dist.all_gather(everyone, local)
    return torch.stack(everyone).tolist()  # the host sync: the gathers below need the counts to shape their output


def gather_across_processes(tensor: torch.Tensor, rows: Sequence[int], with_grad: bool = True) -> torch.Tensor:
    """Concatenate `tensor` from every process along dim 0, in rank order; processes may hold different row counts
    (0 included), `rows` in rank order (`process_counts`). `tensor` itself when not running distributed. `with_grad`
    keeps the autograd graph so gradients flow back to every process's rows (needed for embeddings, off for ids).
    """
    world_size = _world_size()
    if world_size == 1:
        return tensor
    if len(rows) != world_size or rows[dist.get_rank()] != tensor.shape[0]:
        raise ValueError(f"rows {list(rows)} does not match {world_size} processes and {tensor.shape[0]} local rows")
    # all_gather needs equal shapes: pad to the largest row count, then drop the padding.
    padding = [0, 0] * (tensor.dim() - 1) + [0, max(rows) - tensor.shape[0]]
    padded = F.pad(tensor, padding)
    gathered = _AllGather.apply(padded) if with_grad else _all_gather(padded)
    return torch.cat([part[:count] for part, count in zip(gathered, rows)], dim=0)


def _all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """`[world_size, *tensor.shape]`: every process's `tensor` (equal shapes), in rank order."""
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.stack(gathered)


class _AllGather(torch.autograd.Function):
    """`_all_gather` with a backward pass: each process's loss depends on every process's rows, so the gradient of
    the local rows is the sum over processes of their loss's gradient w.r.t. those rows (an all-reduce).

    Written here because `torch.distributed.nn.all_gather`, which does the same, warns that it is deprecated and
    refuses to run under `torch.compile`, and the replacement it names lives in a private module
    (`torch.distributed._functional_collectives`) that remote code should not depend on.
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        return _all_gather(tensor)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[dist.get_rank()]


def _reduce(per_anchor: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return per_anchor.sum() if reduction == "sum" else per_anchor.mean()


def _positive_averaged_log_likelihood(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Per row i: 1/|P(i)| * sum_{p in P(i)} log softmax(logits_i)_p, with `positives` a boolean `[rows, cols]` mask."""
    log_probs = F.log_softmax(logits, dim=-1)
    positive_log_probs = log_probs.masked_fill(~positives, 0.0).sum(dim=-1)
    return positive_log_probs / positives.sum(dim=-1)


def tmcl_loss(
    text_embeds: torch.Tensor,
    modality_embeds: torch.Tensor,
    text_group_ids: torch.Tensor,
    temperature: float | torch.Tensor = 0.07,
    reduction: str = "sum",
) -> torch.Tensor:
    """Text-modality contrastive loss (TMCL) for one modality j (CXR or ECG), symmetric, a 0-d tensor.

    With text embeddings t_i, modality embeddings z_i (row i of each is one sample and its own report) and P(i) the
    rows whose text is identical to text i (i included):

        L^{t->z} = - sum_{i=1..n} 1/|P(i)| sum_{p in P(i)} log( exp(t_i . z_p / tau) / sum_{l=1..n} exp(t_i . z_l / tau) )

    and L^{z->t} the same with the roles of t and z swapped (the positives of z_i are the texts identical to its own).
    Returns L^{t->z} + L^{z->t}. Identical reports are positives, not negatives, unlike plain InfoNCE.

    `text_embeds` and `modality_embeds` are `[n, d]`, L2-normalised and row-aligned; `text_group_ids` `[n]` are equal
    exactly where the (normalised) report texts are identical; `temperature` is tau (a 0-d tensor when learned);
    `reduction` is `"sum"` over anchors as in the paper, or `"mean"` (each direction divided by n). Under
    `torch.distributed`, the global-batch loss (see the module docstring).
    """
    if not (text_embeds.shape[0] == modality_embeds.shape[0] == text_group_ids.shape[0]):
        raise ValueError(
            "tmcl_loss needs one text per modality sample: got text_embeds "
            f"{tuple(text_embeds.shape)}, modality_embeds {tuple(modality_embeds.shape)}, "
            f"text_group_ids {tuple(text_group_ids.shape)}"
        )
    rows = [count for (count,) in process_counts([text_embeds.shape[0]], text_embeds.device)]
    text_embeds = gather_across_processes(text_embeds, rows)
    modality_embeds = gather_across_processes(modality_embeds, rows)
    text_group_ids = gather_across_processes(text_group_ids, rows, with_grad=False)
    if text_embeds.shape[0] == 0:
        return text_embeds.sum() * 0.0 + modality_embeds.sum() * 0.0
    logits = text_embeds @ modality_embeds.T / temperature
    positives = text_group_ids[:, None] == text_group_ids[None, :]  # symmetric, so it serves both directions
    text_to_modality = -_positive_averaged_log_likelihood(logits, positives)
    modality_to_text = -_positive_averaged_log_likelihood(logits.T, positives)
    return _reduce(text_to_modality, reduction) + _reduce(modality_to_text, reduction)


def emcl_loss(
    cxr_embeds: torch.Tensor,
    ecg_embeds: torch.Tensor,
    batch_size: int,
    temperature: float | torch.Tensor = 0.07,
    reduction: str = "sum",
) -> torch.Tensor:
    """Edge-modality contrastive loss (EMCL) over the m CXR-ECG pairs of a batch, symmetric, a 0-d tensor.

    With z^c_u, z^e_u the CXR and ECG embeddings of pair u, n the batch size and m the number of pairs:

        L^{c->e} = - sum_{u=1..m} log( exp(z^c_u . z^e_u / tau) / ( (n/m) sum_{q=1..m} exp(z^c_u . z^e_q / tau) ) )

    and L^{e->c} the same from the ECG side. Returns L^{c->e} + L^{e->c}. As the paper writes it, the n/m factor sits
    inside the log: it adds m * log(n/m) per direction to the value and leaves the gradient unchanged. It is kept so
    the value matches the equation. With m = 0 the loss is 0 (not NaN), still attached to the graph.

    `cxr_embeds` and `ecg_embeds` are `[m, d]`, L2-normalised, row u of each one pair; `batch_size` is n, the samples
    per modality in this process's batch (summed over processes when running distributed); `reduction` is `"sum"` as in
    the paper, or `"mean"` (each direction divided by m). Under `torch.distributed`, the global-batch loss.
    """
    if cxr_embeds.shape[0] != ecg_embeds.shape[0]:
        raise ValueError(
            f"emcl_loss needs row-aligned pairs: got cxr_embeds {tuple(cxr_embeds.shape)} and "
            f"ecg_embeds {tuple(ecg_embeds.shape)}"
        )
    counts = process_counts([cxr_embeds.shape[0], batch_size], cxr_embeds.device)
    rows = [pairs for pairs, _ in counts]
    cxr_embeds = gather_across_processes(cxr_embeds, rows)
    ecg_embeds = gather_across_processes(ecg_embeds, rows)
    batch_size = sum(size for _, size in counts)
    num_pairs = cxr_embeds.shape[0]
    if num_pairs == 0:
        return cxr_embeds.sum() * 0.0 + ecg_embeds.sum() * 0.0
    if num_pairs > batch_size:
        raise ValueError(f"emcl_loss got m={num_pairs} pairs for a batch of n={batch_size}; m cannot exceed n")
    logits = cxr_embeds @ ecg_embeds.T / temperature
    targets = torch.arange(num_pairs, device=logits.device)
    log_pair_share = math.log(batch_size / num_pairs)
    cxr_to_ecg = F.cross_entropy(logits, targets, reduction="none") + log_pair_share
    ecg_to_cxr = F.cross_entropy(logits.T, targets, reduction="none") + log_pair_share
    return _reduce(cxr_to_ecg, reduction) + _reduce(ecg_to_cxr, reduction)


def medbind_loss(
    cxr_embeds: torch.Tensor | None,
    ecg_embeds: torch.Tensor | None,
    text_embeds: torch.Tensor | None,
    temperature: float | torch.Tensor,
    variant: str,
    reduction: str = "sum",
    text_group_ids: torch.Tensor | None = None,
    pair_index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The MEDBind loss of a training batch from its embeddings, `(loss, tmcl, emcl)`:

        L = sum_{j in {CXR, ECG} present} TMCL_j  (+ EMCL for MEDBind_BD)

    TMCL for each modality present against its reports, plus EMCL over the visit pairs for variant `"bd"` (`emcl` is
    None otherwise, and for a one-modality batch). It takes embeddings, not inputs, so that a trainer can embed a batch
    in chunks (gradient caching) and take the loss of the whole batch at once.

    The `[n_cxr, d]` / `[n_ecg, d]` embeddings (either may be None) are L2-normalised; `text_embeds` `[n_cxr + n_ecg,
    d]` holds the CXRs' reports, then the ECGs'; `text_group_ids` `[n_cxr + n_ecg]` are equal where reports are
    identical (default: all distinct); `pair_index` `[m, 2]` holds (CXR row, ECG row) visit pairs; `temperature` is
    `MedBindModel.temperature` and `reduction` `MedBindConfig.loss_reduction` (`"sum"` over anchors as in the paper).
    """
    counts = {"cxr": _rows(cxr_embeds), "ecg": _rows(ecg_embeds)}
    if cxr_embeds is None and ecg_embeds is None:
        raise ValueError("the MEDBind loss needs CXR or ECG embeddings with their reports")
    num_texts = counts["cxr"] + counts["ecg"]
    if text_embeds is None or text_embeds.shape[0] != num_texts:
        got = "no texts" if text_embeds is None else f"{text_embeds.shape[0]} texts"
        raise ValueError(
            f"the MEDBind loss needs one report per sample, the CXRs' then the ECGs' ({counts['cxr']} + "
            f"{counts['ecg']} = {num_texts} rows of input_ids); got {got}"
        )
    if text_group_ids is None:
        text_group_ids = torch.arange(num_texts, device=text_embeds.device)
    sizes = [counts["cxr"], counts["ecg"]]
    parts = zip((cxr_embeds, ecg_embeds), text_embeds.split(sizes), text_group_ids.split(sizes))
    tmcl = sum(
        tmcl_loss(texts, embeds, ids, temperature, reduction) for embeds, texts, ids in parts if embeds is not None
    )
    emcl = _paired_emcl(cxr_embeds, ecg_embeds, pair_index, temperature, reduction) if variant == "bd" else None
    return (tmcl + emcl if emcl is not None else tmcl), tmcl, emcl


@dataclass
class MedBindLossOutput(ModelOutput):
    """The MEDBind loss of a training batch (TMCL + EMCL, per the variant), its parts and the embeddings it was taken
    on. `tmcl_loss` is summed over the modalities present; `emcl_loss` is 0 with no pairs, None for the variants
    without EMCL.
    """

    loss: torch.FloatTensor | None = None
    tmcl_loss: torch.FloatTensor | None = None
    emcl_loss: torch.FloatTensor | None = None
    cxr_embeds: torch.FloatTensor | None = None
    ecg_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None


def embeddings_loss(
    model: nn.Module,
    cxr_embeds: torch.Tensor | None,
    ecg_embeds: torch.Tensor | None,
    text_embeds: torch.Tensor | None,
    text_group_ids: torch.Tensor | None = None,
    pair_index: torch.Tensor | None = None,
) -> MedBindLossOutput:
    """`medbind_loss` with the temperature, variant and reduction of `model` (the bare `MedBindModel`)."""
    config = model.config
    loss, tmcl, emcl = medbind_loss(
        cxr_embeds, ecg_embeds, text_embeds, model.temperature, config.variant, config.loss_reduction, text_group_ids,
        pair_index,
    )  # fmt: skip
    return MedBindLossOutput(
        loss=loss, tmcl_loss=tmcl, emcl_loss=emcl, cxr_embeds=cxr_embeds, ecg_embeds=ecg_embeds, text_embeds=text_embeds
    )


def batch_loss(
    model: nn.Module, batch: Mapping[str, torch.Tensor], loss_model: nn.Module | None = None
) -> MedBindLossOutput:
    """Embed a training batch (`MedBindPretrainingCollator`'s output: `LOSS_INPUTS` go to the loss, the rest to
    `model`) and take its MEDBind loss. `model` may be the training wrapper (DDP, FSDP) around the bare `MedBindModel`
    `loss_model`, whose temperature and config the loss reads (default: `model`).
    """
    outputs = model(**{name: value for name, value in batch.items() if name not in LOSS_INPUTS})
    embeds = (outputs.cxr_embeds, outputs.ecg_embeds, outputs.text_embeds)
    loss_model = model if loss_model is None else loss_model
    return embeddings_loss(loss_model, *embeds, batch.get("text_group_ids"), batch.get("pair_index"))


def _rows(embeds: torch.Tensor | None) -> int:
    return 0 if embeds is None else embeds.shape[0]


def _paired_emcl(
    cxr_embeds: torch.Tensor | None,
    ecg_embeds: torch.Tensor | None,
    pair_index: torch.Tensor | None,
    temperature: float | torch.Tensor,
    reduction: str,
) -> torch.Tensor | None:
    """EMCL over the rows `pair_index` pairs; None without both modalities."""
    if pair_index is not None and pair_index.numel() > 0 and (cxr_embeds is None or ecg_embeds is None):
        raise ValueError("pair_index was given but the batch lacks CXRs or ECGs to pair")
    if cxr_embeds is None or ecg_embeds is None:
        return None
    if pair_index is None:
        pair_index = torch.zeros(0, 2, dtype=torch.long, device=cxr_embeds.device)
    # n: the paper's batch holds n of each modality; with unequal counts the pairs come from the larger.
    batch_size = max(cxr_embeds.shape[0], ecg_embeds.shape[0])
    return emcl_loss(cxr_embeds[pair_index[:, 0]], ecg_embeds[pair_index[:, 1]], batch_size, temperature, reduction)
