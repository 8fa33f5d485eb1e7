"""Retrieval recall@K in percent, ties broken at random in expectation, as an `evaluate` module."""

import datasets
import evaluate
import torch

from medbind_training.retrieval import RECALL_KS, hit_probability

_DESCRIPTION = """
Recall@K of retrieval: the share of queries with at least one relevant candidate among their K highest-scoring
candidates, in percent. Several relevant candidates per query are allowed (identical reports all count as hits).
Ties are broken uniformly at random, in expectation: a relevant candidate tied with t - 1 others is within the top K
with the probability a random order would give it, so a constant score yields exactly the chance level instead of
0 or 100. A query with no relevant candidate counts as a miss. For galleries too large to hold a similarity row per
query, use `medbind_training.retrieval.recall_at_k` on the embeddings (same arithmetic, blockwise).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): per query, the similarity to every candidate (same length for all).
    references (`list` of `list` of `int`): per query, the indices of its relevant candidates.
    k (`list` of `int`, default [1, 5, 10]): the cut-offs.
Returns:
    recall@K (`float`) for each K: in percent.
Examples:
    >>> metric = evaluate.load("recall_at_k.py")
    >>> metric.compute(predictions=[[0.9, 0.1, 0.0], [0.9, 0.1, 0.0]], references=[[0], [2]], k=[1, 2])
    {'recall@1': 50.0, 'recall@2': 50.0}
"""

_CITATION = """
@inproceedings{gao2024medbind,
  title={MEDBind: Unifying Language and Multimodal Medical Data Embeddings},
  author={Gao, Yuan and Kim, Sangwook and Austin, David E and McIntosh, Chris},
  booktitle={Medical Image Computing and Computer Assisted Intervention (MICCAI)},
  year={2024}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RecallAtK(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2403.12894"],
        )

    def _compute(self, predictions, references, k=RECALL_KS):
        scores = torch.tensor(predictions, dtype=torch.float64)
        if scores.ndim != 2 or scores.shape[0] == 0:
            raise ValueError("recall@K needs one equal-length similarity row per query")
        relevant = torch.zeros_like(scores, dtype=torch.bool)
        for query, indices in enumerate(references):
            relevant[query, list(indices)] = True
        ks = sorted(set(k))
        hits = hit_probability(scores, relevant, ks).mean(dim=0)
        return {f"recall@{cutoff}": 100.0 * value for cutoff, value in zip(ks, hits.tolist(), strict=True)}
