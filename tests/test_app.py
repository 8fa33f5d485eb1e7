"""The web demo (app.py, medbind/app.py) and its ECG paper plot (medbind/ecg_plot.py), without a browser:
tests/test_app_browser.py drives the page itself."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures.ecg_exports import write_dicom_ecg, write_muse_xml

from medbind.app import MedBindDemo, ensure_model, parse_labels
from medbind.ecg_plot import GAIN_MM_PER_MV, PAPER_SPEED_MM_PER_S, plot_12_lead
from medbind.index import build_index
from modeling_medbind import CANONICAL_LEAD_NAMES

LABELS = "myocardial infarction, normal sinus rhythm"
PROMPTS = Path(__file__).resolve().parents[1] / "training" / "medbind_training" / "prompts"


@pytest.fixture(scope="module")
def demo(model_dir, shared_data, tmp_path_factory):
    index = tmp_path_factory.mktemp("index")
    probe = MedBindDemo(model_dir)

    def embed(modality, items):
        return np.stack([probe.embed(item, modality=modality, return_tensors=True).numpy() for item in items])

    inputs = {"cxr": [str(shared_data / "cxr" / "nih_00000001_000.png")], "ecg": [str(shared_data / "ecg" / "s0010_re")],
              "text": ["Acute inferior myocardial infarction."]}  # fmt: skip
    build_index(index, inputs, embed, model="tiny", progress=False)
    return MedBindDemo(model_dir, PROMPTS, index)


def uploads(tmp_path, *paths):
    """Each file in a folder of its own, as Gradio stores uploads."""
    copies = []
    for number, path in enumerate(paths):
        (tmp_path / f"upload{number}").mkdir()
        copies.append(str(shutil.copy(path, tmp_path / f"upload{number}")))
    return copies


@pytest.fixture(scope="module")
def wfdb_analysis(demo, shared_data, tmp_path_factory):
    """What the demo shows for the PTB record uploaded as WFDB files (the hospital formats are compared with it)."""
    record = shared_data / "ecg" / "s0010_re"
    files = uploads(tmp_path_factory.mktemp("wfdb"), f"{record}.hea", f"{record}.dat", f"{record}.xyz")
    return demo.analyse(files, LABELS, None)


def test_a_wfdb_upload_gives_probabilities_the_ecg_paper_plot_and_nearest_items(wfdb_analysis, shared_data):
    record = shared_data / "ecg" / "s0010_re"
    status, probabilities, radiograph, figure, neighbours = wfdb_analysis
    assert status == "ECG **s0010_re**" and radiograph is None and figure is not None
    assert set(probabilities) == {"myocardial infarction", "normal sinus rhythm"}
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert neighbours[0][1:] == ["1.000", "ecg", str(record.resolve())]  # the same record is in the index, by its real path
    assert {row[2] for row in neighbours} == {"cxr", "ecg", "text"}


@pytest.mark.parametrize("write", [write_dicom_ecg, write_muse_xml], ids=["dicom", "muse"])
def test_hospital_ecg_uploads_are_classified_as_the_wfdb_record(demo, wfdb_analysis, shared_data, tmp_path, write):
    export = write(shared_data / "ecg" / "s0010_re", tmp_path / ("ecg.dcm" if write is write_dicom_ecg else "ecg.xml"))
    status, probabilities, _, figure, _ = demo.analyse(uploads(tmp_path, export), LABELS, None)
    assert status == f"ECG **{export.name}**" and figure is not None
    assert probabilities == pytest.approx(wfdb_analysis[1], abs=1e-3)


@pytest.mark.parametrize("name", ["nih_00000001_000.png", "padchest_16747_3_1.jpg", "rsna_example.dcm"])
def test_a_radiograph_upload_is_shown_and_classified_with_a_prompt_set(demo, shared_data, tmp_path, name):
    status, probabilities, radiograph, figure, neighbours = demo.analyse(uploads(tmp_path, shared_data / "cxr" / name),
                                                                         "", "rsna")  # fmt: skip
    assert status == f"radiograph **{name}**" and figure is None
    assert radiograph.dtype == np.uint8 and radiograph.ndim == 2 and min(radiograph.shape) > 100
    assert set(probabilities) == {"Normal", "Pneumonia"} and len(neighbours) == 3


@pytest.mark.parametrize(
    "files, labels, message",
    [
        ([], LABELS, "upload a radiograph"),
        (["README.md"], LABELS, "README.md: not a file type the demo reads"),
        (["ecg/s0010_re.dat"], LABELS, "s0010_re.dat: a WFDB record needs its header file (.hea)"),
        (["ecg/s0010_re.hea"], LABELS, "a signal file of WFDB record"),
        (["cxr/nih_00000001_000.png", "cxr/tbx11k_h0001.png"], LABELS, "upload one radiograph or one ECG at a time"),
        (["cxr/nih_00000001_000.png"], "", "type at least two labels"),
        (["cxr/nih_00000001_000.png"], "pneumonia, pneumonia", "has a label more than once"),
    ],
    ids=["nothing", "text-file", "dat-alone", "hea-alone", "two-images", "no-labels", "repeated-label"],
)
def test_a_bad_upload_gives_a_readable_message_not_a_traceback(demo, shared_data, tmp_path, files, labels, message):
    files = uploads(tmp_path, *(shared_data / file for file in files))
    status, probabilities, radiograph, figure, neighbours = demo.analyse(files, labels, None)
    assert status.startswith("**Could not analyse the upload:**") and message in status
    assert (probabilities, radiograph, figure, neighbours) == (None, None, None, [])


def test_the_ecg_is_drawn_at_25_mm_per_s_and_10_mm_per_mv_in_the_3x4_layout_with_a_rhythm_strip():
    rate = 500
    signal = np.zeros((12, 10 * rate))
    signal[1, rate : rate + 100] = 1.0  # a 1 mV step in lead II from 1 s to 1.2 s
    figure = plot_12_lead(signal, rate, CANONICAL_LEAD_NAMES)
    axes = figure.axes[0]
    width_in = axes.get_position().width * figure.get_figwidth()
    height_in = axes.get_position().height * figure.get_figheight()
    assert width_in * 25.4 == pytest.approx(10 * PAPER_SPEED_MM_PER_S)  # 10 s across
    assert height_in * 25.4 == pytest.approx(axes.get_ylim()[1])  # 1 mm of data = 1 mm of paper, both ways
    labels = [text.get_text() for text in axes.texts]
    assert labels[:12] == ["I", "aVR", "V1", "V4", "II", "aVL", "V2", "V5", "III", "aVF", "V3", "V6"]
    assert labels[12] == "II" and len(axes.lines) == 13  # 12 segments of 2.5 s and the 10 s rhythm strip
    rhythm = axes.lines[-1].get_data()
    step = rhythm[1][(rhythm[0] >= 25) & (rhythm[0] < 30)]  # 1.0-1.2 s on paper: 25-30 mm
    assert np.ptp(rhythm[1]) == pytest.approx(GAIN_MM_PER_MV) and np.allclose(step - step[0], 0)
    assert rhythm[0][-1] == pytest.approx(250 - PAPER_SPEED_MM_PER_S / rate)


def test_labels_are_split_on_commas_and_lines():
    assert parse_labels("a, b\nc,,\n  d  ") == ["a", "b", "c", "d"]


def test_a_missing_model_other_than_the_demo_s_is_refused(tmp_path):
    with pytest.raises(ValueError, match=f"--model {tmp_path}: no MedBind model there"):
        ensure_model(tmp_path, None)
