"""External checkpoints as baselines (training/medbind_training/baselines.py): one tiny random model per format."""

import importlib.util
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from tiny_medbind import CORPUS, TOWER, VISION, save_tiny_clip, save_tiny_medbind
from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

from medbind_training.baselines import (
    BaselineEmbedder,
    MedBindEncoder,
    OpenCLIPEncoder,
    TransformersDualEncoder,
    detect_format,
    load_baseline,
    load_baselines,
    parse_baselines,
    pooled_embedding,
    radiograph_rgb,
    task_embedder,
)
from medbind_training.embedding import Embedder
from medbind_training.tokenizer import train_wordpiece_tokenizer

REPORTS = ["No evidence of pneumonia.", "Findings suggesting pneumonia.",
           "Heart size is normal and the lungs are clear."]  # fmt: skip


def radiographs() -> list:
    """An 8-bit grayscale picture, a 16-bit array and an RGB picture: what the evaluation sets hold."""
    generator = np.random.default_rng(0)
    return [
        Image.fromarray(generator.integers(0, 256, (40, 48), dtype=np.uint8)),
        generator.integers(0, 65536, (48, 40), dtype=np.uint16),
        Image.fromarray(generator.integers(0, 256, (36, 36, 3), dtype=np.uint8)),
    ]


def assert_unit_rows(embeds: torch.Tensor, rows: int) -> None:
    assert embeds.dtype == torch.float32 and embeds.shape[0] == rows
    assert torch.allclose(embeds.norm(dim=-1), torch.ones(rows), atol=1e-5)


def save_tiny_siglip(folder: Path) -> Path:
    """A random SiglipModel and its processor (a small WordPiece tokenizer stands in for SigLIP's SentencePiece)."""
    tokenizer = train_wordpiece_tokenizer(CORPUS * 4, vocab_size=120)
    special = {"bos_token_id": tokenizer.cls_token_id, "eos_token_id": tokenizer.sep_token_id, "pad_token_id": 0}
    text = {**TOWER, **special, "vocab_size": len(tokenizer), "max_position_embeddings": 64}
    torch.manual_seed(0)
    SiglipModel(SiglipConfig(text_config=text, vision_config=VISION)).save_pretrained(folder)
    SiglipProcessor(SiglipImageProcessor(size={"height": 32, "width": 32}), tokenizer).save_pretrained(folder)
    return folder


def test_clip_folder_embeds_radiographs_and_reports_with_its_own_processor(tmp_path):
    folder = save_tiny_clip(tmp_path / "clip")
    baseline = load_baseline("clip", folder, batch_size=2)
    assert isinstance(baseline, TransformersDualEncoder) and baseline.format == "clip"
    assert baseline.modalities == ("cxr", "text")
    texts, images = baseline.embed_texts(REPORTS), baseline.embed_images(radiographs())
    assert_unit_rows(texts, 3)
    assert_unit_rows(images, 3)
    # the same numbers as the model fed by its own processor, the radiographs as 8-bit RGB
    inputs = baseline.processor(text=REPORTS, padding=True, truncation=True, return_tensors="pt")
    expected = pooled_embedding(baseline.model.get_text_features(**inputs))
    assert torch.allclose(texts, F.normalize(expected, dim=-1), atol=1e-5)
    pixels = baseline.processor(images=[radiograph_rgb(image) for image in radiographs()], return_tensors="pt")
    expected = pooled_embedding(baseline.model.get_image_features(**pixels))
    assert torch.allclose(images, F.normalize(expected, dim=-1), atol=1e-5)
    with pytest.raises(ValueError, match="embeds cxr, text, not ecg"):
        baseline.embed_ecgs([np.zeros((12, 1000))], sampling_rate=100)
    with pytest.raises(ValueError, match="not a CLIPModel or SiglipModel"):
        TransformersDualEncoder("medbind", save_tiny_medbind(tmp_path / "medbind"))


def test_siglip_folder_pads_text_to_its_positions_as_siglip_was_trained(tmp_path):
    baseline = load_baseline("siglip", save_tiny_siglip(tmp_path / "siglip"))
    assert baseline.format == "siglip" and baseline.modalities == ("cxr", "text")
    texts = baseline.embed_texts(REPORTS[:1])
    assert_unit_rows(texts, 1)
    assert_unit_rows(baseline.embed_images(radiographs()[:2]), 2)

    def embedded(**padding) -> torch.Tensor:
        inputs = baseline.processor(text=REPORTS[:1], truncation=True, return_tensors="pt", **padding)
        features = baseline.model.get_text_features(inputs["input_ids"], inputs["attention_mask"])
        return F.normalize(pooled_embedding(features), dim=-1)

    # SigLIP pools its last position: padded to max_length and unpadded embeddings differ, and the adapter pads
    assert torch.allclose(texts, embedded(padding="max_length", max_length=64), atol=1e-5)
    assert not torch.allclose(texts, embedded(padding=False), atol=1e-3)


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is None, reason='needs pip install "medbind[baselines]"')
def test_open_clip_folder_embeds_with_its_config_transform_and_tokenizer(tmp_path):
    import open_clip

    folder = tmp_path / "open_clip"
    folder.mkdir()
    config = {
        "model_cfg": {"embed_dim": 8,
                      "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "head_width": 8, "patch_size": 8},
                      "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}},
        "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    }  # fmt: skip
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    model = open_clip.CLIP(**config["model_cfg"]).eval()
    save_file(model.state_dict(), folder / "open_clip_model.safetensors")
    assert detect_format(folder) == "open_clip"
    baseline = load_baseline("biomedclip-like", folder)
    assert isinstance(baseline, OpenCLIPEncoder) and baseline.modalities == ("cxr", "text")
    texts = baseline.embed_texts(REPORTS)
    assert_unit_rows(texts, 3)
    # the saved weights were loaded (not a fresh random model), with the config's 24-token context
    tokens = open_clip.get_tokenizer(f"local-dir:{folder}")(REPORTS)
    assert tokens.shape == (3, 24)
    assert torch.allclose(texts, model.encode_text(tokens, normalize=True).detach(), atol=1e-5)
    images = baseline.embed_images(radiographs())
    assert_unit_rows(images, 3)
    # the config's own normalisation: mean 0.5, std 0.25 turns a black picture into -2
    black = baseline.transform(radiograph_rgb(np.zeros((40, 40), dtype=np.uint16)))
    assert black.shape == (3, 32, 32) and torch.allclose(black, torch.full_like(black, -2.0))


@pytest.mark.parametrize(
    ("variant", "modalities"),
    [("bd", ("cxr", "ecg", "text")), ("ecg-clip", ("ecg", "text")), ("cxr-clip", ("cxr", "text"))],
)
def test_medbind_folder_of_any_variant_embeds_the_towers_it_has(tmp_path, variant, modalities):
    folder = save_tiny_medbind(tmp_path / variant, variant=variant)
    baseline = load_baseline(variant, folder)
    assert isinstance(baseline, MedBindEncoder) and baseline.modalities == modalities
    texts = baseline.embed_texts(REPORTS)
    assert_unit_rows(texts, 3)
    inputs = baseline.processor(text=REPORTS, return_tensors="pt")
    assert torch.allclose(texts, pooled_embedding(baseline.model.get_text_features(**inputs)), atol=1e-5)
    ecgs = [np.random.default_rng(row).normal(size=(12, 500)).astype(np.float32) for row in range(2)]
    if "ecg" in modalities:
        assert_unit_rows(baseline.embed_ecgs(ecgs, sampling_rate=50), 2)
    else:
        with pytest.raises(ValueError, match="not ecg"):
            baseline.embed_ecgs(ecgs, sampling_rate=50)
    if "cxr" in modalities:
        assert_unit_rows(baseline.embed_images(radiographs()), 3)
    else:
        with pytest.raises(ValueError, match="not cxr"):
            baseline.embed_images(radiographs())


def test_pooled_embedding_takes_the_pooler_output_of_a_model_output_or_the_tensor():
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    tensor = torch.randn(2, 4)
    assert pooled_embedding(tensor) is tensor
    assert pooled_embedding(BaseModelOutputWithPooling(pooler_output=tensor)) is tensor


def test_radiographs_become_8_bit_rgb_whatever_their_depth():
    sixteen_bit = np.array([[0, 65535], [257, 32896]], dtype=np.uint16)
    rgb = np.asarray(radiograph_rgb(sixteen_bit))
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[..., 0].tolist() == [[0, 255], [1, 128]] and (rgb[..., 0] == rgb[..., 2]).all()
    with pytest.raises(FileNotFoundError, match="missing.png"):
        radiograph_rgb("missing.png")


def test_real_radiograph_files_are_read_for_every_format(tmp_path, shared_data):
    files = sorted(path for path in shared_data.rglob("*") if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm"))
    baseline = load_baseline("clip", save_tiny_clip(tmp_path / "clip"))
    assert_unit_rows(baseline.embed_images(files[:3]), 3)


def test_format_detection_and_its_errors(tmp_path):
    assert detect_format(save_tiny_medbind(tmp_path / "medbind")) == "medbind"
    with pytest.raises(FileNotFoundError, match="not found"):
        detect_format(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        detect_format(tmp_path / "empty")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type 'bert' has no baseline adapter"):
        load_baseline("bert", tmp_path / "bert")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        load_baseline("broken", tmp_path / "broken")


def test_baseline_arguments_are_name_equals_folder(tmp_path):
    folder = save_tiny_medbind(tmp_path / "nm", variant="nm")
    assert parse_baselines([f"nm={folder}", f"again={folder}"]) == {"nm": folder, "again": folder}
    assert list(load_baselines([f"MEDBind_NM={folder}"])) == ["MEDBind_NM"]
    with pytest.raises(ValueError, match="NAME=PATH"):
        parse_baselines([str(folder)])
    with pytest.raises(ValueError, match="given twice"):
        parse_baselines([f"nm={folder}", f"nm={folder}"])
    with pytest.raises(FileNotFoundError, match="--baseline x"):
        parse_baselines([f"x={tmp_path / 'absent'}"])


def test_task_embedder_embeds_dataset_rows_as_the_adapter_embeds_the_items(tmp_path):
    clip = load_baseline("clip", save_tiny_clip(tmp_path / "clip"))
    embedder = task_embedder(clip)
    assert isinstance(embedder, BaselineEmbedder) and embedder.modalities == ("cxr",)
    images = [Image.fromarray(np.full((40, 40), 40 * row, dtype=np.uint8)) for row in range(3)]
    dataset = datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()}))
    expected = clip.embed_images(images)
    assert torch.allclose(embedder.embed(dataset, "cxr"), expected, atol=1e-6)
    assert torch.allclose(embedder.embed_rows(dataset, [2, 0], "cxr"), expected[[2, 0]], atol=1e-6)
    assert torch.allclose(embedder.embed_texts(REPORTS), clip.embed_texts(REPORTS))
    with pytest.raises(ValueError, match="not ecg"):
        embedder.embed(datasets.Dataset.from_dict({"ecg_path": ["a"]}), "ecg")
    # a MedBind folder embeds through the evaluated model's own Embedder (its on-disk cache included)
    medbind = task_embedder(load_baseline("bd", save_tiny_medbind(tmp_path / "bd", variant="bd")), tmp_path / "cache")
    assert isinstance(medbind, Embedder) and medbind.cache_dir == tmp_path / "cache"
