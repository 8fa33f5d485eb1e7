"""The one argument reader of the three entry points: dataclasses parsed by `HfArgumentParser`, from a preset file
(`--preset demo`, `--preset my_run.yaml`, or `my_run.yaml` first) and the command line.

A preset is a YAML (or JSON) file of argument values: a name (`demo`, `paper`) names one of the entry point's
packaged files, `presets/{entry}/{name}.yaml`; any other value is a path. Its values become the parser's defaults,
so every argument given on the command line overrides the file's. A string value may name other arguments in braces,
filled in from the final values: `output_dir: outputs/prompt-tuning-demo/{task}-{mode}`.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

PRESETS = files("medbind_training") / "presets"  # package data: a wheel finds them as a checkout does
PRESET_SUFFIXES = (".yaml", ".yml", ".json")
NONE_STRINGS = frozenset({"none", "None", ""})  # what a command line passes for "no value" (`--text_backbone none`)


def optional_argument(value: str | None) -> str | None:
    """A command-line value, or None where it is absent or says none (`NONE_STRINGS`)."""
    return None if value is None or value in NONE_STRINGS else value


def packaged_presets(entry: str) -> list[str]:
    """The names of the presets packaged for an entry point (`pretrain`, `prompt_tune`)."""
    folder = PRESETS / entry
    if not folder.is_dir():
        return []
    return sorted(path.name.rsplit(".", 1)[0] for path in folder.iterdir() if path.name.endswith(PRESET_SUFFIXES))


def read_preset(preset: str, entry: str) -> tuple[str, dict[str, Any]]:
    """`(where, values)` of a preset: a packaged name of `entry`'s, or a YAML / JSON file."""
    packaged = PRESETS / entry / f"{preset}.yaml"  # (a folder that does not exist holds no file)
    if packaged.is_file():
        where, text = f"preset {preset!r} ({packaged})", packaged.read_text()
    elif Path(preset).is_file():
        where, text = str(Path(preset).resolve()), Path(preset).read_text()
    else:
        raise FileNotFoundError(
            f"--preset {preset}: neither a preset of {entry} ({', '.join(packaged_presets(entry))}) nor a YAML / JSON file"
        )
    try:
        values = json.loads(text) if preset.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"{where}: cannot parse it: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"{where}: a preset holds a mapping of argument names to values, got {type(values).__name__}")
    return where, values


def parse_arguments(
    dataclass_types: Sequence[type], entry: str, argv: Sequence[str] | None = None, default_preset: str | None = None
) -> tuple:
    """Parse a preset (`--preset NAME_OR_FILE`, or a `FILE.yaml` / `.json` first argument) and the command line into
    `dataclass_types`' instances, in order; the command line (default `sys.argv[1:]`) wins over the preset, the
    preset over the dataclass defaults. `entry` names the packaged presets' folder (`presets/{entry}/`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].endswith(PRESET_SUFFIXES) and not argv[0].startswith("-"):
        argv = ["--preset", *argv]
    parser = HfArgumentParser(dataclass_types)
    parser.add_argument(
        "--preset",
        default=default_preset,
        help=f"a YAML / JSON file of argument values, or the name of a packaged one ({', '.join(packaged_presets(entry))}); "
        "the command line overrides its values",
    )
    preset = argparse.ArgumentParser(add_help=False)
    preset.add_argument("--preset")
    name = preset.parse_known_args(argv)[0].preset or default_preset
    values: dict[str, Any] = {}
    if name:
        where, values = read_preset(name, entry)
        parser.set_defaults(**_typed_defaults(parser, values, where))
    *parsed, _ = parser.parse_args_into_dataclasses(args=argv)  # the last is the namespace holding --preset
    names = {action.dest for action in parser._actions}
    if templates := {key: value for key, value in values.items() if _is_template(value, names)}:
        # Filled in from the parsed values, then parsed again: a dataclass's __post_init__ sees the final value.
        found = {name: value for instance in parsed for name, value in vars(instance).items()}
        parser.set_defaults(**{key: template.format(**found) for key, template in templates.items()})
        *parsed, _ = parser.parse_args_into_dataclasses(args=argv)
    return tuple(parsed)


def _is_template(value: Any, names: set[str]) -> bool:
    """Whether a preset value is a string whose braces all name arguments (a JSON value such as
    `config_overrides` has braces too)."""
    if not isinstance(value, str):
        return False
    try:
        fields = {field for _, field, _, _ in string.Formatter().parse(value) if field is not None}
    except ValueError:  # unmatched braces
        return False
    return bool(fields) and fields <= names


def _typed_defaults(parser: HfArgumentParser, values: dict[str, Any], where: str) -> dict[str, Any]:
    """The preset's values, converted by each argument's type as a command-line string would be."""
    actions = {action.dest: action for action in parser._actions}  # argparse lists its actions nowhere public
    if unknown := sorted(set(values) - set(actions) - {"preset"}):
        raise ValueError(f"{where}: no such argument {unknown}; `--help` lists the arguments")
    defaults = {}
    for key, value in values.items():
        action = actions[key]
        action.required = False  # the preset gives it
        convert = action.type or (lambda text: text)
        if isinstance(value, list):
            defaults[key] = [convert(str(item)) for item in value]
        elif value is None or isinstance(value, bool):
            defaults[key] = value
        else:
            defaults[key] = convert(str(value))
    return defaults

