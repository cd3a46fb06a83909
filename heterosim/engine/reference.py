"""The engine's reference loop: the rule's ``update`` on the whole batch, one step at a time,
the obviously correct path the fast one is pinned to."""
from __future__ import annotations

import torch

from heterosim.engine.common import _STOP_CHECK_EVERY, _metric_values, _Outcome, _Setup

def _loop_plain(s: _Setup) -> _Outcome:
    """The reference loop: the rule's pure ``update`` on the whole batch, one step at a time."""
    problem, opt, blocks, lr, names = s.problem, s.opt, s.blocks, s.lr, s.names
    B = s.X.shape[0]
    X, G, active, hit = s.X, s.G, s.active, s.hit
    rec_set = {int(t): k for k, t in enumerate(s.rec_steps)}
    curves = {m: [s.curves0[m]] if m in s.curves0 else [] for m in names}
    alive = torch.zeros(B, dtype=torch.int64, device=X.device)  # steps survived: diverged_at = alive + 1
    bad_at_start = ~active
    state = opt.init(X, blocks)
    t = 0
    for t in range(1, s.steps + 1):
        if s.gens is not None:
            Gs = torch.empty_like(G)
            for gen, rows in s.gens:
                Gs[rows] = problem.stochastic_grad(X[rows], gen)
        else:
            Gs = G
        step, state = opt.update(Gs, state, X, lr, blocks)
        Xn = X + step
        f, G = s.oracle(Xn)
        active = active & (f <= s.f_limit)
        alive += active
        X = torch.where(active.unsqueeze(1), Xn, X)  # a diverged row stays at its last good iterate
        if s.target is not None:
            v = _metric_values(problem, Xn, f, G, (s.target.metric,), s.f_star, s.x_star)[s.target.metric]
            hit = torch.where((v <= s.thr) & active, torch.clamp(hit, max=float(t)), hit)
        if t in rec_set:
            vals = _metric_values(problem, Xn, f, G, names, s.f_star, s.x_star)
            for m in names:  # diverged rows record NaN from their divergence on
                v = vals[m]
                curves[m].append(torch.where(active if v.dim() == 1 else active.unsqueeze(1), v, torch.nan))
        if s.target is not None and s.stop_early and t % _STOP_CHECK_EVERY == 0:
            done = bool((torch.isfinite(hit) | ~active).all())
            if done or (s.stop_when is not None and s.stop_when(hit, active, t)):
                break
    steps_run = t if s.steps > 0 else 0
    out_curves = {m: torch.stack(c, dim=1) if c else X.new_zeros(B, 0) for m, c in curves.items()}
    diverged_at = torch.where(bad_at_start, 0, torch.where(active, -1, alive + 1))
    return _Outcome(X=X, state=state, steps_run=steps_run, curves=out_curves, active=active,
                    diverged_at=diverged_at, hit=hit)
