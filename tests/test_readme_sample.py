"""The README's demo sample output is the code's: cells of its T* table recomputed.

README.md, "What the demo prints", pastes what ``heterosim demo`` printed. This test parses
that table and recomputes a cheap, deterministic part of it through the demo's own pipeline
(:func:`heterosim.demo.demo_grids` for a subset of its arms, each study's claim measure as
:func:`heterosim.demo.run_demo` calls it, the demo's table and its formatting): the
block-scale columns (r = 0, 1, 2) for GD, Adam and SignGD, and Zhang case 2 for Adam, the cell
most sensitive to rounding (issue 11: the fast and plain paths once disagreed on it). The
numbers are the same on every engine path (heterosim.engine, "One T per config"), so the README
holds whichever path a reader's machine takes.
"""
import re
from pathlib import Path

import pytest

from heterosim import demo, sweep

README = Path(__file__).resolve().parents[1] / "README.md"
STEPS = 20_000  # the demo's default budget, as the README's run used
#: (study, demo arms to run, the problem columns to compare)
CHECKED = [("demo/c1_block_scale", ("sgd", "adam", "signsgd"), ("block_scale r=0", "block_scale r=1", "block_scale r=2")),
           ("demo/c3_zhang", ("adam",), ("zhang_case2",))]


def _parse(text: str) -> dict:
    """{(row, problem column): cell} of a T* table as demo.format_table prints it (pandas'
    fixed-width layout: the row name left-aligned, every column right-aligned to its header)."""
    lines = text.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("problem "))
    header = lines[head]
    assert lines[head + 1].startswith("optimizer")
    labels = [label for label, *_ in demo.demo_problems()]
    ends = {lab: header.index(lab) + len(lab) for lab in labels if lab in header}
    first = min(header.index(lab) for lab in ends)  # where the first problem column starts
    table = {}
    for ln in lines[head + 2:]:
        if not ln.strip():
            break
        name = re.split(r"\s{2,}", ln[:first].strip())[0]  # the index; a wider column may follow
        for lab, end in ends.items():
            table[(name, lab)] = ln[:end].split()[-1]
    return table


def _readme_table() -> dict:
    text = README.read_text()
    section = text[text.index("## What the demo prints"):]
    return _parse(re.search(r"```\n(.*?)```", section, re.S).group(1))


def _measure(study):
    """The measure function and zip of a demo study, as run_demo picks them."""
    from heterosim.claims import get
    claim = get({"demo/c1_block_scale": "C1", "demo/c3_zhang": "C3"}[study])
    return claim.measure, (claim.zip or None)


def test_readme_table_has_every_demo_cell():
    table = _readme_table()
    assert {lab for _, lab in table} == {label for label, *_ in demo.demo_problems()}
    assert len({row for row, _ in table}) >= len(demo.DEMO_OPTIMIZERS)


@pytest.mark.parametrize("study,arms,columns", CHECKED, ids=[c[0] for c in CHECKED])
def test_readme_cells_are_what_the_demo_computes(study, arms, columns, tmp_path):
    grid = demo.demo_grids(arms, steps=STEPS)[study]
    fn, zip_ = _measure(study)
    rows = sweep.run(grid, study, fn, zip=zip_, root=tmp_path, n_jobs=1, progress=False, verbose=False)
    mine = _parse(demo.format_table(demo._t_table({study: rows}), STEPS))
    readme = _readme_table()
    checked = [(row, lab) for row, lab in mine if lab in columns]
    assert len(checked) == len(arms) * len(columns)
    for key in checked:
        assert readme[key] == mine[key], key
