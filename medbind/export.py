"""Export each MedBind tower on its own to ONNX: a CXR encoder, an ECG encoder and a text encoder.

Deployment often needs one encoder, not the tri-modal model (a PACS node embeds radiographs, an ECG cart embeds
tracings). Each file maps a tower's processor output to its L2-normalised embedding, the `pooler_output` of
`MedBindModel.get_*_features`, so embeddings from different files share the model's space and compare by dot
product. Needs the `export` extra (`pip install "medbind[export]"`: onnx, onnxscript; onnxruntime to run them).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from modeling_medbind import MedBindModel

ONNX_OPSET = 18
# Each tower's inputs, in the order of its ONNX graph, and which of their axes may vary (besides the batch): the text
# length does; the ECG length and the image size are fixed by the towers (position table, timm's input size).
TOWER_INPUTS = {
    "cxr": {"pixel_values": ()},
    "ecg": {"ecg_values": ()},
    "text": {"input_ids": (1,), "attention_mask": (1,)},
}
OUTPUT_NAME = "embeds"


def onnx_file_name(modality: str) -> str:
    """The file a tower is written to: `cxr_encoder.onnx`, `ecg_encoder.onnx`, `text_encoder.onnx`."""
    return f"{modality}_encoder.onnx"


class TowerEmbedding(nn.Module):
    """One tower of a `MedBindModel` and its projection: inputs -> `[batch, projection_dim]` L2-normalised embeds."""

    def __init__(self, model: MedBindModel, modality: str):
        super().__init__()
        self.model = model
        self.modality = modality

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, f"get_{self.modality}_features")(*inputs, return_dict=True).pooler_output


def example_inputs(model: MedBindModel, modality: str, batch_size: int = 2, text_length: int = 16) -> tuple:
    """Random inputs of the shapes the processor gives `modality`'s tower (what the export traces with)."""
    config = model.config
    if modality == "cxr":
        cxr = config.cxr_config
        return (torch.randn(batch_size, cxr.num_channels, cxr.image_size, cxr.image_size),)
    if modality == "ecg":
        return (torch.randn(batch_size, config.ecg_config.num_leads, config.ecg_config.num_samples),)
    input_ids = torch.randint(5, config.text_config.vocab_size, (batch_size, text_length))
    return input_ids, torch.ones_like(input_ids)


def towers(model: MedBindModel) -> list[str]:
    """The modalities `model` has a tower for (ECG-CLIP has no CXR tower)."""
    return [modality for modality in TOWER_INPUTS if modality != "cxr" or model.cxr_model is not None]


def export_onnx(model: MedBindModel | str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write one ONNX file per tower of `model` (or of the folder it was saved to) into `out_dir`, with a dynamic batch
    axis (and text length): `cxr_encoder.onnx` (not for ECG-CLIP), `ecg_encoder.onnx`, `text_encoder.onnx`. Each takes
    its tower's processor outputs (`pixel_values`; `ecg_values`; `input_ids` and `attention_mask`) and returns `embeds`,
    `[batch, projection_dim]`, L2-normalised. Returns `{modality: path}`."""
    try:
        import onnx  # noqa: F401  (the exporter needs both; say which extra brings them)
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ImportError(f'ONNX export needs onnx and onnxscript: pip install "medbind[export]" ({error})') from error
    if not isinstance(model, MedBindModel):
        model = MedBindModel.from_pretrained(model)
    model = model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for modality in towers(model):
        inputs = example_inputs(model, modality)
        batch = torch.export.Dim("batch", min=1)
        dynamic_shapes = tuple(
            {0: batch, **{axis: torch.export.Dim(f"{name}_{axis}", min=1) for axis in axes}}
            for name, axes in TOWER_INPUTS[modality].items()
        )
        path = out_dir / onnx_file_name(modality)
        with torch.no_grad():
            torch.onnx.export(
                TowerEmbedding(model, modality),
                inputs,
                str(path),
                input_names=list(TOWER_INPUTS[modality]),
                output_names=[OUTPUT_NAME],
                dynamic_shapes=(dynamic_shapes,),  # forward takes its inputs as one *args tuple
                opset_version=ONNX_OPSET,
                dynamo=True,
                external_data=False,
            )
        written[modality] = path
    return written


__all__ = ["TOWER_INPUTS", "TowerEmbedding", "example_inputs", "export_onnx", "onnx_file_name", "towers"]
