"""MedBindConfig: presets, overrides, validation, serialisation."""

import pytest
from transformers import AutoConfig, BertConfig

from modeling_medbind import MedBindConfig, MedBindCXRConfig, MedBindECGConfig


def test_paper_preset_follows_the_method():
    config = MedBindConfig.from_preset("paper")
    assert config.projection_dim == 256 and config.temperature == 0.07
    assert config.variant == "bd" and config.loss_reduction == "sum" and not config.learnable_temperature
    assert config.cxr_config.model_name == "swin_tiny_patch4_window7_224" and config.cxr_config.image_size == 224
    assert (config.ecg_config.num_leads, config.ecg_config.num_samples, config.ecg_config.patch_size) == (12, 1000, 1)
    assert isinstance(config.text_config, BertConfig)
    assert (config.text_config.hidden_size, config.text_config.num_hidden_layers) == (768, 12)  # BERT-base, as BioBERT


def test_preset_accepts_variant_and_sub_config_overrides():
    config = MedBindConfig.from_preset("tiny", variant="ecg-clip", ecg_config={"patch_size": 1})
    assert config.variant == "ecg-clip" and not config.has_cxr
    assert config.ecg_config.patch_size == 1
    assert config.ecg_config.hidden_size == 64  # the rest of the tiny ECG sub-config is kept


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"variant": "bound"}, "variant"),
        ({"loss_reduction": "max"}, "loss_reduction"),
        ({"temperature": 0.0}, "temperature"),
        ({"ecg_config": {"patch_size": 7}}, "patch_size"),
        ({"ecg_config": {"num_attention_heads": 5}}, "num_attention_heads"),
        ({"ecg_config": {"position_embedding_type": "rotary"}}, "position_embedding_type"),
    ],
)
def test_invalid_settings_are_rejected_with_the_field_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        MedBindConfig.from_preset("tiny", **overrides)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="paper"):
        MedBindConfig.from_preset("huge")


def test_config_round_trips_through_save_pretrained_and_auto_config(tmp_path):
    config = MedBindConfig.from_preset("tiny", variant="nm", loss_reduction="mean")
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, MedBindConfig)
    assert isinstance(loaded.cxr_config, MedBindCXRConfig) and isinstance(loaded.ecg_config, MedBindECGConfig)
    assert loaded.to_diff_dict() == config.to_diff_dict()
    assert loaded.ecg_config.to_dict() == config.ecg_config.to_dict()
