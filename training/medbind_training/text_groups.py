"""Which reports of a batch are identical: the text-group ids TMCL (the paper's text-modality contrastive loss) takes
as positives; the collator computes them, `medbind_training.losses.tmcl_loss` compares them (training only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from modeling_medbind.tokenization_medbind import truncate_words


def normalize_report(text: str, max_words: int, name: str = "report") -> str:
    """The form of a report that decides whether two reports are "identical" for TMCL's positives.

    Normalisation = the model's own truncation to `max_words` words + whitespace collapsed to single spaces +
    lower case. Two reports whose first `max_words` words agree reach the encoder as the same words, so they are
    the same text for the loss; case and line breaks are formatting, not content. `max_words` is the processor's
    limit (`MedBindProcessor.max_words`); `name` is how error messages name the report.
    """
    return truncate_words(text, max_words=max_words, name=name).lower()


def text_group_ids(texts: Sequence[str], max_words: int) -> list[int]:
    """Deterministic signed 64-bit ids such that identical normalised reports share one id (the model compares ids, not
    strings): the first 8 bytes of `blake2b(normalize_report(text))`, read as a signed little-endian integer so it fits
    `torch.int64`. Unlike Python's `hash`, it is the same across processes, runs and machines (no `PYTHONHASHSEED`
    salt), so ids computed by dataloader workers or stored in a dataset agree.
    """
    reports = [normalize_report(text, max_words=max_words, name=f"report {index}") for index, text in enumerate(texts)]
    digests = (hashlib.blake2b(report.encode("utf-8"), digest_size=8).digest() for report in reports)
    return [int.from_bytes(digest, "little", signed=True) for digest in digests]
