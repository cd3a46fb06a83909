"""Figures of the bridge studies: each takes a results table and returns a matplotlib Figure.

Nothing here trains or measures; the tables come from :mod:`heterosim.bridge.studies`
(Parquet under ``results/bridge_*``), the scripts in ``paper_figs/bridge_*.py`` read them,
call these functions and save the figures.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["init_spread_figure", "spread_finetune_figure", "head_growth_figure", "gap_figure"]

LN_STYLE = {"pre": dict(ls="--", marker="o"), "post": dict(ls="-", marker="s")}
OPT_COLORS = {"signsgd": "C3", "signum": "C1", "adam": "C0", "sgd": "C2", "torch_adam": "C0", "torch_sgd": "C2"}


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def init_spread_figure(df: pd.DataFrame):
    """C7 at init. Top: spread of the block gradient RMS (std of log10, decades) against depth,
    Pre-LN dashed, Post-LN solid, one colour per width, one column per init. Bottom: the last
    layer's FFN gradient ||dL/dW^{2,L}||_F against depth, with Xiong et al.'s slopes
    (Pre-LN L^-1/2, Post-LN L^0) drawn through the first point."""
    plt = _plt()
    inits = sorted(df["init"].unique())
    fig, axes = plt.subplots(2, len(inits), figsize=(5.2 * len(inits), 7.5), squeeze=False)
    widths = sorted(df["d_model"].unique())
    colors = {d: f"C{i}" for i, d in enumerate(widths)}
    for j, init in enumerate(inits):
        sub = df[df["init"] == init]
        g = sub.groupby(["ln", "d_model", "layers"])
        mean, std = g[["std_log10_rms", "last_ffn_grad"]].mean(), g[["std_log10_rms", "last_ffn_grad"]].std()
        for (ln, d), part in mean.groupby(level=[0, 1]):
            L = part.index.get_level_values("layers")
            e = std.loc[part.index, "std_log10_rms"].fillna(0)
            axes[0, j].errorbar(L, part["std_log10_rms"], yerr=e, color=colors[d], capsize=2, **LN_STYLE[ln],
                                label=f"{ln}-LN, d={d}")
            axes[1, j].plot(L, part["last_ffn_grad"], color=colors[d], **LN_STYLE[ln])
            slope = -0.5 if ln == "pre" else 0.0
            ref = part["last_ffn_grad"].iloc[0] * (np.asarray(L, float) / L[0]) ** slope
            axes[1, j].plot(L, ref, color=colors[d], lw=0.8, alpha=0.5, ls=":")
        axes[0, j].set(xscale="log", xlabel="depth L", ylabel="std over blocks of log10 ||g_b||/sqrt(d_b)",
                       title=f"{init} init: gradient-norm spread at init")
        axes[1, j].set(xscale="log", yscale="log", xlabel="depth L", ylabel="||dL/dW^{2,L}||_F (last FFN)",
                       title="last-layer gradient; dotted: Xiong et al. slope")
        for ax in axes[:, j]:
            ax.set_xticks(sorted(sub["layers"].unique()))
            ax.set_xticklabels([str(v) for v in sorted(sub["layers"].unique())])
    axes[0, 0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def spread_finetune_figure(df: pd.DataFrame, smooth: int = 20):
    """C7 along fine-tuning: gradient-norm spread (left) and batch loss (right) per step,
    Pre-LN against Post-LN (mean over seeds, running mean over ``smooth`` steps)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    d = df[df["step"] > 0]
    for ln, part in d.groupby("ln"):
        m = part.groupby("step")[["std_log10_rms", "loss"]].mean().rolling(smooth, min_periods=1).mean()
        axes[0].plot(m.index, m["std_log10_rms"], label=f"{ln}-LN", **{k: v for k, v in LN_STYLE[ln].items()
                                                                        if k != "marker"})
        axes[1].plot(m.index, m["loss"], label=f"{ln}-LN", **{k: v for k, v in LN_STYLE[ln].items() if k != "marker"})
    model = df["model"].iloc[0].replace("tiny-pre-", "").replace("tiny-post-", "")
    axes[0].set(xlabel="step", ylabel="std over blocks of log10 block RMS",
                title=f"gradient-norm spread, {model}, {df['optimizer'].iloc[0]}")
    axes[1].set(xlabel="step", ylabel="batch loss", yscale="log", title=f"training loss ({df['task'].iloc[0]})")
    axes[0].legend()
    fig.tight_layout()
    return fig


def head_growth_figure(df: pd.DataFrame):
    """C6: ||W_t - W_0||_F / (eta t sqrt(C h)) against step, one panel per class count C, one
    line per optimizer (mean over seeds, the min-max band over seeds shaded). The sign
    methods lie below 1 by the bound; Adam and SGD are drawn against the same yardstick."""
    plt = _plt()
    from heterosim.plots import PAPER_RC
    Cs = sorted(df["n_classes"].unique())
    with plt.rc_context(PAPER_RC):
        fig, axes = plt.subplots(1, len(Cs), figsize=(3.4 * len(Cs), 2.9), squeeze=False, sharey=True)
        for ax, C in zip(axes[0], Cs):
            sub = df[(df["n_classes"] == C) & (df["step"] > 0)]
            for opt, part in sub.groupby("optimizer"):
                g = part.groupby("step")["ratio"]
                m, lo, hi = g.mean(), g.min(), g.max()
                lr = part["lr"].iloc[0]
                n = part["seed"].nunique() if "seed" in part else 1
                ax.plot(m.index, m.values, color=OPT_COLORS.get(opt), label=f"{opt} (eta={lr:g}, {n} seeds)")
                ax.fill_between(m.index, lo.values, hi.values, color=OPT_COLORS.get(opt), alpha=0.2, lw=0)
            ax.axhline(1.0, color="k", lw=0.8, ls=":")
            ax.set(xlabel="fine-tuning step t", title=f"C = {C} classes", yscale="log")
        axes[0, 0].set_ylabel("head distance / bound\n||W_t - W_0||_F / (eta t sqrt(C h))")
        axes[0, 0].legend(fontsize=7, frameon=False)
        fig.tight_layout()
    return fig


def gap_figure(df: pd.DataFrame, gap_col: str = "log10_gap"):
    """C8: the SGD-vs-Adam gap (log10 of the ratio of tuned final training losses) against the
    heterogeneity measured at the start of fine-tuning: gradient-norm spread (left) and
    JS0 of the block Hessian spectra (right, when measured). One point per model and seed."""
    plt = _plt()
    xs = [c for c in ("start_std_log10_rms", "start_js0", "start_top_eig_std_log10") if c in df and df[c].notna().any()]
    fig, axes = plt.subplots(1, len(xs), figsize=(4.4 * len(xs), 3.8), squeeze=False)
    titles = {"start_std_log10_rms": "gradient-norm spread (decades)", "start_js0": "JS0 of block spectra",
              "start_top_eig_std_log10": "spread of block top eigenvalues (decades)"}
    for ax, x in zip(axes[0], xs):
        for ln, part in df.groupby("ln"):
            ax.scatter(part[x], part[gap_col], marker=LN_STYLE.get(ln, {}).get("marker", "^"), label=f"{ln}-LN")
            for r in part.itertuples():
                ax.annotate(str(r.label), (getattr(r, x), getattr(r, gap_col)), fontsize=7, alpha=0.7,
                            xytext=(3, 3), textcoords="offset points")
        if len(df) > 2:
            rho = df[[x, gap_col]].corr(method="spearman").iloc[0, 1]
            ax.set_title(f"{titles[x]}\nSpearman rho = {rho:.2f}" if math.isfinite(rho) else titles[x])
        else:
            ax.set_title(titles[x])
        ax.set(xlabel=x, ylabel="log10 (loss_SGD / loss_Adam), tuned")
        ax.axhline(0, color="k", lw=0.6, ls=":")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig
