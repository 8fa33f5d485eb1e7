"""A saved tiny MedBind folder (random weights): what `pretrain.py` leaves, minus the training, for fast tests."""

from __future__ import annotations

from pathlib import Path

import torch

from medbind_training.tokenizer import train_wordpiece_tokenizer

from modeling_medbind import MedBindConfig, MedBindModel, MedBindProcessor

# The vocabulary's corpus: the labels, templates and reports the tests use, so that they tokenise to words.
CORPUS = [
    "This ECG shows myocardial infarction.",
    "This ECG shows normal sinus rhythm.",
    "This ECG shows atrial fibrillation.",
    "Findings suggesting pneumonia.",
    "Findings suggesting cardiomegaly.",
    "No evidence of pneumonia.",
    "Heart size is normal and the lungs are clear.",
    "Sinus rhythm. Acute inferior myocardial infarction.",
]


def save_tiny_medbind(folder: Path, **overrides) -> Path:
    """
    Save a tiny-preset model and the processor `MedBindProcessor.from_config` builds for it into `folder`.

    Args:
        folder: where to save (created).
        **overrides: `MedBindConfig.from_preset("tiny", ...)` overrides, e.g. `variant="ecg-clip"`.

    Returns:
        `folder`.
    """
    torch.manual_seed(0)
    model = MedBindModel(MedBindConfig.from_preset("tiny", **overrides)).eval()
    processor = MedBindProcessor.from_config(model.config, train_wordpiece_tokenizer(CORPUS * 4, vocab_size=200))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
