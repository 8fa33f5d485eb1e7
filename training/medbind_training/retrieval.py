"""Retrieval recall@K over embedding matrices: one implementation for every direction (modality->text, CXR<->ECG).

Relevance is given by group ids: a candidate is a correct answer for a query when their ids are equal (for report
retrieval, the id of the report's normalised text, so identical reports are all hits; for CXR<->ECG retrieval over
disjoint visit pairs, the pair's number). Group ids keep relevance at O(q + c) memory where a boolean matrix would
be q x c, and the similarity matrix is never held whole: queries are scored in blocks of `block_elements` entries,
on the accelerator when the embeddings are sent there.

The paper does not state its retrieval protocol; `RetrievalProtocol` names the two choices that move the numbers
most (what counts as a hit, and how large the gallery is) and `protocol_recall_at_k` scores under any of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

RECALL_KS = (1, 5, 10)  # the recall cut-offs of the paper's retrieval results (Table 2, Figure 2)
BLOCK_ELEMENTS = 2**25  # similarity entries scored at once: 128 MiB of float32 per block, whatever the gallery size
POSITIVE_RULES = ("identical_text", "instance")
WHOLE_SPLIT = "all"  # `--retrieval_gallery all`: every row of the split is a candidate


def miss_probability(total: torch.Tensor, marked: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """Probability that `draws` items taken uniformly without replacement from `total` items, `marked` of them marked,
    include no marked item: `prod_{i < draws} (total - marked - i) / (total - i)` (1 when `draws` <= 0), as float64;
    the three integer tensors broadcast, `0 <= marked <= total`.
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
    candidate never hits. `scores` and `relevant` are `[q, c]` (higher is closer); returns `[q, len(ks)]` float64.
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
    """Recall@K: the share of queries with a relevant candidate among their K most similar, in percent (ties broken
    at random, in expectation: `hit_probability`); K larger than c counts every candidate.

    The `[q, d]` and `[c, d]` embeddings are L2-normalised (cosine similarity is their dot product); candidate j is
    relevant for query i when `candidate_groups[j] == query_groups[i]`. Scored on `device` (default: the queries'; the
    result is the same on any), in blocks: the two embedding matrices plus one block of `block_elements` similarities
    (about 12 bytes per entry with the masks), never the `[q, c]` matrix.
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
    """Recall@K of a random ranking, in percent: the baseline a recall@K should be read against (identical reports make
    it far higher than K / candidates). For a query with r relevant among c candidates, a uniformly random top K
    misses all of them with probability `prod_{i<K} (c - r - i) / (c - i)`.
    """
    values, counts = torch.unique(candidate_groups, return_counts=True)
    position = torch.searchsorted(values, query_groups).clamp(max=len(values) - 1)
    num_relevant = torch.where(values[position] == query_groups, counts[position], torch.zeros_like(position))
    total = torch.tensor(len(candidate_groups))
    return {
        k: 100.0 * (1.0 - miss_probability(total, num_relevant, torch.tensor(k))).mean().item() for k in sorted(set(ks))
    }


@dataclass(frozen=True)
class RetrievalProtocol:
    """How a retrieval is scored; the paper does not say (Section 4.2 reports Recall@K only), so every run writes its
    protocol beside its recalls (`describe`).

    Args:
        positives: `"identical_text"`: every candidate whose report is identical (after the processor's
            normalisation) to the query's own is a hit, as TMCL treats them as positives; `"instance"`: only the
            query's own report is, and identical copies of it tie with it (ranked at random, in expectation).
        gallery: None: every row of the split is a candidate; N: queries are ranked within fixed-size galleries of
            N rows (each of `draws` seeded permutations cut into galleries of N, so every gallery holds each of its
            queries' own candidate), recalls averaged over all galleries; one as large as the split is the whole split.
    """

    positives: str = "identical_text"
    gallery: int | None = None
    draws: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.positives not in POSITIVE_RULES:
            raise ValueError(f"retrieval positives must be one of {POSITIVE_RULES}, got {self.positives!r}")
        if self.gallery is not None and self.gallery < 2:
            raise ValueError(f"a retrieval gallery needs at least 2 candidates, got {self.gallery}")
        if self.draws < 1:
            raise ValueError(f"fixed-size galleries need at least 1 draw, got {self.draws}")

    @classmethod
    def from_arguments(cls, positives: str, gallery: str | int, draws: int = 10, seed: int = 0) -> RetrievalProtocol:
        """The protocol of command-line values: `gallery` is `"all"` or a number of candidates."""
        if str(gallery) == WHOLE_SPLIT:
            return cls(positives, None, draws, seed)
        try:
            size = int(gallery)
        except ValueError:
            raise ValueError(f"retrieval gallery must be {WHOLE_SPLIT!r} or a number of candidates, got {gallery!r}")
        return cls(positives, size, draws, seed)

    @classmethod
    def from_results(cls, results: Mapping[str, Any]) -> RetrievalProtocol:
        """The protocol a results.json was measured under (its `protocol/...` keys; none: the default's)."""
        return cls.from_arguments(
            results.get("protocol/retrieval_positives", cls.positives),
            results.get("protocol/retrieval_gallery", WHOLE_SPLIT),
            int(results.get("protocol/retrieval_gallery_draws", cls.draws)),
            int(results.get("protocol/retrieval_seed", cls.seed)),
        )

    def sentence(self) -> str:
        """The protocol in words, for the model card."""
        hit = (
            "every report identical to the query's own (after the processor's word limit and whitespace / case "
            "normalisation) counts as a hit"
            if self.positives == "identical_text"
            else "only the query's own report counts as a hit (identical copies tie with it)"
        )
        gallery = (
            "the candidates are every row of the evaluated split"
            if self.gallery is None
            else f"queries are ranked within seeded galleries of {self.gallery} rows, averaged over {self.draws} draws "
            f"(seed {self.seed})"
        )
        return (
            f"Retrieval protocol (the paper does not state one): {hit}; {gallery} "
            f"(`--retrieval_positives {self.positives} --retrieval_gallery "
            f"{WHOLE_SPLIT if self.gallery is None else self.gallery}`)."
        )

    def describe(self) -> dict[str, str]:
        """The `protocol/...` keys of `results.json` (strings, so that no reader takes them for a metric)."""
        gallery = WHOLE_SPLIT if self.gallery is None else str(self.gallery)
        described = {"protocol/retrieval_positives": self.positives, "protocol/retrieval_gallery": gallery}
        if self.gallery is not None:
            described["protocol/retrieval_gallery_draws"] = str(self.draws)
            described["protocol/retrieval_seed"] = str(self.seed)
        return described


def random_galleries(num_rows: int, size: int, draws: int, seed: int = 0) -> torch.Tensor:
    """Fixed-size galleries of row indices: each draw is a seeded permutation of the rows cut into `num_rows // size`
    consecutive galleries of `size` (the `num_rows % size` rows left over sit that draw out):
    `[draws * (num_rows // size), size]` int64 row indices.
    """
    if not 1 <= size <= num_rows:
        raise ValueError(f"a gallery of {size} rows cannot be drawn from {num_rows} rows")
    generator = torch.Generator().manual_seed(seed)
    usable = num_rows // size * size
    return torch.cat([torch.randperm(num_rows, generator=generator)[:usable].view(-1, size) for _ in range(draws)])


def gallery_recall_at_k(
    query_embeds: torch.Tensor,
    candidate_embeds: torch.Tensor,
    groups: torch.Tensor,
    galleries: torch.Tensor,
    ks: Iterable[int] = RECALL_KS,
    device: torch.device | str | None = None,
    block_elements: int = BLOCK_ELEMENTS,
) -> tuple[dict[int, float], dict[int, float]]:
    """Recall@K and its chance level when each query is ranked only among the candidates of its gallery: rows are
    aligned (query i's own candidate is candidate i), and in a gallery of rows g every query `g[j]` is ranked
    against the candidates `g`. Both are the mean over every (gallery, query), in percent. Candidate j is relevant
    for query i when `groups[j] == groups[i]`; `galleries` is `[G, N]` (`random_galleries`), scored in blocks of
    whole galleries.
    """
    ks = sorted(set(ks))
    device = torch.device(device) if device is not None else query_embeds.device
    size = galleries.shape[1]
    per_block = max(1, block_elements // (size * size))
    hits = torch.zeros(len(ks), dtype=torch.float64, device=device)
    chances = torch.zeros(len(ks), dtype=torch.float64, device=device)
    all_queries, all_candidates = query_embeds.to(device, torch.float32), candidate_embeds.to(device, torch.float32)
    groups = groups.to(device)
    for start in range(0, galleries.shape[0], per_block):
        rows = galleries[start : start + per_block].to(device)
        queries, candidates, gallery_groups = all_queries[rows], all_candidates[rows], groups[rows]
        relevant = (gallery_groups[:, :, None] == gallery_groups[:, None, :]).flatten(0, 1)
        scores = (queries @ candidates.transpose(1, 2)).flatten(0, 1)
        hits += hit_probability(scores, relevant, ks).sum(dim=0)
        total, marked = torch.tensor(size, device=device), relevant.sum(dim=1)
        misses = [miss_probability(total, marked, torch.tensor(k, device=device)) for k in ks]
        chances += (1.0 - torch.stack(misses, dim=1)).sum(dim=0)
    count = galleries.numel()
    return (
        {k: 100.0 * value / count for k, value in zip(ks, hits.tolist(), strict=True)},
        {k: 100.0 * value / count for k, value in zip(ks, chances.tolist(), strict=True)},
    )


def protocol_recall_at_k(
    query_embeds: torch.Tensor,
    candidate_embeds: torch.Tensor,
    text_groups: torch.Tensor,
    protocol: RetrievalProtocol = RetrievalProtocol(),
    ks: Iterable[int] = RECALL_KS,
    device: torch.device | str | None = None,
) -> tuple[dict[int, float], dict[int, float]]:
    """Recall@K and its chance level of row-aligned queries and candidates (query i's own candidate is candidate i)
    under a `RetrievalProtocol`. The default protocol is exactly `recall_at_k` and `chance_recall_at_k` with
    `text_groups` as both group ids: `[n]` ids equal where two rows' reports are identical (`text_group_ids`; for
    visit pairs, the pair number, which makes the two positive rules agree).
    """
    num_rows = query_embeds.shape[0]
    if candidate_embeds.shape[0] != num_rows or text_groups.shape != (num_rows,):
        raise ValueError(
            f"row-aligned queries, candidates and ids expected: {tuple(query_embeds.shape)}, "
            f"{tuple(candidate_embeds.shape)}, {tuple(text_groups.shape)}"
        )
    groups = text_groups
    if protocol.positives == "instance":
        groups = torch.arange(num_rows, device=text_groups.device)
        # Identical reports reach the text tower as the same input: score them exactly alike, whatever rounding
        # their batches brought, so the query's own copy ties with the others instead of winning by noise.
        candidate_embeds = candidate_embeds[first_of_group(text_groups)]
    if protocol.gallery is None or protocol.gallery >= num_rows:
        recalls = recall_at_k(query_embeds, candidate_embeds, groups, groups, ks, device=device)
        return recalls, chance_recall_at_k(groups.cpu(), groups.cpu(), ks)
    galleries = random_galleries(num_rows, protocol.gallery, protocol.draws, protocol.seed)
    return gallery_recall_at_k(query_embeds, candidate_embeds, groups, galleries, ks, device)


def first_of_group(groups: torch.Tensor) -> torch.Tensor:
    """`[n]` the index of the first row carrying each row's group id (row i itself when it is the first)."""
    values, inverse = torch.unique(groups, return_inverse=True)
    first = torch.full((len(values),), len(groups), dtype=torch.long, device=groups.device)
    first.scatter_reduce_(0, inverse, torch.arange(len(groups), device=groups.device), reduce="amin")
    return first[inverse]


def pair_groups(pairs: Sequence[tuple[int, int]]) -> tuple[list[int], list[int], torch.Tensor]:
    """`(cxr_rows, ecg_rows, groups)` for CXR <-> ECG retrieval over (CXR row, ECG row) pairs in which every row appears
    once (`medbind_training.data.pair_rows`): row i of each list belongs to pair i, whose group id is i.
    """
    cxr_rows, ecg_rows = [c for c, _ in pairs], [e for _, e in pairs]
    if len(set(cxr_rows)) < len(cxr_rows) or len(set(ecg_rows)) < len(ecg_rows):
        raise ValueError("pair_groups needs disjoint pairs (each CXR and each ECG once): use pair_rows / first_links")
    return cxr_rows, ecg_rows, torch.arange(len(pairs))


def recall_keys(prefix: str, recalls: dict[int, float], name: str = "recall") -> dict[str, float]:
    """`{"{prefix}/recall@1": ...}`: the flat keys of `results.json` and the Trainer's logs (`name="chance"` gives
    the random-ranking baseline's keys, `{prefix}/chance@1`)."""
    return {f"{prefix}/{name}@{k}": value for k, value in recalls.items()}
