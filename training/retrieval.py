"""Retrieval metrics over embedding matrices: one recall@K for every direction (modality->text, CXR<->ECG)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

DEFAULT_KS = (1, 5, 10)


def recall_at_k(
    query_embeds: torch.Tensor, candidate_embeds: torch.Tensor, relevant: torch.Tensor, ks: Iterable[int] = DEFAULT_KS
) -> dict[int, float]:
    """
    Recall@K: the share of queries with at least one relevant candidate among their K most similar, in percent.

    Args:
        query_embeds: `[q, d]` L2-normalised embeddings (cosine similarity is their dot product).
        candidate_embeds: `[c, d]` L2-normalised embeddings.
        relevant: `[q, c]` boolean, True where the candidate is a correct answer for the query (for report
            retrieval: every candidate whose text is identical to the query's own report).
        ks: the K values; K larger than c counts every candidate.

    Returns:
        `{K: recall in percent}`.

    Raises:
        ValueError: when the shapes disagree or there is no query.
    """
    if relevant.shape != (query_embeds.shape[0], candidate_embeds.shape[0]):
        raise ValueError(
            f"relevant must be [queries, candidates] = {(query_embeds.shape[0], candidate_embeds.shape[0])}, "
            f"got {tuple(relevant.shape)}"
        )
    if query_embeds.shape[0] == 0:
        raise ValueError("recall_at_k needs at least one query")
    ks = sorted(set(ks))
    similarity = query_embeds.float() @ candidate_embeds.float().T
    top = similarity.topk(min(ks[-1], similarity.shape[1]), dim=1).indices
    hits = relevant.gather(1, top)
    return {k: 100.0 * hits[:, :k].any(dim=1).float().mean().item() for k in ks}


def chance_recall_at_k(relevant: torch.Tensor, ks: Iterable[int] = DEFAULT_KS) -> dict[int, float]:
    """
    Recall@K of a random ranking, in percent: the baseline a recall@K should be read against (identical reports make
    it far higher than K / candidates).

    For a query with r relevant among c candidates, a uniformly random top K misses all of them with probability
    prod_{i<K} (c - r - i) / (c - i).

    Args:
        relevant: `[q, c]` boolean relevance, as for `recall_at_k`.
        ks: the K values.

    Returns:
        `{K: expected recall in percent}`.
    """
    candidates = relevant.shape[1]
    hits = relevant.sum(dim=1).double()
    result = {}
    for k in sorted(set(ks)):
        steps = torch.arange(min(k, candidates), dtype=torch.float64)
        miss = ((candidates - hits[:, None] - steps).clamp(min=0) / (candidates - steps)).prod(dim=1)
        result[k] = 100.0 * (1.0 - miss).mean().item()
    return result


def same_group(query_groups: torch.Tensor, candidate_groups: torch.Tensor) -> torch.Tensor:
    """`[q, c]` relevance of candidates sharing the query's group id (identical report text)."""
    return query_groups[:, None] == candidate_groups[None, :]


def pair_relevance(pairs: Sequence[tuple[int, int]]) -> tuple[list[int], list[int], torch.Tensor]:
    """
    Queries, candidates and relevance for CXR -> ECG retrieval over visit pairs.

    Args:
        pairs: (CXR row, ECG row) pairs; a CXR may pair with several ECGs, any of which is then a hit.

    Returns:
        `(cxr_rows, ecg_rows, relevant)`: the distinct CXR rows (queries), the distinct ECG rows (candidates) and
        the `[len(cxr_rows), len(ecg_rows)]` relevance; transpose it for ECG -> CXR.
    """
    cxr_rows = sorted({c for c, _ in pairs})
    ecg_rows = sorted({e for _, e in pairs})
    cxr_index = {row: i for i, row in enumerate(cxr_rows)}
    ecg_index = {row: i for i, row in enumerate(ecg_rows)}
    relevant = torch.zeros(len(cxr_rows), len(ecg_rows), dtype=torch.bool)
    for c, e in pairs:
        relevant[cxr_index[c], ecg_index[e]] = True
    return cxr_rows, ecg_rows, relevant


def flat_recalls(direction: str, recalls: dict[int, float], name: str = "recall") -> dict[str, float]:
    """`{"cxr_to_text/recall@1": ...}`: the flat keys of `results.json` and the Trainer's logs (`name="chance"`
    gives the random-ranking baseline's keys, `cxr_to_text/chance@1`)."""
    return {f"{direction}/{name}@{k}": value for k, value in recalls.items()}


__all__ = ["DEFAULT_KS", "chance_recall_at_k", "flat_recalls", "pair_relevance", "recall_at_k", "same_group"]
