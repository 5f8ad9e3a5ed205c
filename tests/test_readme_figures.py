"""The README's figures come from one script (issue 21, item 12): every table of run
figures sits between markers that benchmarks/readme_figures.py writes, and its
requests, tokens and the sentence under it are what the script measures now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import cli_env

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import readme_figures  # noqa: E402


def test_every_figures_block_is_the_scripts_rendering():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = readme_figures.blocks(text)
    assert set(found) == set(readme_figures.TASKS)
    for name, block in found.items():
        stated = readme_figures.parse(block)
        assert set(stated) == set(readme_figures.MODES), name
        assert readme_figures.render(name, stated) == block, name  # nothing edited by hand


def test_the_readme_figures_match_a_fresh_measurement():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "readme_figures.py"), "--check"],
                          cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
