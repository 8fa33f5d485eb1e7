"""A 12-lead ECG drawn as a printed one is read: the 3 x 4 layout plus a lead II rhythm strip on ECG paper, at
25 mm/s and 10 mm/mV, so that a millimetre of the figure is 40 ms across and 0.1 mV up."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on a server or in tests
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

PAPER_SPEED_MM_PER_S = 25.0
GAIN_MM_PER_MV = 10.0
# The printed layout: each row shows its four leads one after another, 2.5 s each; a 10 s lead II strip below.
LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
RHYTHM_LEAD = "II"
ROW_HEIGHT_MM = 30.0  # 3 mV per row
MARGIN_MM = 5.0


def plot_12_lead(signal: np.ndarray, sampling_rate: float, lead_names: Sequence[str], title: str = "") -> Figure:
    """Draw 10 s of a 12-lead ECG on ECG paper (1 mm minor, 5 mm major grid).

    Each segment is centred on its row by its median, as a cart's baseline filter does, so wander or a DC offset of
    the file does not push a trace out of its row. `signal [leads, samples]` is in millivolts at `sampling_rate` Hz,
    at least 10 s long (longer is cut), its rows named by `lead_names` (the twelve standard leads among them). The
    figure is `(250 + 2 * MARGIN_MM) x (4 * ROW_HEIGHT_MM + 2 * MARGIN_MM)` mm, 1 mm of paper = 1 mm.
    """
    duration_s = 4 * 2.5
    samples = int(round(duration_s * sampling_rate))
    if signal.shape[1] < samples:
        raise ValueError(f"the ECG plot needs {duration_s:g} s of signal, got {signal.shape[1] / sampling_rate:.2f} s")
    rows = {name.lower(): row for row, name in enumerate(lead_names)}
    missing = [lead for line in LAYOUT for lead in line if lead.lower() not in rows]
    if missing:
        raise ValueError(f"the ECG plot needs leads {', '.join(missing)}")
    width_mm, height_mm = duration_s * PAPER_SPEED_MM_PER_S, ROW_HEIGHT_MM * (len(LAYOUT) + 1)
    figure = Figure(figsize=((width_mm + 2 * MARGIN_MM) / 25.4, (height_mm + 2 * MARGIN_MM) / 25.4), dpi=100)
    axes = figure.add_axes((MARGIN_MM / (width_mm + 2 * MARGIN_MM), MARGIN_MM / (height_mm + 2 * MARGIN_MM),
                            width_mm / (width_mm + 2 * MARGIN_MM), height_mm / (height_mm + 2 * MARGIN_MM)))  # fmt: skip
    _draw_paper(axes, width_mm, height_mm)
    segment = samples // 4

    def trace(lead: str, start: int, stop: int, baseline_mm: float, x0_mm: float) -> None:
        values = signal[rows[lead.lower()], start:stop]
        values = values - np.nanmedian(values)
        x_mm = x0_mm + np.arange(len(values)) / sampling_rate * PAPER_SPEED_MM_PER_S
        axes.plot(x_mm, baseline_mm + values * GAIN_MM_PER_MV, color="black", linewidth=0.6)
        axes.text(x0_mm + 1, baseline_mm + ROW_HEIGHT_MM * 0.3, lead, fontsize=7)

    for line, leads in enumerate(LAYOUT):
        baseline = height_mm - ROW_HEIGHT_MM * (line + 0.5)
        for column, lead in enumerate(leads):
            trace(lead, column * segment, (column + 1) * segment, baseline, column * 2.5 * PAPER_SPEED_MM_PER_S)
    trace(RHYTHM_LEAD, 0, samples, ROW_HEIGHT_MM * 0.5, 0.0)
    axes.text(width_mm, -MARGIN_MM * 0.8, f"{PAPER_SPEED_MM_PER_S:g} mm/s, {GAIN_MM_PER_MV:g} mm/mV", fontsize=6,
              horizontalalignment="right")  # fmt: skip
    if title:
        axes.set_title(title, fontsize=8)
    return figure


def _draw_paper(axes, width_mm: float, height_mm: float) -> None:
    axes.set_xlim(0, width_mm)
    axes.set_ylim(0, height_mm)
    axes.set_xticks(np.arange(0, width_mm + 1, 5))
    axes.set_yticks(np.arange(0, height_mm + 1, 5))
    axes.set_xticks(np.arange(0, width_mm + 1, 1), minor=True)
    axes.set_yticks(np.arange(0, height_mm + 1, 1), minor=True)
    axes.grid(which="major", color="#e88", linewidth=0.5)
    axes.grid(which="minor", color="#fcc", linewidth=0.25)
    axes.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    axes.set_axisbelow(True)
    for spine in axes.spines.values():
        spine.set_visible(False)
