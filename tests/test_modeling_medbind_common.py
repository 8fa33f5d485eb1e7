"""transformers' common model and config tests (`ModelTesterMixin`, `ConfigTester`) run against `MedBindModel`.

The tests come from the installed transformers' PyPI sdist (`tests/transformers_common.py`). A skip here is either
one `CLIPModelTest` makes too (with CLIP's reason) or one that cannot apply to a tri-modal model (with that reason).
"""

import unittest

import pytest
import torch

import transformers_common

pytestmark = pytest.mark.slow  # about 80 s on two cores: kept out of the fast loop, run in CI

try:
    transformers_tests = transformers_common.load()
except RuntimeError as error:
    pytest.skip(str(error), allow_module_level=True)

from transformers_tests.test_configuration_common import ConfigTester  # noqa: E402
from transformers_tests.test_modeling_common import ModelTesterMixin, floats_tensor, ids_tensor  # noqa: E402

from modeling_medbind import MedBindConfig, MedBindModel  # noqa: E402


class MedBindModelTester:
    """The `tiny` preset, smaller still: 32-pixel radiographs, 100-sample ECGs, a 2-layer BERT of width 32."""

    def __init__(self, parent, batch_size: int = 3):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = 7
        self.image_size = 32
        self.num_samples = 100
        self.is_training = True
        self.num_hidden_layers = 2  # of the text and ECG towers alike


    def get_config(self) -> MedBindConfig:
        return MedBindConfig.from_preset(
            "tiny",
            projection_dim=16,
            cxr_config={"image_size": self.image_size},
            ecg_config={"num_samples": self.num_samples, "hidden_size": 32, "intermediate_size": 37},
            text_config={"vocab_size": 99, "hidden_size": 32, "intermediate_size": 37, "max_position_embeddings": 64},
        )

    def prepare_config_and_inputs_for_common(self):
        # One report per visit: row i of the texts, CXRs and ECGs belongs to one patient (the loss's one-text layout).
        input_ids = ids_tensor([self.batch_size, self.seq_length], 99)
        inputs = {
            "pixel_values": floats_tensor([self.batch_size, 3, self.image_size, self.image_size]),
            "ecg_values": floats_tensor([self.batch_size, 12, self.num_samples]),
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "return_loss": True,
        }
        return self.get_config(), inputs


class MedBindModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (MedBindModel,)
    # As CLIPModelTest: the towers' own tests cover hidden states, attentions and resizing.
    test_resize_embeddings = False
    test_attention_outputs = False
    _is_composite = True
    # The eager-vs-SDPA checks feed the main input (ECGs) and these: every tower, so that the logits are compared.
    additional_model_inputs = ["pixel_values", "input_ids"]
    # The timm CXR tower's feature map size is timm's choice, not a config field the shape check could read.
    skip_test_image_features_output_shape = True

    def setUp(self):
        self.model_tester = MedBindModelTester(self)
        self.config_tester = ConfigTester(
            self, config_class=MedBindConfig, has_text_modality=False, common_properties=["projection_dim"]
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    @unittest.skip(reason="As CLIPModel: hidden states are tested in the towers' own tests")
    def test_hidden_states_output(self):
        pass

    @unittest.skip(reason="As CLIPModel: inputs_embeds is tested in the towers' own tests")
    def test_inputs_embeds(self):
        pass

    @unittest.skip(reason="As CLIPModel: retain_grad is tested in the towers' own tests")
    def test_retain_grad_hidden_states_attentions(self):
        pass

    @unittest.skip(
        reason="The CXR tower is a timm model (a ResNet here, a Swin in the paper's preset) that gives its final "
        "feature map only: it has no per-layer hidden states to return"
    )
    def test_get_image_features_hidden_states(self):
        pass

    @unittest.skip(reason="The timm CXR tower returns no attention weights (the tiny preset's is a CNN)")
    def test_get_image_features_attentions(self):
        pass
