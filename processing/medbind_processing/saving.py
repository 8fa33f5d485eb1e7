"""Writing a build: the `DatasetDict`, its `summary.json` (counts next to the paper's) and its dataset card."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets

from .counts import count_summary, format_counts, format_summary
from .dataset_card import DataSource, render_dataset_card, shareable_options


def save(
    dataset_dict: datasets.DatasetDict,
    out: Path,
    source: DataSource,
    build_options: Mapping[str, Any] | None = None,
) -> None:
    """`save_to_disk(out)`, then beside the data `summary.json` (`count_summary` and the build options) and the
    dataset card `README.md` (`render_dataset_card`, which refuses a build without splits before anything is
    written); prints the location, the per-split label counts (`format_summary`) and the counts next to the paper's
    (`format_counts`). `build_options` (the builder's arguments) go to both files (`shareable_options`).
    """
    out = Path(out)
    summary = count_summary(dataset_dict, source.name)  # one pass over the labels serves all three outputs
    card = render_dataset_card(dataset_dict, source, build_options, summary)
    dataset_dict.save_to_disk(str(out))
    recorded = {**summary, "build_options": shareable_options(build_options)}
    (out / "summary.json").write_text(json.dumps(recorded, indent=2) + "\n")
    card.save(out / "README.md")
    listing = format_summary(dataset_dict, summary["labels_by_split"])
    print(f"saved to {out}\n{listing}\n{format_counts(summary)}\ncard: {out / 'README.md'}")
