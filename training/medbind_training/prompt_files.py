"""Zero-shot prompt files (`prompts/*.yaml`, package data): reading, validating and sampling them (paper Table 2)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import yaml

PROMPTS = files("medbind_training") / "prompts"  # package data: a wheel finds it as a checkout does
DEMO_PROMPTS = PROMPTS / "demo"  # the same classes in the synthetic demo reports' wording
_PROMPT_FILE_KEYS = {"datasets", "template", "classes", "prompts_per_class"}


@dataclass(frozen=True)
class PromptSet:
    """The prompts of one dataset's classes (`classes`: class name as in the dataset -> its prompts, in file
    order), read from a prompt file (format: `prompts/ecg_superclasses.yaml`); `prompts_per_class` is how many of a
    class's prompts to draw (seeded) and average, None for all.
    """

    classes: dict[str, tuple[str, ...]]
    prompts_per_class: int | None = None

    def sample(self, seed: int) -> dict[str, list[str]]:
        """Each class's prompts: all of them, or `prompts_per_class` drawn without replacement (seeded)."""
        rng = np.random.default_rng(seed)
        return {
            name: list(prompts)
            if self.prompts_per_class is None or self.prompts_per_class >= len(prompts)
            else [prompts[i] for i in sorted(rng.choice(len(prompts), self.prompts_per_class, replace=False))]
            for name, prompts in self.classes.items()
        }


def read_prompt_file(path: str | Path) -> tuple[list[str], PromptSet]:
    """One prompt file (format: `training/medbind_training/prompts/ecg_superclasses.yaml`; JSON is YAML too):
    `(dataset names, prompts)`, the `datasets:` it names (its file stem when it names none) and its `PromptSet`.
    """
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read a prompt file: {error}") from error
    if isinstance(spec, dict) and (unknown := set(spec) - _PROMPT_FILE_KEYS):
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; a prompt file has {sorted(_PROMPT_FILE_KEYS)}")
    if not isinstance(spec, dict) or not isinstance(spec.get("classes"), dict):
        raise ValueError(f"{path}: a prompt file needs a `classes:` mapping of class -> prompt or list of prompts")
    template = spec.get("template", "{label}")
    classes = {
        str(name): tuple(template.format(label=phrase) for phrase in ([value] if isinstance(value, str) else value))
        for name, value in spec["classes"].items()
    }
    if not classes or not all(prompts and all(p.strip() for p in prompts) for prompts in classes.values()):
        raise ValueError(f"{path}: every class needs at least one non-empty prompt, got {classes}")
    return list(spec.get("datasets") or [path.stem]), PromptSet(classes, spec.get("prompts_per_class"))


def load_prompt_sets(directory: str | Path | None = None) -> dict[str, PromptSet]:
    """Every prompt file (`*.yaml`) of a folder (None: the packaged `training/medbind_training/prompts`), by dataset
    name; a dataset named by two files is an error.
    """
    folder = Path(directory) if directory is not None else PROMPTS
    sets: dict[str, PromptSet] = {}
    for path in sorted(folder.iterdir(), key=lambda item: item.name):
        if not path.name.endswith((".yaml", ".yml")):
            continue
        dataset_names, prompt_set = read_prompt_file(path)
        for dataset_name in dataset_names:
            if dataset_name in sets:
                raise ValueError(f"{path}: prompts for {dataset_name!r} are already given by another file")
            sets[dataset_name] = prompt_set
    return sets


def prompt_sets(prompt_dir: str | Path | None = None) -> dict[str, PromptSet]:
    """The packaged prompt sets, those of `prompt_dir`'s files replacing the packaged ones of the datasets they name."""
    return load_prompt_sets() | (load_prompt_sets(prompt_dir) if prompt_dir is not None else {})
