"""Saved tiny model folders (random weights) for fast tests: MedBind as `pretrain.py` leaves it, minus the training,
and a CLIP baseline."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

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
# The towers of the CLIP-style baselines: one small layer each.
TOWER = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
VISION = {**TOWER, "image_size": 32, "patch_size": 8}
TINY_IMAGE_SIZE = MedBindConfig.from_preset("tiny").cxr_config.image_size  # what a tiny model's processor resizes to


def tiny_model(**overrides) -> MedBindModel:
    """A tiny-preset MedBind with the random weights of seed 0, in eval mode (`MedBindConfig.from_preset` overrides)."""
    torch.manual_seed(0)
    return MedBindModel(MedBindConfig.from_preset("tiny", **overrides)).eval()


def save_tiny_medbind(folder: Path, **overrides) -> Path:
    """Save a tiny-preset model (`MedBindConfig.from_preset("tiny", **overrides)`, e.g. `variant="ecg-clip"`) and the
    processor `MedBindProcessor.from_config` builds for it into `folder` (created); returns `folder`."""
    model = tiny_model(**overrides)
    processor = MedBindProcessor.from_config(model.config, train_wordpiece_tokenizer(CORPUS * 4, vocab_size=200))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def save_tiny_clip(folder: Path) -> Path:
    """A random CLIPModel with a CLIPTokenizer of letters (a BPE vocabulary without merges) and its processor."""
    folder.mkdir(parents=True)
    letters = list("abcdefghijklmnopqrstuvwxyz.,")
    vocab = {token: index for index, token in enumerate(letters + [f"{letter}</w>" for letter in letters])}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    special = {"bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"], "pad_token_id": 0}
    text = {**TOWER, **special, "vocab_size": len(vocab), "max_position_embeddings": 64}
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=VISION, projection_dim=8)).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor, tokenizer).save_pretrained(folder)
    return folder
