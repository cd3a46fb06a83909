"""docs/theory.md is the package's statement of the theory: nothing points elsewhere for it,
it covers every claim and every bound label the code uses, and the links of the docs resolve."""
from __future__ import annotations

import ast
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

import heterosim.verify as hv

ROOT = Path(__file__).resolve().parents[1]
THEORY = ROOT / "docs" / "theory.md"
# the files of the repository that may refer to the theory (this test names the old file itself)
SCANNED = ["README.md", "pyproject.toml", "heterosim", "experiments", "paper_figs", "docs", "tests", "benchmarks"]
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".hypothesis", "out"}


def _text_files():
    for name in SCANNED:
        path = ROOT / name
        paths = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
        for p in paths:
            if p == Path(__file__).resolve() or SKIP_DIRS & set(p.relative_to(ROOT).parts):
                continue
            data = p.read_bytes()
            if b"\0" in data:
                continue  # binary (figures, compiled files)
            try:
                yield p, data.decode("utf-8")
            except UnicodeDecodeError:
                continue


def test_no_file_mentions_the_old_theory_file():
    old = "THEORY" + ".md"
    hits = [f"{p.relative_to(ROOT)}:{i}" for p, text in _text_files()
            for i, line in enumerate(text.splitlines(), 1) if old in line]
    assert not hits, f"{old} is still referenced (use docs/theory.md): {hits}"


# ------------------------------------------------------------------ claims and bound labels
def _headings(text: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^#{1,6}\s+(.*)$", _strip_code_blocks(text), re.M)]


@pytest.mark.parametrize("n", range(1, 11))
def test_theory_has_a_section_per_claim(n):
    text = THEORY.read_text()
    assert any(re.match(rf"C{n}\b", h) for h in _headings(text)), f"docs/theory.md has no section for C{n}"
    assert f'<a id="c{n}"></a>' in text, f"docs/theory.md lacks the anchor #c{n}"


def _labels_in_bounds_module() -> set[str]:
    """The names that heterosim/bounds.py gives its Bound objects, read from its source: the first
    argument of ``_sublinear``/``_linear`` and the ``name=`` of ``Bound(...)``."""
    import heterosim.bounds as hb
    tree = ast.parse(Path(hb.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        if node.func.id in ("_sublinear", "_linear") and node.args and isinstance(node.args[0], ast.Constant):
            names.add(node.args[0].value)
        if node.func.id == "Bound":
            names |= {k.value.value for k in node.keywords if k.arg == "name" and isinstance(k.value, ast.Constant)}
    return names


def test_bound_label_sources_are_found():
    labels = _labels_in_bounds_module()
    assert {"B1", "B2", "S1", "S2", "Q1", "Q5", "head-growth"} <= labels, labels
    assert "B1'" in hv.BOUND_NAMES


def test_theory_defines_every_bound_label_the_code_uses():
    text = THEORY.read_text()
    labels = set(hv.BOUND_NAMES) | _labels_in_bounds_module()
    missing = sorted(lab for lab in labels if f"`{lab}`" not in text)
    assert not missing, f"docs/theory.md does not define the bound labels {missing}"
    # each label appears in the registry table, with a statement further down
    registry = text.split("### Label registry", 1)[1].split("\n### ", 1)[0]
    bases = {re.match(r"[A-Za-z]+[0-9]*'?", lab).group(0) for lab in labels}
    assert not sorted(b for b in bases if f"`{b}" not in registry)


# ------------------------------------------------------------------ links of the docs
def _strip_code_blocks(text: str) -> str:
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = path.read_text()
    heads = [m.group(1) for m in re.finditer(r"^#{1,6}\s+(.*)$", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S), re.M)]
    return {_slug(h) for h in heads} | set(re.findall(r"""<a\s+(?:id|name)=["']([^"']+)["']""", text))


LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    bad = []
    for target in LINK.findall(_strip_code_blocks(doc.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (doc.parent / unquote(path)).resolve() if path else doc
        if ROOT not in dest.parents and dest != ROOT:
            bad.append(f"{target} (outside the repository)")
        elif not dest.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target} (no such section in {dest.relative_to(ROOT)})")
    assert not bad, f"{doc.relative_to(ROOT)}: broken links: {bad}"
