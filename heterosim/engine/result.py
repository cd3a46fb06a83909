"""What a batched run returns: :class:`Result`."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from heterosim.engine.common import Target, _check_eps, _check_metric

@dataclass
class Result:
    """What a batched run measured. Arrays are numpy; rows follow ``lrs``/``seeds``."""

    problem: str
    optimizer: str
    lrs: np.ndarray              # (B,)
    seeds: np.ndarray            # (B,)
    steps: int                   # steps asked for
    steps_run: int               # steps taken (early exit may stop sooner)
    record_steps: np.ndarray     # (K,) the step of each recorded column
    curves: dict                 # metric -> (B, K) array, 'blocks' -> (B, K, n)
    diverged: np.ndarray         # (B,) bool
    diverged_at: np.ndarray      # (B,) step at which divergence was detected (-1: never)
    initial: dict                # metric -> (B,) value at x_0
    hits: dict = field(default_factory=dict)   # Target -> (B,) first step (inf: never)
    x_final: torch.Tensor | None = None
    f_star: float = 0.0
    seconds: float = 0.0
    state: object = None         # the rule's final state (rows as in lrs/seeds)

    @property
    def B(self) -> int:
        return len(self.lrs)

    def __getattr__(self, name):
        # losses, grad_l2s, ... as attributes: Result.losses is curves['loss']
        alias = {"losses": "loss", "subopts": "subopt", "grad_l2s": "grad_l2", "grad_l1s": "grad_l1",
                 "dists": "dist", "block_norms": "blocks"}
        if name in alias:
            key = alias[name]
            curves = self.__dict__.get("curves", {})
            if key not in curves:
                raise AttributeError(f"'{key}' was not recorded; pass record='{key},...' to run()")
            return curves[key]
        raise AttributeError(name)

    def iterations_to(self, eps: float, metric: str = "grad_l2", relative: bool = False) -> np.ndarray:
        """T(eps) per run: the first step t with metric(x_t) <= eps (times metric(x_0) when
        ``relative``); ``inf`` for a run that never got there (or diverged first).

        Exact when the metric was recorded at every step or tracked as the run's target;
        otherwise the first recorded step at or below eps (an upper bound on T)."""
        _check_metric(metric)
        _check_eps(eps)
        key = Target(metric, float(eps), bool(relative))
        if key in self.hits:
            return self.hits[key].copy()
        if metric not in self.curves:
            raise ValueError(f"metric {metric!r} was neither recorded nor the run's target; "
                             f"recorded: {sorted(self.curves)}")
        c = self.curves[metric]
        thr = eps * (self.initial[metric] if relative else np.ones(self.B))
        below = c <= thr[:, None]
        first = np.where(below.any(1), below.argmax(1), -1)
        out = np.where(first >= 0, self.record_steps[np.maximum(first, 0)], np.inf).astype(float)
        return out

    def to_frame(self, eps=None, metric="grad_l2", relative=False):
        """One row per run: lr, seed, diverged, final values (and T(eps) when eps is given)."""
        import pandas as pd
        data = {"problem": self.problem, "optimizer": self.optimizer, "lr": self.lrs, "seed": self.seeds,
                "diverged": self.diverged, "steps_run": self.steps_run}
        for m, c in self.curves.items():
            if m != "blocks":
                data[f"final_{m}"] = c[:, -1]
        if eps is not None:
            data["T"] = self.iterations_to(eps, metric, relative)
        return pd.DataFrame(data)
