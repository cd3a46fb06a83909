r"""The batched engine: many runs as the rows of one (B, d) batch, and iteration complexity.

``run(problem, opt, lrs, seeds, steps)`` runs every (lr, seed) pair as one row
(rows ordered lr-major: ``for lr in lrs: for seed in seeds``), from the problem's
seeded starting points or from ``x0``, and records what ``record`` names:

========== ==============================================================
loss       f(x_t)
subopt     f(x_t) - f*
grad_l2    ||grad f(x_t)||_2
grad_l1    ||grad f(x_t)||_1
dist       ||x_t - x*||_2 (problems with a known minimiser)
blocks     per-block ||g_{t,b}||_2, shape (B, K, n)
========== ==============================================================

The iteration complexity of a run is T(eps) = the first t with metric(x_t) <= eps
(``Result.iterations_to``); ``relative=True`` measures eps against the metric at
x_0. A run whose loss turns non-finite or exceeds f* + ``diverge_factor`` (f_0 - f*)
is marked diverged and frozen; the batch goes on. (f_0 - f* is floored, so that a run
started at the minimiser, where the gap is 0, is not diverged by the first noisy step.) With a ``target`` the engine
tracks the first hit exactly even when it records nothing, and stops as soon as
every row has hit or diverged.

``tune`` takes the learning-rate grid, then a refinement around the best, and
returns the tuned complexity T*(eps) = min over lr, the argmin lr, every T, and a
flag when the best lr sits on the grid's edge.

Speed
-----
``run(..., fast=True)`` (the default) takes the fast path (:mod:`heterosim.engine.fast`);
``fast=False`` runs the reference loop (:mod:`heterosim.engine.reference`), the obviously
correct one: the rule's ``update`` on the whole batch, one step at a time. The two compute the
same numbers (next section), state included, for every registered rule
(tests/test_engine_fast.py). The fast path:

- steps in place into buffers the engine owns with one fused C loop per step, generated from the
  rule's own primitives (:mod:`heterosim.optimizers.fused`: every chain of elementwise
  primitives, the twelve registered ones and a user's alike), writing x + step into a second
  iterate buffer; a rule with a block or row reduction (block Adam, normalised GD, l_inf
  steepest descent, block-wise rates) takes its ``update``; a block quadratic's fused oracle
  (C, or its torch twin where the kernels are off: the same bits) writes the gradient, f,
  ||g|| and the divergence count in one pass, skipping the rows that diverged (their
  iterate is restored in the same pass); softmax regression has a C oracle of its own,
  and a stochastic softmax run computes every row's minibatch gradient in one call
  (``native_minibatch``);
- does no per-step work beyond the step, the loss (divergence needs it) and the target's
  metric: first hits are read from a ring of the last ``_STOP_CHECK_EVERY`` values at each
  stop check, curves are recorded only on their schedule, and the batch stops as soon as
  every row has hit (early exit);
- splits the rows into chunks that fit in cache (:data:`fast.CHUNK_BYTES`) where a step is
  row-local work (an in-place fused step and an elementwise or fused oracle), each chunk running
  all its steps before the next (rows are independent runs; with couplings across rows -- a
  stochastic oracle shared by a seed's rows, or ``stop_when`` -- the chunks advance together);
- runs rotation-equivariant rules (``opt.equivariant``: chains of equivariant primitives, the
  SGD family, block-wise and normalised GD, block Adam) on a problem that offers its eigenbasis
  (``Problem.eigen_frame``: a rotated block quadratic) in that basis, where H is diagonal and a step needs no matvec at all (:class:`_EigenFrame`),
  mapping the iterate and state back at the end;
- picks its thread count from the batch (:func:`threads_for`): one thread below
  :data:`fast.PARALLEL_MIN_ELEMENTS` entries, where a second thread costs more than it saves,
  torch's count above it, with independent chunks on threads at once.

How the fused step was chosen, and the figures, are in docs/engine.md
(benchmarks/engine_vs_jax.py, run by hand).

One T per config
----------------
T(eps) of a run does not depend on the path that runs it (fast with the C kernels, fast
without them -- ``HETEROSIM_NATIVE=0`` or no compiler -- or plain), on the batch it shares
(its learning rate alone or in a grid), on chunking or on the thread count: every path does
the same floating-point operations on each row, in the same order.

- The oracle of a block quadratic has one fixed arithmetic (:mod:`heterosim._native`):
  e = x - x*, g_i = sum_j e_j H_ji summed in order j = 0, 1, ... without FMA, f = 0.5
  tree(e.g) + f* and ||g||^2 = tree(g.g) summed as a fixed halving tree, sqrt correctly
  rounded. The C kernel and its torch twin give the same bits; the plain loop and x_0 use
  the twin. (A BLAS product would not do: its rounding depends on the batch -- MKL takes a
  different kernel for one row than for fifteen -- and on the CPU.)
- A rule's step is its ``update`` or the fused loop generated from its primitives, verified to
  reproduce it to the bit (once per process and hyperparameters; one that does not match is
  not used). The loops are compiled with -ffp-contract=off and no fast-math; they fuse a
  multiply-add only where torch does (its lerp), and the primitives' sqrt is the correctly
  rounded one on every path (:func:`heterosim.optimizers.ops.sqrt`).
- ||g||_2 and ||x - x*||_2 are measured with the same tree sums on every path.

Where the bits cannot agree, the tolerance:

- equivariant rules on a rotated block quadratic run in the eigenbasis on the fast path (with
  or without the kernels: the same bits there), and the rotation rounds differently from the
  plain loop's x frame. These rules' steps are linear in g, so the difference does not grow:
  curves agree with the plain loop to 1e-12 relative (pinned), and T can differ only where
  the metric passes eps within that margin. On the demo's sweeps it never does: all 34
  tunings of the demo give the same T*, argmin lr and T at every learning rate on all three
  paths (pinned, tests/test_engine_fast.py::test_demo_tunings_same_T_on_every_path);
- softmax regression's C oracle (its own exp) agrees with torch's to a few ulps, not to the
  bit: curves agree to 1e-10 relative over the tested runs, and a run whose T is sensitive
  to rounding (Adam's, late in a run) may differ between the kernels on and off there;
- problems without an ``engine_oracle`` (a block quadratic's subclass with its own loss, a
  problem of your own) use ``loss_and_grad_into`` on the fast path where they have it and
  ``loss_and_grad`` on the plain one, which agree to rounding;
- a stochastic run draws its gradients from the problem's ``stochastic_grad`` on both paths
  (the same calls on the same rows: the same bits), whose own product may round a seed's
  rows differently with the batch they share.

:func:`engine_path` names the path this process takes by default (for provenance).

What the engine asks of a problem
---------------------------------
The engine depends on the interface of :class:`heterosim.problems.Problem`, not on a problem
class: ``d``, ``blocks``, ``dtype``, ``x_star``/``f_star``, ``initial_points``,
``loss_and_grad`` (and ``stochastic_grad`` for stochastic runs); optionally
``engine_oracle`` (a fused oracle in the engine's fixed arithmetic), ``eigen_frame`` (a rotated
quadratic's eigenbasis), ``native_oracle``/``loss_and_grad_into`` (faster oracles), and ``to``
(its data on the batch's device: ``run(..., device="cuda")``).

On a GPU
--------
``run(..., device="cuda")`` moves the problem's data there (``Problem.to``) and runs the same
loops: the rules' tensor ``update`` (the fused C loop is for CPU batches) and the oracle's torch
twin, on CUDA tensors. tests/test_rule_matrix.py compares every rule on every problem kind with
the CPU run in float64 where a GPU is present (it is skipped otherwise).
"""

from heterosim.engine.api import engine_path, lr_grid, run, select_lr, tune, TuneResult
from heterosim.engine.common import DIVERGE_FACTOR, METRICS, SCALAR_METRICS, Target, map_tensors, tensors_of
from heterosim.engine.fast import _EigenFrame
from heterosim.engine.result import Result

__all__ = ["run", "tune", "lr_grid", "select_lr", "Result", "TuneResult", "METRICS", "SCALAR_METRICS", "Target",
           "engine_path", "DIVERGE_FACTOR", "map_tensors", "tensors_of", "threads_for"]
