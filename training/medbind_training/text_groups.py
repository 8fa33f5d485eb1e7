"""Which reports of a batch are identical: the text-group ids TMCL (the paper's text-modality contrastive loss) takes
as positives; the collator computes them, `medbind_training.losses.tmcl_loss` compares them (training only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from modeling_medbind.tokenization_medbind import truncate_words


def text_group_ids(texts: Sequence[str], max_words: int) -> list[int]:
    """Deterministic signed 64-bit ids, equal exactly where two normalised reports are (the model compares ids, not
    strings). A report is normalised as the model reads it, its first `max_words` words (the processor's limit) with
    whitespace collapsed, then lower-cased: case and line breaks are formatting, not content. The id is the first 8
    bytes of its `blake2b`, a signed little-endian integer (it fits `torch.int64`); unlike Python's `hash`, it is the
    same across processes, runs and machines (no `PYTHONHASHSEED` salt), so ids computed by dataloader workers or
    stored in a dataset agree.
    """
    reports = [truncate_words(text, max_words=max_words, name=f"report {i}").lower() for i, text in enumerate(texts)]
    digests = (hashlib.blake2b(report.encode("utf-8"), digest_size=8).digest() for report in reports)
    return [int.from_bytes(digest, "little", signed=True) for digest in digests]
