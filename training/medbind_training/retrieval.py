"""Retrieval recall@K over embedding matrices: one implementation for every direction (modality->text, CXR<->ECG).

Relevance is given by group ids: a candidate is a correct answer for a query when their ids are equal (for report
retrieval, the id of the report's normalised text, so identical reports are all hits; for CXR<->ECG retrieval over
disjoint visit pairs, the pair's number). Group ids keep relevance at O(q + c) memory where a boolean matrix would
be q x c, and the similarity matrix is never held whole: queries are scored in blocks of `block_elements` entries,
on the accelerator when the embeddings are sent there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

RECALL_KS = (1, 5, 10)  # the recall cut-offs every report of MedBind uses (method.md, Evaluation)
BLOCK_ELEMENTS = 2**25  # similarity entries scored at once: 128 MiB of float32 per block, whatever the gallery size


def miss_probability(total: torch.Tensor, marked: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """
    Probability that `draws` items taken uniformly without replacement from `total` items, `marked` of them marked,
    include no marked item: `prod_{i < draws} (total - marked - i) / (total - i)` (1 when `draws` <= 0).

    Args:
        total, marked, draws: integer tensors of one shape (broadcastable), `0 <= marked <= total`.

    Returns:
        float64 tensor of that shape.
    """
    total, marked, draws = (value.to(torch.float64) for value in torch.broadcast_tensors(total, marked, draws))
    steps = torch.arange(int(draws.max().clamp(min=0).item()), dtype=torch.float64, device=total.device)
    factors = (total[..., None] - marked[..., None] - steps).clamp(min=0) / (total[..., None] - steps).clamp(min=1)
    return torch.where(steps < draws[..., None], factors, torch.ones_like(factors)).prod(dim=-1)


def hit_probability(scores: torch.Tensor, relevant: torch.Tensor, ks: Sequence[int] = RECALL_KS) -> torch.Tensor:
    """
    For each query, the probability that a relevant candidate ranks among its K best, ties broken uniformly at random.

    Let s* be the best score of a relevant candidate, g the number of candidates scoring strictly above s*, and t the
    number scoring exactly s*, r of them relevant. The first relevant candidate then ranks g + j, where j is the
    position of the first of r marked items among t shuffled ones:

        P(hit@K) = 1 - prod_{i < K - g} (t - r - i) / (t - i)          (0 when g >= K)

    Without ties this is 1 when the best relevant candidate ranks within K and 0 otherwise; a model that scores every
    candidate alike gets exactly the chance level (`chance_recall_at_k`), not 0 or 100. A query without a relevant
    candidate never hits.

    Args:
        scores: `[q, c]` similarities, higher is closer.
        relevant: `[q, c]` boolean.
        ks: the cut-offs.

    Returns:
        `[q, len(ks)]` float64 probabilities.
    """
    best = scores.masked_fill(~relevant, float("-inf")).amax(dim=1, keepdim=True)
    above = (scores > best).sum(dim=1)
    tied = scores == best
    num_tied, relevant_tied = tied.sum(dim=1), (tied & relevant).sum(dim=1)
    has_relevant = relevant.any(dim=1)
    columns = []
    for k in ks:
        hit = 1.0 - miss_probability(num_tied, relevant_tied, k - above)
        columns.append(torch.where(has_relevant & (above < k), hit, torch.zeros_like(hit)))
    return torch.stack(columns, dim=1)


def recall_at_k(
    query_embeds: torch.Tensor,
    candidate_embeds: torch.Tensor,
    query_groups: torch.Tensor,
    candidate_groups: torch.Tensor,
    ks: Iterable[int] = RECALL_KS,
    device: torch.device | str | None = None,
    block_elements: int = BLOCK_ELEMENTS,
) -> dict[int, float]:
    """
    Recall@K: the share of queries with a relevant candidate among their K most similar, in percent (ties broken
    at random, in expectation: `hit_probability`).

    Memory: the two embedding matrices plus one block of `block_elements` similarities (about 12 bytes per entry
    with the masks), never the `[q, c]` matrix.

    Args:
        query_embeds: `[q, d]` L2-normalised embeddings (cosine similarity is their dot product).
        candidate_embeds: `[c, d]` L2-normalised embeddings.
        query_groups: `[q]` integer ids; candidate j is relevant for query i when `candidate_groups[j] ==
            query_groups[i]`.
        candidate_groups: `[c]` integer ids.
        ks: the cut-offs; K larger than c counts every candidate.
        device: where to score (default: the queries' device); the result is the same on any device.
        block_elements: similarity entries per block.

    Returns:
        `{K: recall in percent}`.

    Raises:
        ValueError: when the shapes disagree or there is no query.
    """
    if query_groups.shape != query_embeds.shape[:1] or candidate_groups.shape != candidate_embeds.shape[:1]:
        raise ValueError(
            f"one group id per row expected: queries {tuple(query_embeds.shape)} with {tuple(query_groups.shape)} "
            f"ids, candidates {tuple(candidate_embeds.shape)} with {tuple(candidate_groups.shape)} ids"
        )
    if query_embeds.shape[0] == 0:
        raise ValueError("recall_at_k needs at least one query")
    ks = sorted(set(ks))
    device = torch.device(device) if device is not None else query_embeds.device
    candidates = candidate_embeds.to(device, torch.float32)
    candidate_groups = candidate_groups.to(device)
    rows = max(1, block_elements // max(1, candidates.shape[0]))
    hits = torch.zeros(len(ks), dtype=torch.float64, device=device)
    for start in range(0, query_embeds.shape[0], rows):
        queries = query_embeds[start : start + rows].to(device, torch.float32)
        relevant = query_groups[start : start + rows].to(device)[:, None] == candidate_groups[None, :]
        hits += hit_probability(queries @ candidates.T, relevant, ks).sum(dim=0)
    return {k: 100.0 * value / query_embeds.shape[0] for k, value in zip(ks, hits.tolist(), strict=True)}


def chance_recall_at_k(
    query_groups: torch.Tensor, candidate_groups: torch.Tensor, ks: Iterable[int] = RECALL_KS
) -> dict[int, float]:
    """
    Recall@K of a random ranking, in percent: the baseline a recall@K should be read against (identical reports make
    it far higher than K / candidates). For a query with r relevant among c candidates, a uniformly random top K
    misses all of them with probability `prod_{i<K} (c - r - i) / (c - i)`.

    Args:
        query_groups, candidate_groups: group ids, as for `recall_at_k`.
        ks: the cut-offs.

    Returns:
        `{K: expected recall in percent}`.
    """
    values, counts = torch.unique(candidate_groups, return_counts=True)
    position = torch.searchsorted(values, query_groups).clamp(max=len(values) - 1)
    num_relevant = torch.where(values[position] == query_groups, counts[position], torch.zeros_like(position))
    total = torch.tensor(len(candidate_groups))
    return {
        k: 100.0 * (1.0 - miss_probability(total, num_relevant, torch.tensor(k))).mean().item() for k in sorted(set(ks))
    }


def pair_groups(pairs: Sequence[tuple[int, int]]) -> tuple[list[int], list[int], torch.Tensor]:
    """
    Queries, candidates and their group ids for CXR <-> ECG retrieval over disjoint visit pairs.

    Args:
        pairs: (CXR row, ECG row) pairs in which every row appears once (`medbind_training.data.pair_rows`).

    Returns:
        `(cxr_rows, ecg_rows, groups)`: row i of each list belongs to pair i, whose group id is i (`groups`, `[m]`).

    Raises:
        ValueError: when a CXR or an ECG appears in two pairs (relevance would no longer be one-to-one).
    """
    cxr_rows, ecg_rows = [c for c, _ in pairs], [e for _, e in pairs]
    if len(set(cxr_rows)) < len(cxr_rows) or len(set(ecg_rows)) < len(ecg_rows):
        raise ValueError("pair_groups needs disjoint pairs (each CXR and each ECG once): use pair_rows / first_links")
    return cxr_rows, ecg_rows, torch.arange(len(pairs))


def recall_keys(prefix: str, recalls: dict[int, float], name: str = "recall") -> dict[str, float]:
    """`{"{prefix}/recall@1": ...}`: the flat keys of `results.json` and the Trainer's logs (`name="chance"` gives
    the random-ranking baseline's keys, `{prefix}/chance@1`)."""
    return {f"{prefix}/{name}@{k}": value for k, value in recalls.items()}


__all__ = [
    "BLOCK_ELEMENTS",
    "RECALL_KS",
    "chance_recall_at_k",
    "hit_probability",
    "miss_probability",
    "pair_groups",
    "recall_at_k",
    "recall_keys",
]
