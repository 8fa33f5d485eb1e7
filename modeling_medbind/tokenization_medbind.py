"""Report text for MedBind: the paper's 100-word truncation and the BERT tokenizer.

The paper tokenises every report with BioBERT (`dmis-lab/biobert-v1.1`) after cutting it to its first 100 words.
[`load_text_tokenizer`] loads it, or a local tokenizer folder (offline, one trained by
`medbind_training.tokenizer.train_wordpiece_tokenizer`), with a clear error when a Hub identifier cannot be reached.
"""

from __future__ import annotations

import os

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from .configuration_medbind import MAX_WORDS
from .hub_loading import hub_offline, load_pretrained

BIOBERT_IDENTIFIER = "dmis-lab/biobert-v1.1"


def truncate_words(text: str, max_words: int = MAX_WORDS, name: str = "report") -> str:
    """Keep the first `max_words` whitespace-separated words of a report, joined by single spaces.

    The paper truncates every report to its first 100 words before tokenising (its method, the text encoder).
    `name` is how error messages name the report (e.g. `"report 3 of the batch"`).
    """
    if max_words < 1:
        raise ValueError(f"max_words must be at least 1, got {max_words}")
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a string, got {type(text).__name__}")
    words = text.split()
    if not words:
        raise ValueError(f"{name} is empty or whitespace-only ({text!r}); every sample needs a report text")
    return " ".join(words[:max_words])


def load_text_tokenizer(identifier: str | os.PathLike = BIOBERT_IDENTIFIER, **kwargs) -> PreTrainedTokenizerBase:
    """Load the report tokenizer from a local directory or a Hub identifier (BioBERT by default).

    `HF_HUB_OFFLINE` is read when this is called (huggingface_hub reads it once, at import), so setting it in a
    running process still stops any download attempt. `**kwargs` go to `AutoTokenizer.from_pretrained`.

    Raises:
        FileNotFoundError: the identifier is neither a local tokenizer directory nor reachable on the Hub (offline
            mode, no network or unknown id); the message names the identifier and `HF_HUB_OFFLINE`.
    """
    if str(identifier) == BIOBERT_IDENTIFIER:
        # BioBERT v1.1 is cased but ships no tokenizer_config.json, and BertTokenizer lower-cases by default.
        kwargs.setdefault("do_lower_case", False)
    local_files_only = hub_offline() or kwargs.pop("local_files_only", False)
    return load_pretrained(
        identifier,
        lambda: AutoTokenizer.from_pretrained(identifier, local_files_only=local_files_only, **kwargs),
        "the text tokenizer",
        "Pass a local directory instead, e.g. one written by tokenizer.save_pretrained(path).",
    )
