"""What the repository promises its users: the README's commands and Python snippets, and the accelerate configs."""

import os
import re
import subprocess
import sys
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


@pytest.mark.slow
def test_every_python_snippet_of_the_readme_runs(tmp_path):
    # In order, as a reader runs them (a later one loads the folder an earlier one saves), in a fresh folder, offline,
    # with the code of saved folders cached in tmp_path rather than in the user's Hugging Face cache.
    snippets = fenced_blocks("python")
    assert len(snippets) >= 2
    script = tmp_path / "readme_snippets.py"
    script.write_text("\n\n".join(snippets))
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "hf_modules")}
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"a README snippet failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    assert "torch.Size([1, 256])" in result.stdout and "2 256" in result.stdout


@pytest.mark.parametrize("config", sorted((ROOT / "training" / "accelerate").glob("*.yaml")), ids=lambda path: path.stem)
def test_accelerate_example_configs_load(config):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(config))
    assert loaded.num_processes == 8 and loaded.mixed_precision == "bf16"


def test_the_entry_points_only_run_the_library():
    """Each script in training/ imports one library function and runs it: no script imports another one."""
    for script in sorted((ROOT / "training").glob("*.py")):
        imports = [line for line in script.read_text().splitlines() if line.startswith(("import ", "from "))]
        assert len(imports) == 1 and imports[0].startswith("from medbind_training."), (script, imports)
