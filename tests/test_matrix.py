"""The README's validity matrix is the one the loss records give (bench.matrix), and
`python -m bench.matrix FILE` rewrites a stale block in place, leaving the rest of the file as it was."""
import runpy
import sys
from pathlib import Path

import pytest

from bench.losses import ACTIVATIONS, LOSSES, VALIDITY
from bench.matrix import README_END, README_START, readme_block, validity_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_readme_validity_matrix_is_generated_from_the_table():
    block = readme_block((ROOT / "README.md").read_text())
    assert block is not None, "README.md has no validity-matrix markers"
    assert block == validity_markdown(), "README.md is stale: run `python -m bench.matrix README.md`"


def test_the_matrix_has_a_cell_per_pairing_and_a_reason_per_cross():
    text = validity_markdown()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    builtin = [name for name in LOSSES if not LOSSES[name].source]
    assert len(rows) == 3 * len(builtin)  # one row per loss in each task's table
    assert all(row.count("|") == len(ACTIVATIONS) + 2 for row in rows)
    # binary: bce on sigmoid is valid and canonical; bce on a linear output is refused with its reason
    binary = text.split("**binary**", 1)[1].split("**multiclass**", 1)[0]
    bce = next(line for line in binary.splitlines() if line.startswith("| `bce` |")).split(" | ")
    columns = list(ACTIVATIONS)
    assert "**auto**" in bce[1 + columns.index("sigmoid")]
    assert bce[1 + columns.index("linear")].startswith("✗ ")
    assert VALIDITY[("binary", "linear", "bce")] in binary


# run_module executes a second copy of the already imported module, as `python -m` would run it fresh
@pytest.mark.filterwarnings("ignore:'bench.matrix' found in sys.modules:RuntimeWarning")
def test_the_cli_rewrites_a_stale_block_and_keeps_the_rest(tmp_path, monkeypatch, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{README_START}\nstale table\n{README_END}\nafter\n")
    monkeypatch.setattr(sys, "argv", ["bench.matrix", str(readme)])
    runpy.run_module("bench.matrix", run_name="__main__")
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n") and text.endswith(f"{README_END}\nafter\n")
    assert "stale table" not in text and readme_block(text) == validity_markdown()
    monkeypatch.setattr(sys, "argv", ["bench.matrix"])  # no file: the table on stdout
    runpy.run_module("bench.matrix", run_name="__main__")
    assert capsys.readouterr().out == validity_markdown()
