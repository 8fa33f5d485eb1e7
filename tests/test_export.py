"""`medbind export`: one ONNX file per tower, run with onnxruntime, equal to the PyTorch embeddings."""

import numpy as np
import pytest
import torch

from medbind.cli import main
from medbind.export import TOWER_INPUTS, TowerEmbedding, example_inputs, onnx_file_name
from modeling_medbind import MedBindConfig, MedBindModel

# The tiny preset, smaller still (as transformers' common tests use it): a 32-pixel ResNet, 100-sample ECGs.
SMALL = {
    "projection_dim": 16,
    "cxr_config": {"image_size": 32},
    "ecg_config": {"num_samples": 100, "hidden_size": 32, "intermediate_size": 37},
    "text_config": {"vocab_size": 99, "hidden_size": 32, "intermediate_size": 37, "max_position_embeddings": 64},
}


@pytest.mark.slow
def test_cli_exports_each_tower_with_a_dynamic_batch_and_onnxruntime_matches_eager(tmp_path):
    # imported here, not with the module: onnxscript alone takes seconds, and the other tests do not need them
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime comes with the `export` extra")
    pytest.importorskip("onnxscript", reason="onnxscript comes with the `export` extra")
    torch.manual_seed(0)
    model = MedBindModel(MedBindConfig.from_preset("tiny", **SMALL)).eval()
    model.save_pretrained(tmp_path / "model")
    assert main(["export", "--model", str(tmp_path / "model"), "--format", "onnx", "--out", str(tmp_path / "onnx")]) == 0
    for modality in ("cxr", "ecg", "text"):
        session = ort.InferenceSession(str(tmp_path / "onnx" / onnx_file_name(modality)))
        assert [node.name for node in session.get_inputs()] == list(TOWER_INPUTS[modality])
        # Other batch sizes (and text lengths) than the export traced with.
        for batch_size, text_length in ((1, 5), (5, 23)):
            inputs = example_inputs(model, modality, batch_size=batch_size, text_length=text_length)
            (got,) = session.run(None, {name: value.numpy() for name, value in zip(TOWER_INPUTS[modality], inputs)})
            with torch.no_grad():
                expected = getattr(model, f"get_{modality}_features")(*inputs).pooler_output.numpy()
                assert np.array_equal(expected, TowerEmbedding(model, modality)(*inputs).numpy())
            assert got.shape == (batch_size, 16)
            assert np.abs(got - expected).max() <= 1e-4, modality


def test_export_of_ecg_clip_has_no_cxr_file():
    from medbind.export import towers

    model = MedBindModel(MedBindConfig.from_preset("tiny", variant="ecg-clip", **SMALL))
    assert towers(model) == ["ecg", "text"]
