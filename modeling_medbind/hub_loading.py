"""One way to load pretrained pieces from the Hugging Face Hub, and one error when that cannot be done."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from transformers import BertModel

Loaded = TypeVar("Loaded")
_TRUE_STRINGS = {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """Whether `HF_HUB_OFFLINE` is set now. huggingface_hub reads it once, at import; reading it at each call
    lets a running process (a notebook, a test) switch it."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE_STRINGS


def load_pretrained(identifier: str | os.PathLike, load: Callable[[], Loaded], what: str, instead: str) -> Loaded:
    """
    Run `load`, turning the ways a Hub download fails (offline mode, no network, unknown id, nothing cached) into
    one message that names the identifier and `HF_HUB_OFFLINE`.

    Args:
        load: loads `identifier`; may raise OSError (transformers, huggingface_hub), RuntimeError or ValueError (timm).
        what, instead: what is being loaded ("the text backbone") and what the user can do instead, for the message.
    """
    try:
        return load()
    except (OSError, RuntimeError, ValueError) as error:
        reason = (
            "HF_HUB_OFFLINE is set, so nothing is downloaded, and it is not in the local cache"
            if hub_offline()
            else "it could not be downloaded (no network, or no such repository; HF_HUB_OFFLINE is not set)"
        )
        raise FileNotFoundError(
            f"could not load {what} {str(identifier)!r}: {reason} ({type(error).__name__}: {error}). {instead}"
        ) from error


def load_bert(identifier: str | os.PathLike, what: str, instead: str) -> BertModel:
    """A pretrained BERT without its pooler (the towers read [CLS] themselves), from the Hub cache or a folder."""
    return load_pretrained(
        identifier,
        lambda: BertModel.from_pretrained(identifier, add_pooling_layer=False, local_files_only=hub_offline()),
        what,
        instead,
    )


__all__ = ["hub_offline", "load_bert", "load_pretrained"]
