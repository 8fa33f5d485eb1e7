"""What the repository promises its users: the README's commands and example, and the accelerate configs."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def fenced_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_ci_runs_exactly_the_readme_test_command():
    test_block = next(block for block in fenced_blocks("bash") if "pytest" in block)
    ci = (ROOT / ".ci" / "run").read_text()
    ci_lines = {line.strip() for line in ci.splitlines()}
    for line in test_block.strip().splitlines():
        assert line.strip() in ci_lines, f"README's test command line is not in .ci/run: {line}"


def test_readme_python_example_runs():
    example = next(block for block in fenced_blocks("python") if "from_preset" in block)
    namespace: dict = {}
    exec(compile(example, "README.md example", "exec"), namespace)
    assert tuple(namespace["cxr"].shape) == (1, 256)
    assert abs(float((namespace["ecg"] @ namespace["text"].T).item())) <= 1.0 + 1e-5


@pytest.mark.parametrize("config", sorted((ROOT / "training" / "accelerate").glob("*.yaml")), ids=lambda path: path.stem)
def test_accelerate_example_configs_load(config):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(config))
    assert loaded.num_processes == 8 and loaded.mixed_precision == "bf16"
