"""Figures from results tables: each function takes a table and returns a matplotlib Figure.

Nothing here runs an optimizer (compute -> table -> figures are separate stages, as in
benchopt's ``run`` / ``plot``). Each figure type is one function:

- :func:`complexity_curves`: a measured quantity (tuned T*(eps), a tuned lr) against a
  knob, one line per optimizer (median over seeds, the min-max band shaded), bounds dashed;
- :func:`class_loss_curves`: loss per class (or frequency group) against steps, one panel
  per optimizer, closed forms dashed;
- :func:`bound_scatter`: measured iterations against their bound, log-log, with the
  diagonal (points above it would be violations);
- :func:`head_norm_curves`: ||W_t - W_0||_F against steps, with the sign-method bound;
- :func:`grouped_bars`: a measured quantity per category (e.g. Zhang's cases) and optimizer.

:func:`save` writes a figure as PNG and PDF. Figures follow :data:`PAPER_RC` (type readable
at column width, 150 dpi PNG beside a PDF) and mark runs that never reached their target
(:func:`mark_unreached`). The claim modules (:mod:`heterosim.claims`) build their figures
from these pieces; ``heterosim plot C1`` and ``paper_figs/*.py`` draw them from stored
tables (:mod:`heterosim.claims.cli`). This module imports no claim and runs no optimizer.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["complexity_curves", "class_loss_curves", "bound_scatter", "head_norm_curves", "grouped_bars",
           "save", "paper_style", "mark_unreached", "PNG_DPI", "PAPER_RC"]

PNG_DPI = 150         # print resolution for papers (palette-quantised, so still small)
_PANEL_W, _PANEL_H = 3.4, 2.6   # one panel fits a column of a two-column paper (3.3-3.5 in)
#: Type sizes readable at column width (8-9 pt, as journals ask), TrueType fonts in PDFs.
PAPER_RC = {"font.size": 9, "axes.labelsize": 9, "axes.titlesize": 9, "xtick.labelsize": 8,
            "ytick.labelsize": 8, "legend.fontsize": 8, "figure.titlesize": 10, "lines.linewidth": 1.4,
            "pdf.fonttype": 42, "ps.fonttype": 42, "axes.spines.top": False, "axes.spines.right": False}
LOSS_FLOOR = 1e-12    # log-scale loss axes stop 12 decades below the largest loss
_BOUND_STYLES = ("--", ":", "-.", (0, (5, 2, 1, 2)))


def _plt():
    import matplotlib
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def paper_style(fn):
    """Decorator: draw the figure under :data:`PAPER_RC` (the user's own rcParams are left
    as they were)."""
    import functools

    @functools.wraps(fn)
    def styled(*args, **kwargs):
        with _plt().rc_context(PAPER_RC):
            return fn(*args, **kwargs)
    return styled


def mark_unreached(ax, xs, n_unreached, color, label=None) -> None:
    """Open triangles at the top of ``ax`` above each x where ``n_unreached`` > 0 runs never
    reached their target (so a figure never hides a censored run)."""
    import matplotlib.transforms as mtransforms
    xs, n = np.asarray(xs, float), np.asarray(n_unreached)
    sel = n > 0
    if not sel.any():
        return
    trans = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    ax.scatter(xs[sel], np.full(sel.sum(), 0.97), marker="^", s=22, facecolors="none", edgecolors=color,
               transform=trans, clip_on=False, zorder=5, label=label)

def _need(table: pd.DataFrame, cols: Sequence[str | None], what: str) -> None:
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"{what} takes a pandas DataFrame; got {type(table).__name__}")
    missing = [c for c in cols if c is not None and c not in table.columns]
    if missing:
        raise ValueError(f"{what}: the table lacks column(s) {missing}; it has {list(table.columns)}")
    if table.empty:
        raise ValueError(f"{what}: the table has no rows")


def _by_hue(sub: pd.DataFrame, hue: str, hues):
    """(h, rows of ``sub`` with hue h) for each h in ``hues`` that has rows, in that order."""
    for h in hues:
        g = sub[sub[hue] == h]
        if not g.empty:
            yield h, g


def _panels(table: pd.DataFrame, facet: str | None, ncols_max: int = 4):
    """One axis per facet value: numbers in ascending order, text in order of appearance."""
    plt = _plt()
    if facet is None:
        keys = [None]
    else:
        keys = _ordered(table[facet])
    n = len(keys)
    ncols = min(n, ncols_max)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(_PANEL_W * ncols, _PANEL_H * nrows), squeeze=False)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.set_visible(False)
    parts = [(k, table if k is None else table[table[facet] == k], flat[i]) for i, k in enumerate(keys)]
    return fig, parts


def _ordered(s: pd.Series) -> list:
    """Distinct values: numbers ascending, anything else (names) in order of appearance."""
    return _sorted_unique(s) if pd.api.types.is_numeric_dtype(s) else list(dict.fromkeys(s.tolist()))


def _sorted_unique(s: pd.Series) -> list:
    vals = list(dict.fromkeys(s.tolist()))
    try:
        return sorted(vals)
    except TypeError:
        return vals


def _finite(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return np.where(np.isfinite(v), v, np.nan)


def _colors(keys) -> dict:
    return {k: f"C{i % 10}" for i, k in enumerate(keys)}


@paper_style
def complexity_curves(table: pd.DataFrame, x: str, y: str = "T", hue: str = "optimizer", facet: str | None = None,
                      bounds: Mapping[str, str] | None = None, bound_hue: bool = False, logx: bool = False,
                      logy: bool = True, xlabel: str | None = None, ylabel: str | None = None,
                      title: str | None = None):
    """``y`` against the knob ``x``, one line per ``hue`` value (median over the other
    columns, e.g. seeds; the min-max band shaded), one panel per ``facet`` value.

    ``bounds`` maps bound columns to legend labels; each is drawn dashed (median per x),
    in black, or per ``hue`` in its colour with ``bound_hue``. Non-finite values (a target
    never reached) are left out of the median and band and marked by an open triangle at
    the top of the panel (see :func:`mark_unreached`), never dropped silently. Axes: log y (and log x with ``logx``): a knob already in
    decades (a spread) makes the plot log-log.
    """
    bounds = dict(bounds or {})
    _need(table, [x, y, hue, facet, *bounds], "complexity_curves")
    hues = _ordered(table[hue])
    colors = _colors(hues)
    fig, parts = _panels(table, facet)
    for key, sub, ax in parts:
        for h, g in _by_hue(sub, hue, hues):
            grp = g.assign(_y=_finite(g[y])).groupby(x)["_y"]
            med, lo, hi = grp.median(), grp.min(), grp.max()
            xs = med.index.to_numpy(float)
            ax.plot(xs, med.to_numpy(), marker="o", ms=3.5, lw=1.4, color=colors[h], label=str(h))
            if (hi > lo).any():
                ax.fill_between(xs, lo.to_numpy(), hi.to_numpy(), color=colors[h], alpha=0.15, lw=0)
            mark_unreached(ax, xs, grp.apply(lambda v: int(v.isna().sum())).reindex(med.index).to_numpy(),
                           colors[h])
            if bound_hue:
                for j, (col, lab) in enumerate(bounds.items()):
                    b = g.assign(_b=_finite(g[col])).groupby(x)["_b"].median()
                    ax.plot(b.index.to_numpy(float), b.to_numpy(), ls=_BOUND_STYLES[j % 4], lw=1.0,
                            color=colors[h], alpha=0.8)
        if not bound_hue:
            for j, (col, lab) in enumerate(bounds.items()):
                b = sub.assign(_b=_finite(sub[col])).groupby(x)["_b"].median()
                if b.notna().any():
                    ax.plot(b.index.to_numpy(float), b.to_numpy(), ls=_BOUND_STYLES[j % 4], lw=1.1,
                            color="k", alpha=0.75, label=lab)
        ax.set_yscale("log" if logy else "linear")
        ax.set_xscale("log" if logx else "linear")
        ax.set_xlabel(xlabel or x)
        ax.set_ylabel(ylabel or y)
        if key is not None:
            ax.set_title(f"{facet} = {key}")
        ax.grid(True, which="major", alpha=0.3)
    handles, labels = parts[0][2].get_legend_handles_labels()
    if not np.isfinite(_finite(table[y])).all():
        from matplotlib.lines import Line2D
        handles.append(Line2D([], [], ls="", marker="^", mfc="none", mec="k", ms=5))
        labels.append("run(s) not reaching eps")
    if bound_hue and bounds:
        from matplotlib.lines import Line2D
        handles += [Line2D([], [], color="k", ls=_BOUND_STYLES[j % 4], lw=1.0) for j in range(len(bounds))]
        labels += list(bounds.values())
    return _finish(fig, handles, labels, title)


def _finish(fig, handles, labels, title):
    """One legend for all panels, right of them; the title above."""
    width = fig.get_figwidth()
    fig.set_figwidth(width + 1.6)
    fig.legend(handles, labels, loc="center right", frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, width / (width + 1.6), 1))
    return fig


@paper_style
def class_loss_curves(table: pd.DataFrame, step: str = "step", loss: str = "loss", group: str = "group",
                      facet: str | None = "optimizer", reference: str | None = None, group_label: str = "class",
                      logy: bool = True, logx: bool = False, title: str | None = None):
    """Loss of each class (or frequency group) against steps, one panel per ``facet`` value.
    Groups are coloured from the most frequent (dark) to the rarest (light) in the order of
    ``group``; ``reference`` (a closed form) is drawn dashed where present. ``logx``: a
    symmetric-log step axis (linear up to 1, so step 0 stays visible)."""
    _need(table, [step, loss, group, facet, reference], "class_loss_curves")
    plt = _plt()
    fig, parts = _panels(table, facet)
    cmap = plt.get_cmap("viridis")
    for key, sub, ax in parts:
        groups = _sorted_unique(sub[group])
        for i, gval in enumerate(groups):
            g = sub[sub[group] == gval].sort_values(step)
            c = cmap(0.9 * i / max(len(groups) - 1, 1))
            lab = None
            if i == 0:
                lab = f"{group_label} {gval} (most frequent)"
            elif i == len(groups) - 1:
                lab = f"{group_label} {gval} (rarest)"
            ax.plot(g[step], _finite(g[loss]), color=c, lw=1.2, label=lab)
            if reference is not None and g[reference].notna().any():
                ax.plot(g[step], _finite(g[reference]), color="k", lw=0.7, ls="--", alpha=0.7,
                        label="closed form" if i == 0 else None)
        ax.set_yscale("log" if logy else "linear")
        if logy:  # losses that reach 0 in floating point would stretch the axis over 100s of decades
            top = np.nanmax(_finite(sub[loss]))
            if np.isfinite(top) and top > 0:
                ax.set_ylim(max(ax.get_ylim()[0], top * LOSS_FLOOR), top * 3)
        if logx:
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xlim(left=0)
        ax.set_xlabel(step)
        ax.set_ylabel(loss)
        if key is not None:
            ax.set_title(f"{key}")
        ax.grid(True, alpha=0.3)
        ax.legend(frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


@paper_style
def bound_scatter(table: pd.DataFrame, measured: str = "T", bound: str = "T_bound", hue: str | None = "check",
                  title: str | None = None):
    """Measured iterations against their bound, log-log, one colour per ``hue`` value. The
    diagonal is where a bound would be exact; points above it (shaded) would violate it."""
    _need(table, [measured, bound, hue], "bound_scatter")
    plt = _plt()
    t = table.assign(_m=_finite(table[measured]), _b=_finite(table[bound]))
    t = t[(t["_m"] > 0) & (t["_b"] > 0)]
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    keys = [None] if hue is None else list(dict.fromkeys(t[hue]))
    colors = _colors(keys)
    for k in keys:
        g = t if k is None else t[t[hue] == k]
        ax.scatter(g["_b"], g["_m"], s=12, alpha=0.75, color=colors[k], label=None if k is None else str(k))
    if not t.empty:
        lo = min(t["_b"].min(), t["_m"].min()) / 2
        hi = max(t["_b"].max(), t["_m"].max()) * 2
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, label="measured = bound")
        ax.fill_between([lo, hi], [lo, hi], [hi, hi], color="red", alpha=0.06, lw=0)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"bound ({bound})")
    ax.set_ylabel(f"measured ({measured})")
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False, loc="upper left")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


@paper_style
def head_norm_curves(table: pd.DataFrame, step: str = "step", value: str = "head_norm", hue: str = "optimizer",
                     facet: str | None = "C", bound: str | None = "head_bound", logy: bool = True,
                     title: str | None = None):
    """||W_t - W_0||_F (``value``) against steps, one line per ``hue`` (median over seeds),
    one panel per ``facet``; the bound eta t sqrt(C h) dashed."""
    _need(table, [step, value, hue, facet, bound], "head_norm_curves")
    hues = list(dict.fromkeys(table[hue]))
    colors = _colors(hues)
    fig, parts = _panels(table, facet)
    for key, sub, ax in parts:
        for h, g in _by_hue(sub, hue, hues):
            med = g.assign(_v=_finite(g[value])).groupby(step)["_v"].median()
            ax.plot(med.index, med.to_numpy(), color=colors[h], lw=1.3, label=str(h))
        if bound is not None:
            b = sub.groupby(step)[bound].median()
            ax.plot(b.index, b.to_numpy(), color="k", ls="--", lw=1.0, label="eta t sqrt(C h)")
        ax.set_yscale("log" if logy else "linear")
        ax.set_xlabel(step)
        ax.set_ylabel("||W_t - W_0||_F")
        if key is not None:
            ax.set_title(f"{facet} = {key}")
        ax.grid(True, alpha=0.3)
    handles, labels = parts[0][2].get_legend_handles_labels()
    return _finish(fig, handles, labels, title)


@paper_style
def grouped_bars(table: pd.DataFrame, x: str, y: str = "T", hue: str = "optimizer", logy: bool = True,
                 ylabel: str | None = None, title: str | None = None):
    """Median ``y`` per category ``x`` and ``hue`` as grouped bars (min-max over seeds as
    error bars); a bar whose median is not finite (target never reached) is left out, and
    every category with an unreached run gets an open triangle at the top."""
    _need(table, [x, y, hue], "grouped_bars")
    plt = _plt()
    cats = list(dict.fromkeys(table[x]))
    hues = list(dict.fromkeys(table[hue]))
    colors = _colors(hues)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(cats) + 1.5), 3.6))
    width = 0.8 / len(hues)
    for j, h in enumerate(hues):
        g = table[table[hue] == h]
        g = g.assign(_y=_finite(g[y]))
        stats = g.groupby(x)["_y"].agg(["median", "min", "max"]).reindex(cats)
        pos = np.arange(len(cats)) - 0.4 + width * (j + 0.5)
        med = stats["median"].to_numpy()
        err = np.vstack([med - stats["min"].to_numpy(), stats["max"].to_numpy() - med])
        ax.bar(pos, med, width, color=colors[h], label=str(h), yerr=np.nan_to_num(err), capsize=2,
               error_kw={"lw": 0.8})
        mark_unreached(ax, pos, g.groupby(x)["_y"].apply(lambda v: int(v.isna().sum())).reindex(cats)
                       .fillna(0).to_numpy(), colors[h])
    ax.set_xticks(np.arange(len(cats)))
    ax.set_xticklabels([str(c) for c in cats])
    ax.set_yscale("log" if logy else "linear")
    ax.set_ylabel(ylabel or y)
    ax.grid(True, axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    return _finish(fig, handles, labels, title)


def save(fig, out_dir: str | Path, name: str, dpi: int = PNG_DPI) -> list[Path]:
    """Write ``<out_dir>/<name>.png`` (at ``dpi``, palette-quantised) and ``.pdf``; close the
    figure; return the paths."""
    import io

    from PIL import Image
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    buf.seek(0)
    with Image.open(buf) as im:  # a 256-colour palette: line plots look the same at a third of the bytes
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(paths[0], optimize=True)
    fig.savefig(paths[1])
    _plt().close(fig)
    return paths
