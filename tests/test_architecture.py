"""The layer contracts of pyproject.toml (docs/architecture.md) hold, and would catch a
forbidden import if one were added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def lint(source_root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the package found under ``source_root``, with the repo's contracts."""
    env = {**os.environ, "PYTHONPATH": str(source_root)}
    return subprocess.run(
        [str(LINT), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_keeps_every_contract():
    result = lint(REPO / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        ("datasets/casme2.py", "import microexpr.preprocess.faces", "Readers never import"),
        ("inputs.py", "import microexpr.models", "Inputs never import models"),
        ("models/flow_nets.py", "import microexpr.train.trainer", "Layers"),
    ],
)
def test_a_planted_forbidden_import_breaks_a_contract(tmp_path, module, planted, contract):
    shutil.copytree(REPO / "src" / "microexpr", tmp_path / "microexpr")
    target = tmp_path / "microexpr" / module
    target.write_text(target.read_text() + f"\n{planted}  # planted by the test\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken), result.stdout
