"""MedBindConfig: presets, overrides, validation, serialisation."""

import json

import pytest
from transformers import AutoConfig, BertConfig

from modeling_medbind import CANONICAL_LEAD_NAMES, MedBindConfig, MedBindCXRConfig, MedBindECGConfig
from modeling_medbind.pipeline_medbind import PIPELINE_TASKS


def test_paper_preset_follows_the_method():
    config = MedBindConfig.from_preset("paper")
    assert config.projection_dim == 256 and config.temperature == 0.07
    assert config.variant == "bd" and config.loss_reduction == "sum" and not config.learnable_temperature
    assert config.cxr_config.model_name == "swin_tiny_patch4_window7_224" and config.cxr_config.image_size == 224
    assert (config.ecg_config.num_leads, config.ecg_config.num_samples, config.ecg_config.patch_size) == (12, 1000, 1)
    assert config.ecg_config.sampling_rate == 100 and config.ecg_config.lead_names == list(CANONICAL_LEAD_NAMES)
    assert isinstance(config.text_config, BertConfig)
    assert (config.text_config.hidden_size, config.text_config.num_hidden_layers) == (768, 12)  # BERT-base, as BioBERT


def test_preset_accepts_variant_and_sub_config_overrides():
    config = MedBindConfig.from_preset("tiny", variant="ecg-clip", ecg_config={"patch_size": 1})
    assert config.variant == "ecg-clip" and not config.has_cxr and config.has_ecg
    cxr_clip = MedBindConfig.from_preset("tiny", variant="cxr-clip")
    assert cxr_clip.has_cxr and not cxr_clip.has_ecg
    assert config.ecg_config.patch_size == 1
    assert config.ecg_config.hidden_size == 64  # the rest of the tiny ECG sub-config is kept


@pytest.mark.parametrize(
    "preset, overrides, message",
    [
        ("huge", {}, "paper"),  # an unknown preset lists the known ones
        ("tiny", {"variant": "bound"}, "variant"),
        ("tiny", {"loss_reduction": "max"}, "loss_reduction"),
        ("tiny", {"temperature": 0.0}, "temperature"),
        ("tiny", {"ecg_config": {"patch_size": 7}}, "patch_size"),
        ("tiny", {"ecg_config": {"num_attention_heads": 5}}, "num_attention_heads"),
        ("tiny", {"ecg_config": {"position_embedding_type": "rotary"}}, "position_embedding_type"),
        ("tiny", {"ecg_config": {"lead_names": ["I", "II", "i"]}}, "lead_names"),
        ("tiny", {"ecg_config": {"sampling_rate": 0}}, "sampling_rate"),
    ],
)
def test_invalid_settings_are_rejected_with_the_field_named(preset, overrides, message):
    with pytest.raises(ValueError, match=message):
        MedBindConfig.from_preset(preset, **overrides)


def test_config_round_trips_through_save_pretrained_and_auto_config(tmp_path):
    config = MedBindConfig.from_preset("tiny", variant="nm", loss_reduction="mean")
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, MedBindConfig) and isinstance(loaded.cxr_config, MedBindCXRConfig)
    assert isinstance(loaded.ecg_config, MedBindECGConfig)
    assert loaded.to_diff_dict() == config.to_diff_dict()
    assert loaded.ecg_config.to_dict() == config.ecg_config.to_dict()


def test_lead_names_set_the_number_of_leads_and_an_older_num_leads_must_agree():
    assert MedBindECGConfig(lead_names=["I", "II", "V1"]).num_leads == 3
    assert MedBindECGConfig(num_leads=12).lead_names == list(CANONICAL_LEAD_NAMES)  # a config.json from before
    with pytest.raises(ValueError, match="num_leads=8 disagrees"):
        MedBindECGConfig(num_leads=8)


def test_with_cxr_backbone_returns_a_new_config_for_the_published_architecture():
    config = MedBindConfig.from_preset("tiny")
    swin = config.with_cxr_backbone("swin_tiny_patch4_window7_224")
    assert (swin.cxr_config.model_name, swin.cxr_config.model_kwargs) == ("swin_tiny_patch4_window7_224", None)
    assert config.cxr_config.model_name == "resnet18" and config.cxr_config.model_kwargs is not None


def test_saved_config_serves_the_zero_shot_image_auto_class_and_every_pipeline_task(tmp_path):
    MedBindConfig.from_preset("tiny").save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"]["AutoModelForZeroShotImageClassification"] == "modeling_medbind.MedBindModel"
    assert saved["custom_pipelines"].keys() == PIPELINE_TASKS.keys()
    for task, pipeline_class in PIPELINE_TASKS.items():
        assert saved["custom_pipelines"][task]["impl"] == f"pipeline_medbind.{pipeline_class.__name__}"
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert reloaded.custom_pipelines == saved["custom_pipelines"]
    assert reloaded.ecg_config.lead_names == list(CANONICAL_LEAD_NAMES)
