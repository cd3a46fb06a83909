"""Figures from small tables: what each plot draws equals what the table says.

References: plotted medians against pandas' groupby medians, bound lines against the bound
columns, bar heights against medians, the scatter's points against (bound, measured)."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from heterosim import plots


@pytest.fixture
def tuned():
    rows = []
    for gamma in (0.0, 0.5):
        for spread in (0.0, 1.0, 2.0):
            for opt, slope in (("sgd", 1.0), ("adam", 0.0)):
                for seed in (0, 1, 2):
                    rows.append({"gamma": gamma, "spread": spread, "optimizer": opt, "seed": seed,
                                 "T": 10.0 ** (1 + slope * spread) * (1 + 0.1 * seed),
                                 "bound_gd_T": 30.0 * 10 ** spread})
    return pd.DataFrame(rows)


def _line(ax, label):
    return next(l for l in ax.get_lines() if l.get_label() == label)


def test_complexity_curves_plot_medians_and_dashed_bounds(tuned):
    fig = plots.complexity_curves(tuned, x="spread", y="T", hue="optimizer", facet="gamma",
                                  bounds={"bound_gd_T": "Q1 bound"})
    assert isinstance(fig, Figure)
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 2 and axes[0].get_yscale() == "log"
    med = tuned[tuned["gamma"] == 0.0].groupby(["optimizer", "spread"])["T"].median()
    for opt in ("sgd", "adam"):
        line = _line(axes[0], opt)
        np.testing.assert_allclose(line.get_ydata(), med[opt].to_numpy())
        np.testing.assert_allclose(line.get_xdata(), [0.0, 1.0, 2.0])
    b = _line(axes[0], "Q1 bound")
    assert b.get_linestyle() == "--"
    np.testing.assert_allclose(b.get_ydata(), [30.0, 300.0, 3000.0])


def test_complexity_curves_leave_out_unreached_targets(tuned):
    t = tuned.copy()
    t.loc[(t["optimizer"] == "sgd") & (t["spread"] == 2.0), "T"] = np.inf
    fig = plots.complexity_curves(t, x="spread", hue="optimizer", facet="gamma")
    y = _line(fig.axes[0], "sgd").get_ydata()
    assert np.isnan(y[-1]) and np.isfinite(y[:2]).all()


def test_class_loss_curves_one_line_per_group_and_reference():
    steps = np.arange(5)
    rows = [{"optimizer": o, "group": g, "step": s, "loss": (g + 1.0) * 0.5 ** s, "closed": (g + 1.0) * 0.5 ** s}
            for o in ("sgd", "signsgd") for g in range(3) for s in steps]
    fig = plots.class_loss_curves(pd.DataFrame(rows), facet="optimizer", reference="closed")
    ax = fig.axes[0]
    solid = [l for l in ax.get_lines() if l.get_linestyle() == "-"]
    dashed = [l for l in ax.get_lines() if l.get_linestyle() == "--"]
    assert len(solid) == 3 and len(dashed) == 3
    np.testing.assert_allclose(solid[2].get_ydata(), 3.0 * 0.5 ** steps)


def test_bound_scatter_points_are_bound_measured_pairs():
    t = pd.DataFrame({"check": ["B1", "B1", "B2"], "T": [5.0, 7.0, np.inf], "T_bound": [50.0, 70.0, 10.0]})
    fig = plots.bound_scatter(t)
    ax = fig.axes[0]
    from matplotlib.collections import PathCollection
    pts = np.vstack([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])
    np.testing.assert_allclose(pts, [[50.0, 5.0], [70.0, 7.0]])       # the unreached one is left out
    assert ax.get_xscale() == "log" and _line(ax, "measured = bound") is not None


def test_head_norm_curves_draw_the_bound():
    rows = [{"C": c, "optimizer": o, "step": s, "head_norm": 0.5 * 1e-3 * s * np.sqrt(32 * c),
             "head_bound": 1e-3 * s * np.sqrt(32 * c)} for c in (10, 100) for o in ("signsgd", "adam")
            for s in range(0, 50, 10)]
    fig = plots.head_norm_curves(pd.DataFrame(rows), hue="optimizer", facet="C")
    ax = fig.axes[1]
    np.testing.assert_allclose(_line(ax, "eta t sqrt(C h)").get_ydata(), 1e-3 * np.arange(0, 50, 10) * np.sqrt(3200))


def test_grouped_bars_heights_are_medians():
    t = pd.DataFrame({"case": [1, 1, 2, 2] * 2, "optimizer": ["sgd"] * 4 + ["adam"] * 4,
                      "T": [10.0, 30.0, 100.0, 100.0, 1.0, 3.0, 5.0, 7.0]})
    fig = plots.grouped_bars(t, x="case", y="T", hue="optimizer")
    heights = [p.get_height() for p in fig.axes[0].patches]
    np.testing.assert_allclose(heights, [20.0, 100.0, 2.0, 6.0])


def test_missing_columns_and_empty_tables_raise_valueerror(tuned):
    with pytest.raises(ValueError, match="lacks column"):
        plots.complexity_curves(tuned, x="nope")
    with pytest.raises(ValueError, match="no rows"):
        plots.bound_scatter(pd.DataFrame({"T": [], "T_bound": [], "check": []}))


def test_save_writes_small_png_and_pdf(tuned, tmp_path):
    fig = plots.complexity_curves(tuned, x="spread", facet="gamma", bounds={"bound_gd_T": "bound"})
    png, pdf = plots.save(fig, tmp_path, "fig")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:4] == b"%PDF"
    assert png.stat().st_size < 150_000


def test_plot_cli_help_lists_the_claims(capsys):
    from heterosim.claims.cli import plot_main
    with pytest.raises(SystemExit) as e:
        plot_main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "C1, C2" in out and "decomposition" in out and "--quick" in out


def test_unreached_runs_are_marked_not_dropped():
    """A run that never reached eps (T = inf) leaves the median but gets an open triangle
    at the top of its panel, at its x, in its optimizer's colour."""
    import math

    from heterosim import plots
    t = pd.DataFrame({"spread": [0.0, 0.0, 1.0, 1.0, 2.0, 2.0], "optimizer": ["sgd", "adam"] * 3,
                      "T": [10.0, 8.0, 100.0, 9.0, math.inf, 9.5]})
    fig = plots.complexity_curves(t, x="spread")
    ax = fig.axes[0]
    tri = [c for c in ax.collections if c.get_offsets().shape[0] and c.get_paths()
           and len(c.get_paths()[0].vertices) == 4]  # '^' markers: a closed triangle path
    assert len(tri) == 1
    off = tri[0].get_offsets()
    assert off.shape == (1, 2) and off[0, 0] == 2.0 and abs(off[0, 1] - 0.97) < 1e-12
    assert "run(s) not reaching eps" in [x.get_text() for x in fig.legends[0].get_texts()]
    assert plots.PNG_DPI >= 150
    assert fig.axes[0].xaxis.label.get_fontsize() >= 8
