"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`), for the installed transformers version.

transformers does not install its `tests/` package, and only PyPI is reachable from CI, so the suite takes the files
from the source distribution on PyPI (`pip download --no-binary :all: transformers==<installed version>`), extracts
its top-level `tests/*.py` once into a cache folder (`MEDBIND_TRANSFORMERS_TESTS_CACHE`, default
`~/.cache/medbind/transformers-tests`) and imports them as the package `transformers_tests`. The sdist ships the
top-level test modules but not their subpackages; of those, the common modules import three names that cannot apply
to MedBind, given here instead (`_ABSENT_SUBMODULES`). Where PyPI cannot be reached and nothing is cached, the
caller skips with the reason.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

import transformers

PACKAGE = "transformers_tests"
CACHE = Path(os.environ.get("MEDBIND_TRANSFORMERS_TESTS_CACHE", Path.home() / ".cache/medbind/transformers-tests"))


class ExportTesterMixin:
    """No export tests: they drive transformers' own exporters over whole models (MedBind exports per tower)."""


class GenerationTesterMixin:
    """MedBind does not generate; `ModelTesterMixin` only checks that a non-generative tester lacks this mixin."""


# The sdist's common modules import these from subpackages it does not ship. `config_common_kwargs` is only read for
# configs without sub-configs (`ConfigTester.check_config_arguments_init` returns at once for composite ones).
_ABSENT_SUBMODULES = {
    "exporters": {"test_export": {"ExportTesterMixin": ExportTesterMixin}},
    "generation": {"test_utils": {"GenerationTesterMixin": GenerationTesterMixin}},
    "utils": {"test_configuration_utils": {"config_common_kwargs": {}}},
}


def _download(target: Path) -> None:
    """Extract the top-level `tests/*.py` of the installed version's sdist into `target` (atomically)."""
    version = transformers.__version__
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
             f"transformers=={version}", "--dest", scratch],
            check=True, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        (archive,) = Path(scratch).glob("transformers-*.tar.gz")
        staging = Path(scratch) / "tests"
        staging.mkdir()
        (staging / "__init__.py").write_text("")  # the sdist's tests/ is a package without one
        with tarfile.open(archive) as sdist:
            for member in sdist.getmembers():
                parts = Path(member.name).parts
                if len(parts) == 3 and parts[1] == "tests" and parts[2].endswith(".py") and member.isfile():
                    (staging / parts[2]).write_bytes(sdist.extractfile(member).read())
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(staging, target)
        except OSError:  # another process (an xdist worker) put it there first
            if not (target / "test_modeling_common.py").is_file():
                raise
            shutil.rmtree(staging, ignore_errors=True)


def load() -> types.ModuleType:
    """The `transformers_tests` package for the installed transformers, `.test_modeling_common` and
    `.test_configuration_common` imported; RuntimeError (saying why) where no PyPI and no cached copy has the sdist."""
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE]
    folder = CACHE / transformers.__version__ / "tests"
    if not (folder / "test_modeling_common.py").is_file():
        try:
            _download(folder)
        except (subprocess.SubprocessError, OSError, ValueError) as error:
            detail = getattr(error, "stderr", "") or error
            raise RuntimeError(
                f"could not get transformers {transformers.__version__}'s common tests from its PyPI sdist into "
                f"{folder}: {detail}"
            ) from error
    init = folder / "__init__.py"
    spec = importlib.util.spec_from_file_location(PACKAGE, init, submodule_search_locations=[str(folder)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    spec.loader.exec_module(package)
    for subpackage, modules in _ABSENT_SUBMODULES.items():
        parent = types.ModuleType(f"{PACKAGE}.{subpackage}")
        parent.__path__ = []
        sys.modules[parent.__name__] = parent
        for name, attributes in modules.items():
            module = types.ModuleType(f"{parent.__name__}.{name}")
            module.__dict__.update(attributes)
            sys.modules[module.__name__] = module
            setattr(parent, name, module)
    importlib.import_module(f"{PACKAGE}.test_modeling_common")
    importlib.import_module(f"{PACKAGE}.test_configuration_common")
    return package
