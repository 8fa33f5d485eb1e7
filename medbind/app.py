"""The MedBind web demo (Gradio), served by `app.py` at the repository root, as a Hugging Face Space runs it.

Upload a chest radiograph (PNG, JPEG, DICOM) or a 12-lead ECG (a WFDB record's `.hea` and `.dat`, a DICOM waveform,
a GE MUSE XML); type class labels or pick a prompt set; see the zero-shot class probabilities, the radiograph or the
ECG on ECG paper, and, given an index of `medbind index`, its nearest items of every modality.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from transformers import AutoModel, AutoProcessor, pipeline

from medbind.ecg_plot import plot_12_lead
from medbind.index import EmbeddingIndex
from modeling_medbind import CANONICAL_LEAD_NAMES, MedBindECGFeatureExtractor
from modeling_medbind.ecg_files_medbind import ECG_SOP_CLASSES
from modeling_medbind.image_processing_medbind import decode_dicom, is_dicom

if TYPE_CHECKING:
    import gradio as gr

DEMO_MODEL_DIR = "outputs/medbind-demo-bd"  # where `training/pretrain.py --preset demo` saves the demo model
WFDB_FILE_SUFFIXES = (".hea", ".dat", ".xyz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ECG_DISPLAY_RATE = 500  # Hz of the drawn ECG: smooth at 25 mm/s
NEIGHBOURS = 5
NEIGHBOUR_COLUMNS = ["rank", "cosine", "modality", "source"]


@dataclass
class Upload:
    """An upload, ready for the processor: its `modality` and `path` (a WFDB record's path without suffix)."""

    modality: str
    path: Path


def gather_upload(files: Sequence[str], folder: Path) -> Upload:
    """
    The one radiograph or ECG among uploaded files, copied into `folder` under their own names (Gradio stores each
    upload in a folder of its own, which would part a WFDB header from its signal file).
    """
    if not files:
        raise ValueError("upload a radiograph (PNG, JPEG, DICOM) or an ECG (WFDB .hea + .dat, DICOM, MUSE XML)")
    copies = [Path(shutil.copy(file, folder / Path(file).name)) for file in files]
    headers = [path for path in copies if path.suffix.lower() == ".hea"]
    samples = headers + [path for path in copies if path.suffix.lower() not in WFDB_FILE_SUFFIXES]
    if len(samples) > 1:
        raise ValueError(f"upload one radiograph or one ECG at a time, got {', '.join(path.name for path in samples)}")
    if not samples:
        names = ", ".join(path.name for path in copies)
        raise ValueError(f"{names}: a WFDB record needs its header file (.hea) too, with the .dat it names")
    path = samples[0]
    suffix = path.suffix.lower()
    if suffix == ".hea":
        return Upload("ecg", path.with_suffix(""))
    if suffix == ".xml":
        return Upload("ecg", path)
    if is_dicom(path):
        return Upload("ecg" if _dicom_sop_class(path) in ECG_SOP_CLASSES else "cxr", path)
    if suffix in IMAGE_SUFFIXES:
        return Upload("cxr", path)
    raise ValueError(
        f"{path.name}: not a file type the demo reads; upload a radiograph (.png, .jpg, .dcm) or an ECG "
        "(.hea with its .dat, .dcm waveform, MUSE .xml)"
    )


def _dicom_sop_class(path: Path) -> str:
    import pydicom

    try:
        return str(pydicom.dcmread(path, stop_before_pixels=True).get("SOPClassUID", ""))
    except Exception as error:  # pydicom reports a corrupt file in many error types
        raise ValueError(f"could not read DICOM file {path.name}: {type(error).__name__}: {error}") from error


def parse_labels(text: str) -> list[str]:
    """Labels typed one per line or separated by commas."""
    return [label.strip() for line in (text or "").splitlines() for label in line.split(",") if label.strip()]


def radiograph_for_display(path: Path) -> np.ndarray:
    """The radiograph as 8-bit pixels (DICOM through its LUTs, as the model reads it)."""
    if is_dicom(path):
        pixels = decode_dicom(path)[0]
        return pixels if pixels.dtype == np.uint8 else (np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


class MedBindDemo:
    """The demo around one saved MedBind model, offering the prompt files of `prompts_dir` as prompt sets and
    listing the nearest items of the `medbind index` folder `index_dir`."""

    def __init__(
        self,
        model_dir: str | Path,
        prompts_dir: str | Path | None = None,
        index_dir: str | Path | None = None,
        device: str = "cpu",
    ):
        model, processor = AutoModel.from_pretrained(model_dir).eval(), AutoProcessor.from_pretrained(model_dir)
        self.classify = {
            modality: pipeline(f"zero-shot-{modality}-classification", model=model, processor=processor, device=device)
            for modality in ("ecg", "cxr")
        }
        self.embed = pipeline("medbind-feature-extraction", model=model, processor=processor, device=device)
        self.index = EmbeddingIndex.load(index_dir) if index_dir else None
        self.prompt_sets = {path.stem: path for path in sorted(Path(prompts_dir).glob("*.yaml"))} if prompts_dir else {}
        self.ecg_display = MedBindECGFeatureExtractor(
            sampling_rate=ECG_DISPLAY_RATE, num_samples=10 * ECG_DISPLAY_RATE, normalization="none"
        )

    def analyse(self, files: Sequence[str] | None, labels: str, prompt_set: str | None) -> tuple[Any, ...]:
        """One press of "Analyse": `(status markdown, {label: probability}, radiograph pixels or None, ECG figure or
        None, nearest items rows)`. Any unreadable upload or bad label list gives a readable status and empty outputs,
        not a traceback."""
        try:
            with tempfile.TemporaryDirectory(prefix="medbind-upload-") as folder:
                return self._analyse(gather_upload(files or [], Path(folder)), labels, prompt_set)
        except (ValueError, OSError, ImportError) as error:
            return f"**Could not analyse the upload:** {error}", None, None, None, []

    def _analyse(self, upload: Upload, labels: str, prompt_set: str | None) -> tuple[Any, ...]:
        candidates = self._candidates(labels, prompt_set)
        scores = self.classify[upload.modality](str(upload.path), candidate_labels=candidates)
        probabilities = {entry["label"]: entry["score"] for entry in scores}
        radiograph, figure = None, None
        if upload.modality == "cxr":
            radiograph = radiograph_for_display(upload.path)
        else:
            signal = self.ecg_display(str(upload.path))["ecg_values"][0]
            figure = plot_12_lead(signal, ECG_DISPLAY_RATE, CANONICAL_LEAD_NAMES, title=upload.path.name)
        kind = "radiograph" if upload.modality == "cxr" else "ECG"
        return f"{kind} **{upload.path.name}**", probabilities, radiograph, figure, self._neighbours(upload)

    def _candidates(self, labels: str, prompt_set: str | None) -> list[str] | dict[str, list[str]]:
        typed = parse_labels(labels)
        if typed:
            return typed
        if prompt_set:
            # The same reader as evaluation and `medbind zero-shot --prompts`; imported here as only this needs it.
            from medbind_training.prompt_files import read_prompt_file

            classes = read_prompt_file(self.prompt_sets[prompt_set])[1].classes
            return {label: list(prompts) for label, prompts in classes.items()}
        raise ValueError("type at least two labels (comma-separated) or pick a prompt set")

    def _neighbours(self, upload: Upload) -> list[list[Any]]:
        if self.index is None:
            return []
        query = self.embed(str(upload.path), modality=upload.modality, return_tensors=True)
        hits = self.index.search(query[None].float().numpy(), NEIGHBOURS)[0]
        return [[hit.rank, f"{hit.score:.3f}", hit.modality, hit.source] for hit in hits]

    def build(self) -> gr.Blocks:
        """The Gradio page."""
        import gradio as gr  # only the page needs Gradio (seconds to import): analysing an upload does not

        with gr.Blocks(title="MedBind") as page:
            gr.Markdown(
                "# MedBind\nChest X-rays, 12-lead ECGs and clinical text in one embedding space "
                "([MEDBind](https://arxiv.org/abs/2403.12894)). Upload a radiograph (PNG, JPEG, DICOM) or an ECG "
                "(WFDB `.hea` + `.dat`, DICOM waveform, GE MUSE XML) and classify it zero-shot."
            )
            with gr.Row():
                with gr.Column():
                    files = gr.File(label="Radiograph or ECG", file_count="multiple", elem_id="upload")
                    labels = gr.Textbox(label="Labels (comma-separated)", elem_id="labels",
                                        placeholder=", ".join(["myocardial infarction", "normal sinus rhythm"]))  # fmt: skip
                    prompt_set = gr.Dropdown(choices=list(self.prompt_sets), value=None, label="or a prompt set",
                                             elem_id="prompt-set")  # fmt: skip
                    button = gr.Button("Analyse", variant="primary", elem_id="analyse")
                with gr.Column():
                    status = gr.Markdown(elem_id="status")
                    probabilities = gr.Label(label="Zero-shot probabilities", elem_id="probabilities")
            radiograph = gr.Image(label="Radiograph", elem_id="radiograph", type="numpy", visible=False)
            ecg = gr.Plot(label="ECG (25 mm/s, 10 mm/mV)", elem_id="ecg-plot", visible=False)
            neighbours = gr.Dataframe(headers=NEIGHBOUR_COLUMNS, label="Nearest items of the index",
                                      elem_id="neighbours", visible=self.index is not None)  # fmt: skip
            button.click(self._page_outputs, [files, labels, prompt_set],
                         [status, probabilities, radiograph, ecg, neighbours])  # fmt: skip
        return page

    def _page_outputs(self, files: Sequence[str] | None, labels: str, prompt_set: str | None) -> tuple[Any, ...]:
        """`analyse`, showing only the radiograph or the ECG plot of the upload."""
        import gradio as gr

        status, probabilities, radiograph, figure, neighbours = self.analyse(files, labels, prompt_set)
        return (status, probabilities, gr.Image(value=radiograph, visible=radiograph is not None),
                gr.Plot(value=figure, visible=figure is not None), neighbours)  # fmt: skip


def ensure_model(model_dir: Path, pretrain_script: Path | None) -> None:
    """Train the demo model (`accelerate launch training/pretrain.py --preset demo`, a few minutes on a CPU) if
    `model_dir` holds no model and is the demo's folder; ValueError for another missing folder or no training script."""
    if (model_dir / "config.json").is_file():
        return
    if model_dir != Path(DEMO_MODEL_DIR) or pretrain_script is None or not pretrain_script.is_file():
        raise ValueError(f"--model {model_dir}: no MedBind model there (no config.json)")
    print(f"{model_dir} holds no model: training the demo model first (a few minutes)", file=sys.stderr)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", str(pretrain_script),
               "--preset", "demo", "--output_dir", str(model_dir)]  # fmt: skip
    subprocess.run(command, check=True)


def main(argv: Sequence[str] | None = None, prompts_dir: Path | None = None, pretrain_script: Path | None = None) -> int:
    """`python app.py [--model DIR] [--index INDEX] [--host H] [--port P]`: serve the demo, training it first with
    `pretrain_script` when missing. Returns 0 once the server stops; 2 for a model folder that cannot be used."""
    parser = argparse.ArgumentParser(description="Serve the MedBind web demo (Gradio).")
    parser.add_argument("--model", type=Path, default=Path(DEMO_MODEL_DIR),
                        help=f"a saved MedBind folder (default: {DEMO_MODEL_DIR}, trained first if absent)")  # fmt: skip
    parser.add_argument("--index", type=Path, help="a folder of `medbind index`: list the upload's nearest items")
    parser.add_argument("--host", help="address to serve on (default: Gradio's, 127.0.0.1 or GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=int, help="port (default: Gradio's, 7860 or GRADIO_SERVER_PORT)")
    parser.add_argument("--device", default="cpu", help="torch device of the model (default: cpu)")
    args = parser.parse_args(argv)
    try:
        ensure_model(args.model, pretrain_script)
        demo = MedBindDemo(args.model, prompts_dir, args.index, args.device)
    except (ValueError, OSError) as error:
        print(f"app.py: error: {error}", file=sys.stderr)
        return 2
    demo.build().launch(server_name=args.host, server_port=args.port)
    return 0
