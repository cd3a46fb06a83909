r"""The claims C1-C10 of docs/theory.md, one module each.

Every module holds its claim's grid, measure function, fixed criterion (a pure function
of the stored table returning a :class:`Verdict`), figure (table -> Figure) and the
history of its earlier formulations, and exposes them as ``CLAIM`` (a :class:`Claim`)::

    import heterosim as hs
    c1 = hs.claims.get("C1")
    table = hs.sweep.run(c1.grid(), c1.study, c1.measure)
    print(c1.criterion(table))            # REPRODUCED / NOT REPRODUCED / UNDECIDED, with CI
    fig = c1.figure(table)

``heterosim claims`` prints every claim's verdict from the stored tables
(:func:`verdicts`); ``heterosim plot C1`` draws one claim's figure.
"""
from __future__ import annotations

import importlib

import pandas as pd

from heterosim.claims.base import (NOT_REPRODUCED, OUTCOMES, REPRODUCED, UNDECIDED, Claim, Verdict,
                                   bootstrap_ci, decide, spearman_ci, undecided_reasons)

__all__ = ["Claim", "Verdict", "REPRODUCED", "NOT_REPRODUCED", "UNDECIDED", "OUTCOMES", "MODULES", "labels",
           "get", "verdict", "verdicts", "secondary_verdicts", "staleness", "bootstrap_ci", "spearman_ci", "undecided_reasons", "decide"]

#: Claim label -> the module that defines it (imported on first use).
MODULES = {
    "C1": "heterosim.claims.c1_block_scale",
    "C2": "heterosim.claims.c2_bound_tightness",
    "C3": "heterosim.claims.c3_zhang",
    "C4": "heterosim.claims.c4_class_imbalance",
    "C5": "heterosim.claims.c5_sign_lr",
    "C6": "heterosim.claims.c6_head_growth",
    "C7": "heterosim.claims.c7_ln_spread",
    "C8": "heterosim.claims.c8_transformer_gap",
    "C9": "heterosim.claims.c9_zhang_mechanism",
    "C10": "heterosim.claims.c10_sign_vs_gd",
}
#: Studies that are not claims of their own but have a figure and a criterion.
EXTRA = {"decomposition": "heterosim.claims.decomposition"}


def labels() -> list[str]:
    """``["C1", ..., "C10"]``."""
    return list(MODULES)


def get(label: str) -> Claim:
    """The :class:`Claim` named ``label`` (``"C1"``..``"C10"``, case-insensitive, or its study name)."""
    key = _resolve(label)
    return importlib.import_module({**MODULES, **EXTRA}[key]).CLAIM


def _resolve(label: str) -> str:
    if not isinstance(label, str):
        raise ValueError(f"a claim is named by its label (C1..C10) or study name; got {label!r}")
    up = label.upper()
    if up in MODULES:
        return up
    if label in EXTRA:
        return label
    for key, mod in {**MODULES, **EXTRA}.items():
        if mod.rsplit(".", 1)[1] == label:
            return key
    raise ValueError(f"unknown claim {label!r}; claims: {', '.join(MODULES)} (or their study names: "
                     f"{', '.join(m.rsplit('.', 1)[1] for m in {**MODULES, **EXTRA}.values())})")


def verdict(label: str, root="results", quick: bool = False) -> Verdict:
    """The claim's verdict from its stored table under ``root`` (``quick``: the reduced
    grid's table, ``<study>_quick``). Nothing stored: UNDECIDED, saying how to run it."""
    from heterosim import sweep
    claim = get(label)
    # a bridge command stores every run under its one study name (a reduced run as its own
    # config, which the criterion counts as reduced); a sweep's --quick grid has its own study
    study = claim.study + ("_quick" if quick and not claim.command else "")
    try:
        table = sweep.load(study, root)
    except ValueError:
        return Verdict(claim.label, claim.title, UNDECIDED, "(see the claim module)", "none", float("nan"), None,
                       0, 0, reasons=(f"no stored results for {study!r} under {root}; run "
                                      f"`{claim.how_to_run(quick)}`",))
    v = claim.criterion(table)
    stale = staleness(claim, table)
    if stale:
        v.details = f"{stale}\n  {v.details}" if v.details else stale
    return v


def staleness(claim: Claim, table) -> str:
    """A note when the stored rows of a swept claim were computed by other code than the
    code installed now (their code key differs: see :mod:`heterosim.codekey`), saying why
    and how to recompute; empty when they match, or for a claim the bridge measures. The
    verdict still reads the stored rows: the note says they are not this code's."""
    from pathlib import Path

    from heterosim import codekey
    if claim.measure is None or "code_key" not in table.columns:
        return ""
    script = Path(__file__).resolve().parents[2] / "experiments" / (claim.experiment or "")
    parts = codekey.code_parts(claim.measure, [script] if script.is_file() else [])
    stored = table.drop_duplicates("code_key")
    why = sorted({r for rec in stored.to_dict("records") for r in codekey.describe_changes(rec, parts)})
    if not why:
        return ""
    n = int((table["code_key"] != parts.code_key).sum())
    return (f"STALE: {n} of {len(table)} stored rows were computed by other code ({'; '.join(why)}); "
            f"`{claim.how_to_run()}` recomputes them")


def secondary_verdicts(label: str, root="results") -> list[Verdict]:
    """The further verdicts a claim module declares in ``SECONDARY`` (tuples of study name,
    criterion, command), e.g. C6's transformer run: one Verdict each, UNDECIDED (naming the
    command) when that study has nothing stored."""
    from heterosim import sweep
    mod = importlib.import_module({**MODULES, **EXTRA}[_resolve(label)])
    out = []
    for study, criterion, command in getattr(mod, "SECONDARY", ()):
        try:
            table = sweep.load(study, root)
        except ValueError:
            v = criterion(pd.DataFrame({"status": pd.Series([], dtype=object)}))
            v.reasons = (f"no stored results for {study!r} under {root}; run `{command}`",)
            out.append(v)
            continue
        out.append(criterion(table))
    return out


def verdicts(root="results", quick: bool = False, only=None) -> list[Verdict]:
    """Every claim's verdict (or those in ``only``), in label order, each followed by its
    secondary verdicts (the full tables only)."""
    out = []
    for lab in (only or labels()):
        out.append(verdict(lab, root, quick))
        if not quick:
            out.extend(secondary_verdicts(lab, root))
    return out
