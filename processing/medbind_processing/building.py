"""Records grouped by split -> a `datasets.DatasetDict` with declared features: the last step of every builder."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets


def _generate_examples(
    records: Sequence[Mapping[str, Any]], make_example: Callable[[Mapping[str, Any]], dict] | None
) -> Iterable[dict]:
    for record in records:
        yield make_example(record) if make_example is not None else dict(record)


def build_dataset_dict(
    records_by_split: Mapping[str, Sequence[Mapping[str, Any]]],
    features: datasets.Features,
    description: str,
    make_example: Callable[[Mapping[str, Any]], dict] | None = None,
    num_proc: int | None = None,
    build_dir: Path | None = None,
) -> datasets.DatasetDict:
    """Turn records grouped by split into a `DatasetDict` with declared features (`Dataset.from_generator`).

    Each build writes its Arrow files to a fresh folder: `from_generator`'s own cache is keyed on the generator's
    arguments, so rebuilding from raw files changed under the same paths would return the old build, and it would
    keep a second copy of every dataset beside `save_to_disk`'s.

    Args:
        records_by_split: `{split_name: records}`; each record is an example already (keys = feature names) or the
            input of `make_example`.
        description: stored as every split's `info.description` (written by `save_to_disk`).
        make_example: record -> example, run inside the generator (in worker processes when `num_proc > 1`), for
            examples that are expensive to materialise (rendered images, read signals).
        build_dir: an existing folder the caller removes once the build is saved (the command line's temporary
            folder beside `--out`): the Arrow files stay there, on disk, so no split has to fit in memory (RSNA's
            26,684 radiographs are some 3-4 GB at 512 pixels, 10-15 GB at full size); the datasets must not be read
            after it is removed. None: the datasets are loaded into memory and their files removed at once
            (MIMIC-IV-ECG's ~800k rows of paths and texts are a few hundred MB, the demo's PNGs ~100 MB).
    """
    in_memory = build_dir is None
    folder = (
        tempfile.TemporaryDirectory(prefix="medbind-build-")
        if in_memory
        else contextlib.nullcontext(tempfile.mkdtemp(dir=build_dir))
    )
    with folder as cache_dir:
        splits = {
            name: datasets.Dataset.from_generator(
                _generate_examples,
                features=features,
                cache_dir=cache_dir,
                keep_in_memory=in_memory,
                gen_kwargs={"records": list(records), "make_example": make_example},
                num_proc=num_proc if num_proc and num_proc > 1 and len(records) > 1 else None,
                split=datasets.NamedSplit(name),
            )
            for name, records in records_by_split.items()
        }
    for dataset in splits.values():
        dataset.info.description = description
    return datasets.DatasetDict(splits)


def temporary_build_dir(parent: Path) -> tempfile.TemporaryDirectory:
    """A hidden folder inside `parent` for `build_dataset_dict(build_dir=...)`, removed when its `with` block ends.

    Made beside the output (`with temporary_build_dir(out.parent) as folder:`), on the disk that must hold the build
    anyway; that disk then holds it twice until the block ends.
    """
    return tempfile.TemporaryDirectory(prefix=".medbind-build-", dir=parent)
