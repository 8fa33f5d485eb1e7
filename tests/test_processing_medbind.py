"""Tests of modeling_medbind/processing_medbind.py: the composed processor, its saving and remote-code loading."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from timm.models import get_pretrained_cfg
from transformers import AutoProcessor

from medbind_training.tokenizer import train_wordpiece_tokenizer

from modeling_medbind import CANONICAL_LEAD_NAMES, MedBindConfig, MedBindModel
from modeling_medbind.feature_extraction_medbind import MedBindECGFeatureExtractor
from modeling_medbind.image_processing_medbind import MedBindImageProcessor
from modeling_medbind.processing_medbind import MedBindProcessor

REPORTS = [
    "Heart size is normal. The lungs are clear.",
    "Sinus rhythm. Left ventricular hypertrophy.",
    "heart size is  normal.\nThe lungs are clear.",
]


def ecg(seconds: float = 10.0, sampling_rate: int = 500) -> np.ndarray:
    time = np.arange(int(seconds * sampling_rate)) / sampling_rate
    return np.sin(2 * np.pi * 3 * time[None, :] + np.arange(12)[:, None])


def radiograph(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65535, (90, 70), dtype=np.uint16)


def make_processor(**kwargs) -> MedBindProcessor:
    tokenizer = train_wordpiece_tokenizer(REPORTS * 4, vocab_size=150)
    return MedBindProcessor(MedBindImageProcessor(), MedBindECGFeatureExtractor(), tokenizer, **kwargs)


@pytest.fixture(scope="module")
def processor() -> MedBindProcessor:
    return make_processor()


def test_all_three_modalities_give_every_model_input(processor):
    batch = processor(images=[radiograph(0), radiograph(1)], ecgs=[ecg(), ecg(4)], sampling_rate=500, text=REPORTS[:2],
                      return_tensors="pt")  # fmt: skip
    assert set(batch) == {"pixel_values", "ecg_values", "input_ids", "attention_mask"}
    assert batch["pixel_values"].shape == (2, 3, 224, 224)
    assert batch["ecg_values"].shape == (2, 12, 1000)
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].shape[0] == 2


def test_only_the_given_modality_is_returned(processor):
    assert set(processor(images=radiograph(0), return_tensors="pt")) == {"pixel_values"}
    assert set(processor(ecgs=ecg(), sampling_rate=500, return_tensors="pt")) == {"ecg_values"}


def test_parts_give_the_same_values_as_when_called_alone(processor):
    batch = processor(images=radiograph(0), ecgs=ecg(), sampling_rate=500, return_tensors="pt")
    alone = {**processor.image_processor(radiograph(0), return_tensors="pt"),
             **processor.feature_extractor(ecg(), sampling_rate=500, return_tensors="pt")}  # fmt: skip
    for key in ("pixel_values", "ecg_values"):
        torch.testing.assert_close(batch[key], alone[key], msg=key)


def test_text_is_cut_to_max_words_before_tokenising():
    processor = make_processor(max_words=4)
    encoded = processor(text=[" ".join(["Heart size is normal."] * 60)], return_tensors="pt")
    expected = processor.tokenizer(["Heart size is normal."], return_tensors="pt")["input_ids"]
    torch.testing.assert_close(encoded["input_ids"], expected)


def test_tokens_are_cut_at_max_length_and_padded_to_the_longest(processor):
    encoded = processor(text=[" ".join(["lungs"] * 80), "Lungs."], max_length=16, return_tensors="pt")
    assert encoded["input_ids"].shape == (2, 16)
    assert encoded["attention_mask"][1].sum() < 16 and encoded["attention_mask"][0].sum() == 16


def test_non_positive_word_limit_is_an_error():
    with pytest.raises(ValueError, match="max_words and max_length must be positive"):
        make_processor(max_words=0)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [({}, "at least one of images=, ecgs= or text="), ({"text": ["Lungs are clear.", "  "]}, "report 1 is empty")],
    ids=["no-input", "empty-report"],
)
def test_no_input_or_an_empty_report_is_an_error(processor, inputs, message):
    with pytest.raises(ValueError, match=message):
        processor(**inputs)


def test_save_and_from_pretrained_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["auto_map"]["AutoProcessor"] == "processing_medbind.MedBindProcessor"
    assert saved["max_words"] == 100 and saved["max_length"] == 256
    loaded = MedBindProcessor.from_pretrained(tmp_path)
    assert loaded.image_processor.to_dict() == processor.image_processor.to_dict()
    assert loaded.feature_extractor.to_dict() == processor.feature_extractor.to_dict()
    inputs = {"images": radiograph(0), "ecgs": ecg(), "sampling_rate": 500, "text": REPORTS, "return_tensors": "pt"}
    expected, actual = processor(**inputs), loaded(**inputs)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key])


def test_auto_processor_loads_the_saved_folder_in_process(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    assert isinstance(AutoProcessor.from_pretrained(tmp_path), MedBindProcessor)


@pytest.mark.slow
def test_auto_processor_loads_remote_code_where_the_package_is_not_importable(processor, tmp_path):
    saved = tmp_path / "saved"
    processor.save_pretrained(saved)
    inputs = {"images": radiograph(0), "ecgs": ecg(), "sampling_rate": 500, "text": REPORTS}
    np.savez(tmp_path / "inputs.npz", image=inputs["images"], ecg=inputs["ecgs"])
    # A module of the same name placed first on PYTHONPATH shadows the editable or regular install.
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "modeling_medbind.py").write_text("raise ImportError('modeling_medbind is hidden in this test')\n")
    script = textwrap.dedent(
        f"""
        import numpy as np
        try:
            import modeling_medbind
        except ImportError:
            pass
        else:
            raise SystemExit("modeling_medbind is importable; the test would prove nothing")
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained({str(saved)!r}, trust_remote_code=True)
        assert type(processor).__name__ == "MedBindProcessor", type(processor)
        assert type(processor).__module__.startswith("transformers_modules."), type(processor).__module__
        arrays = np.load({str(tmp_path / "inputs.npz")!r})
        batch = processor(
            images=arrays["image"], ecgs=arrays["ecg"], sampling_rate=500, text={REPORTS!r}, return_tensors="np"
        )
        np.savez({str(tmp_path / "outputs.npz")!r}, **batch)
        """
    )
    environment = {**os.environ, "PYTHONPATH": str(shadow), "HF_MODULES_CACHE": str(tmp_path / "modules"),
                   "HF_HUB_OFFLINE": "1"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = np.load(tmp_path / "outputs.npz")
    expected = processor(**inputs, return_tensors="np")
    assert set(outputs.files) == set(expected)
    for key in expected:
        np.testing.assert_allclose(outputs[key], expected[key], atol=1e-6, err_msg=key)


# ---- a model's processor is derived from its config -----------------------------------------------------------

EIGHT_LEADS = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]  # the independent leads, as many ECG networks take
# A timm model whose pretrained_cfg normalises with mean = std = 0.5, not ImageNet's (one small block).
TINY_VIT = {"model_name": "vit_tiny_patch16_224", "model_kwargs": {"depth": 1, "embed_dim": 32, "num_heads": 2}}


def sine_leads(sampling_rate: int = 500, seconds: float = 10.0) -> np.ndarray:
    """12 leads in canonical order, lead k a sine of k + 1 Hz (distinct after per-lead normalisation)."""
    time = np.arange(int(seconds * sampling_rate)) / sampling_rate
    return np.sin(2 * np.pi * (np.arange(12)[:, None] + 1) * time[None, :])


@pytest.mark.parametrize(
    "overrides",
    [
        {"cxr_config": {"image_size": 256}},
        {"cxr_config": TINY_VIT},
        {"ecg_config": {"num_samples": 500, "sampling_rate": 50}},
        {"ecg_config": {"lead_names": list(reversed(CANONICAL_LEAD_NAMES))}},
        {"ecg_config": {"lead_names": EIGHT_LEADS}},
    ],
    ids=["image_size", "timm_model", "ecg_samples_and_rate", "lead_order", "lead_subset"],
)
def test_processor_from_config_follows_each_input_setting_through_to_the_model(overrides, tmp_path):
    config = MedBindConfig.from_preset("tiny", **overrides)
    processor = MedBindProcessor.from_config(config, train_wordpiece_tokenizer(REPORTS * 4, vocab_size=150))
    ecg_config, cxr_config = config.ecg_config, config.cxr_config
    pretrained = get_pretrained_cfg(cxr_config.model_name)
    images, extractor = processor.image_processor, processor.feature_extractor
    assert (images.crop_size.height, images.crop_size.width) == (cxr_config.image_size, cxr_config.image_size)
    assert (tuple(images.image_mean), tuple(images.image_std)) == (pretrained.mean, pretrained.std)
    assert (extractor.num_samples, extractor.sampling_rate, extractor.lead_names) == (
        ecg_config.num_samples, ecg_config.sampling_rate, ecg_config.lead_names)  # fmt: skip

    # Saved with the model and loaded back, it still follows the config, and the model takes its output.
    processor.save_pretrained(tmp_path)
    inputs = MedBindProcessor.from_pretrained(tmp_path)(
        images=radiograph(0), ecgs=sine_leads(), sampling_rate=500, lead_names=CANONICAL_LEAD_NAMES,
        text=REPORTS[:2], return_tensors="pt",
    )  # fmt: skip
    assert inputs["pixel_values"].shape == (1, 3, cxr_config.image_size, cxr_config.image_size)
    assert inputs["ecg_values"].shape == (1, ecg_config.num_leads, ecg_config.num_samples)
    canonical = make_processor()(ecgs=sine_leads(), sampling_rate=500, return_tensors="pt")["ecg_values"][0]
    if ecg_config.num_samples == 1000:  # the rows are the config's leads, in its order
        rows = [CANONICAL_LEAD_NAMES.index(name) for name in ecg_config.lead_names]
        torch.testing.assert_close(inputs["ecg_values"][0], canonical[rows])
    torch.manual_seed(0)
    with torch.no_grad():
        out = MedBindModel(config).eval()(**inputs)
    assert out.logits_per_cxr.shape == (1, 2) and out.logits_per_ecg.shape == (1, 2)


def test_an_unnamed_ecg_array_is_read_in_the_configs_lead_order():
    config = MedBindConfig.from_preset("tiny", ecg_config={"lead_names": EIGHT_LEADS})
    processor = MedBindProcessor.from_config(config, train_wordpiece_tokenizer(REPORTS * 4, vocab_size=150))
    rows = [CANONICAL_LEAD_NAMES.index(name) for name in EIGHT_LEADS]
    named = processor(ecgs=sine_leads(), sampling_rate=500, lead_names=CANONICAL_LEAD_NAMES, return_tensors="pt")
    unnamed = processor(ecgs=sine_leads()[rows], sampling_rate=500, return_tensors="pt")
    torch.testing.assert_close(unnamed["ecg_values"], named["ecg_values"])
    with pytest.raises(ValueError, match="exactly 8 leads in the order I, II, V1"):
        processor(ecgs=sine_leads(), sampling_rate=500)
