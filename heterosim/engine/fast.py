"""The engine's fast loop (see the package doc, "Speed"): fused steps generated from the rule's
primitives, fused oracles, cache-sized chunks of rows, early exit, and the eigenbasis of a
block quadratic for rotation-equivariant rules."""
from __future__ import annotations

import math

import torch

from heterosim import _native
from heterosim.engine.common import (_STOP_CHECK_EVERY, _Outcome, _engine_oracle, _Setup, map_tensors,
                                     tensors_of)
from heterosim.optimizers import fused

PARALLEL_MIN_ELEMENTS = 1 << 20
"""Batches of at least this many entries (B d) run their chunks on torch's threads at once.
Below it the threads contend for the GIL between short kernels: on a 2-core EPYC the
reference sweep (128 x 256) runs 1.5x slower split across two threads, the large one
(1024 x 4096) 1.3x faster."""

CHUNK_BYTES = 6 * 2 ** 20
"""Working-set budget of one chunk of rows: the rows' iterate, gradient, scratch and state
buffers together. Sized for the shared last-level cache of a small CPU (a few MiB per core),
so that a chunk's state stays in cache from step to step. On a 2-core EPYC (32 MiB L3) the
eigenbasis path of SGD with momentum over 1024 x 4096 runs 2x faster in 6 MiB chunks than as
one batch (benchmarks/engine_vs_jax.py, the large sweep)."""


def _owned(state):
    """The state with every tensor copied into a buffer of its own (init may alias zeros)."""
    return map_tensors(torch.clone, state)


def _rows_of(state, r0, r1):
    """The chunk [r0, r1) of a batched state: views of its (B, ...) tensors."""
    return map_tensors(lambda f: f[r0:r1], state)


class _EigenFrame:
    r"""A block quadratic in the eigenbasis of its blocks: y = V^T x with V = blockdiag(Q_b)
    orthogonal, where f = f* + 1/2 (y - y*)^T diag(lambda) (y - y*) and grad_y f = V^T grad_x f.
    A rule whose step commutes with block rotations (``opt.equivariant``) takes the same steps
    in y as in x, rotated, so the run needs no matvec: x_t = V y_t exactly, up to rounding.
    ||g||_2, per-block norms, ||x - x*|| and f are the same in both frames; ||g||_1 is not (it
    is mapped back where recorded)."""

    def __init__(self, problem, device, dtype):
        self.problem = problem
        spectrum, bases = problem.eigen_frame()
        self.lam = spectrum.to(device=device, dtype=dtype)
        # y_b = Q_b^T x_b = x_b Q_b (a row times Q_b): the block product of the fixed order, so that
        # y_0 of a row does not depend on its batch (a BLAS product's rounding may)
        self.mats = [Q.to(device=device, dtype=dtype).contiguous() for Q in bases]
        self.mats_t = [M.T.contiguous() for M in self.mats]  # x_b = Q_b y_b = y_b Q_b^T
        equal = len({M.shape[0] for M in self.mats}) == 1
        self.stacked = torch.stack(self.mats) if equal else None
        self.stacked_t = torch.stack(self.mats_t) if equal else None
        self.y_star = self.to(problem.x_star.to(device=device, dtype=dtype).unsqueeze(0))[0]
        self.f_star = float(problem.f_star)

    @staticmethod
    def applies(problem, opt, stochastic, target) -> bool:
        return (bool(getattr(opt, "equivariant", False)) and not stochastic
                and (target is None or target.metric != "grad_l1")
                and getattr(problem, "eigen_frame", lambda: None)() is not None)

    def native_oracle(self, Y):
        """The fused C oracle of the diagonal quadratic in y (as a quadratic's ``native_oracle``),
        or None where the kernels do not apply."""
        if Y.dim() != 2 or not _native.usable(Y):
            return None
        return _native.quadratic_oracle(self.y_star, self.f_star, diag=self.lam)

    def oracle(self, Y):
        """The C oracle in y, or its torch twin (the same bits)."""
        return self.native_oracle(Y) or _native.quadratic_oracle_torch(self.y_star, self.f_star, diag=self.lam,
                                                                       device=Y.device, dtype=Y.dtype)

    def to(self, X):
        X = X.contiguous()
        return _native.block_product_(X, self.mats, torch.empty_like(X), self.stacked)

    def back(self, Y):
        Y = Y.contiguous()
        return _native.block_product_(Y, self.mats_t, torch.empty_like(Y), self.stacked_t)


class _Chunk:
    """Rows [r0, r1) of the batch: views of the engine's buffers, and the step they are at."""

    def __init__(self, loop, r0, r1):
        self.r0, self.r1 = r0, r1
        self.X = (loop.Xbuf[0][r0:r1], loop.Xbuf[1][r0:r1])
        self.G = loop.G[r0:r1]
        self.E = loop.E[r0:r1] if loop.E is not None else None
        self.W = loop.W[r0:r1] if loop.W is not None else None
        self.tmp = loop.tmp[r0:r1] if loop.tmp is not None else None
        self.F = loop.F[r0:r1]
        self.lr = loop.lr[r0:r1]
        self.f_limit = loop.f_limit[r0:r1]
        self.state = _rows_of(loop.state, r0, r1) if loop.chunked_state else loop.state
        self.dead = loop.dead[r0:r1]           # (R,) bool view
        self.dead_from = loop.dead_from[r0:r1]  # (R,) first dead step (inf: alive)
        self.dead_idx = torch.nonzero(self.dead).flatten()
        self.hit = loop.hit[r0:r1]
        self.thr = loop.thr[r0:r1] if loop.thr is not None else None
        self.t = 0
        self.flushed = 0


class _FastLoop:
    """The fast path of :func:`run`. Same semantics as :func:`_loop_plain`, less work per step:

    - the rule's step comes from :func:`heterosim.optimizers.fused.stepper` (one C loop generated
      from the rule's elementwise primitives and checked bit for bit against the chain's
      ``update``, else ``update`` itself) and x + step goes
      straight into a second iterate buffer (double buffering keeps x_{t-1} for a row that
      diverges at step t); the oracle fills gradient and error buffers: no allocation;
    - where a step is elementwise work, rows are split into chunks whose working set fits in
      cache (:data:`CHUNK_BYTES`), and each chunk runs all its steps before the next starts
      (rows are independent runs), so the state is not streamed from memory at every step;
      with couplings across rows (``stop_when``) the chunks advance together,
      :data:`_STOP_CHECK_EVERY` steps at a time; a stochastic run is one chunk;
    - the target's metric is written to a ring of the last steps and first hits are found
      from it at each stop check; divergence costs one comparison per step;
    - an equivariant rule on a block quadratic runs in the eigenbasis (:class:`_EigenFrame`).
    """

    def __init__(self, s: _Setup):
        self.s = s
        problem, opt = s.problem, s.opt
        B, d = s.X.shape
        self.B, self.d = B, d
        stochastic = s.gens is not None
        self.frame = (_EigenFrame(problem, s.X.device, s.X.dtype)
                      if _EigenFrame.applies(problem, opt, stochastic, s.target) else None)
        X0 = self.frame.to(s.X) if self.frame is not None else s.X
        # The oracle, one fused call: a block quadratic's (in x, or diagonal in its eigenbasis) in
        # the fixed arithmetic of heterosim._native, the C kernel or its torch twin (the same bits,
        # and the plain loop's); else the problem's own C oracle (softmax regression), its
        # loss_and_grad_into, or its loss_and_grad.
        self.exact_oracle = True
        self.native = self.frame.oracle(X0) if self.frame is not None else _engine_oracle(problem, X0)
        if self.native is None:
            self.exact_oracle = False
            self.native = problem.native_oracle(X0) if hasattr(problem, "native_oracle") else None
        self.into = getattr(problem, "loss_and_grad_into", None) if self.native is None else None
        # The step: the C loop generated from the rule's primitives where it reproduces the chain's
        # update to the bit (heterosim.optimizers.fused checks), else the update itself.
        self.step = fused.stepper(opt, X0)
        self.inplace = self.step is not None
        self.Xbuf = (X0.clone(), torch.empty_like(X0))
        self.G = torch.empty_like(X0)
        self.F = X0.new_empty(B)  # f at the current iterate (the native oracle's output)
        scratch = self.into is not None and self.native is None
        self.E = torch.empty_like(X0) if scratch else None
        self.W = torch.empty_like(X0) if scratch and self.frame is None else None
        self.tmp = torch.empty_like(X0) if self.inplace else None
        self.Gs = torch.empty_like(X0) if stochastic else None
        # minibatch gradients of every row in one fused C call, each row on its seed's draw
        self.native_mb = None
        if stochastic and self.frame is None and hasattr(problem, "native_minibatch") \
                and hasattr(problem, "draw_minibatch"):
            self.native_mb = problem.native_minibatch(X0)
            self.which = torch.empty(B, dtype=torch.int64)
            for slot, (_, rows) in enumerate(s.gens):
                self.which[rows.cpu()] = slot
        self.lr = s.lr
        self.f_limit = s.f_limit
        self.thr = s.thr
        self.hit = s.hit.clone()
        self.dead = ~s.active
        self.dead_from = torch.where(self.dead, 0.0, math.inf).to(X0.dtype)
        self.state = opt.init(self.Xbuf[0], s.blocks)
        if self.inplace:
            self.state = _owned(self.state)
        # a rule without a fused step returns new state tensors: run it on the whole batch
        self.chunked_state = self.inplace
        per_row = sum(1 for b in (*self.Xbuf, self.G, self.E, self.W, self.tmp) if b is not None) * d
        if self.chunked_state:
            per_row += sum(f[0].numel() for f in tensors_of(self.state) if f.dim() > 0)
        rows = B
        # chunk where the step is elementwise work (eigenbasis, axis-aligned quadratics): a batch of
        # block matmuls runs no faster on few rows, and its operands do not fit in cache anyway
        # (the native oracle applies each block to all of a chunk's rows in turn: it is row-local work)
        elementwise = (self.frame is not None or bool(getattr(problem, "diagonal", False))
                       or self.native is not None)
        if self.chunked_state and not stochastic and elementwise:
            rows = max(1, min(B, CHUNK_BYTES // (per_row * X0.element_size())))
        # independent chunks run on torch's threads at once (rows are independent runs)
        self.workers = 1
        if self.chunked_state and not stochastic and s.stop_when is None and torch.get_num_threads() > 1 \
                and B * d >= PARALLEL_MIN_ELEMENTS:
            self.workers = min(torch.get_num_threads(), B)
            rows = min(rows, -(-B // self.workers))
        rows = -(-B // -(-B // rows))  # balance the chunks
        self.chunks = [_Chunk(self, r0, min(r0 + rows, B)) for r0 in range(0, B, rows)]
        self.metric = s.target.metric if s.target is not None else None
        self.ring = X0.new_empty(_STOP_CHECK_EVERY, B) if s.target is not None else None
        self.ring_steps = torch.arange(_STOP_CHECK_EVERY, dtype=X0.dtype, device=X0.device)
        self.ring_steps[0] = _STOP_CHECK_EVERY  # step t is kept in ring row t % _STOP_CHECK_EVERY
        self.rec_index = {int(t): k for k, t in enumerate(s.rec_steps)}
        self.curves = {}
        for m in s.names:
            shape = (B, len(s.rec_steps), s.blocks.n) if m == "blocks" else (B, len(s.rec_steps))
            c = X0.new_full(shape, math.nan)
            if m in s.curves0:
                c[:, 0] = s.curves0[m]
            self.curves[m] = c

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> _Outcome:
        s = self.s
        for c in self.chunks:  # gradients at x_0 in the frame of the run
            self._oracle(c, c.X[0])
        coupled = s.gens is not None or s.stop_when is not None
        may_stop = s.target is not None and s.stop_early
        if not coupled:
            self._each_chunk(lambda c: self._advance(c, s.steps, may_stop))
            steps_run = max(c.t for c in self.chunks)
            # every row runs to the step where the whole batch stopped
            self._each_chunk(lambda c: self._advance(c, steps_run, False))
        else:
            t = 0
            while t < s.steps:
                t = min(s.steps, (t // _STOP_CHECK_EVERY + 1) * _STOP_CHECK_EVERY)
                for c in self.chunks:
                    self._advance(c, t, False)
                if may_stop and t % _STOP_CHECK_EVERY == 0:
                    done = bool((torch.isfinite(self.hit) | self.dead).all())
                    if done or (s.stop_when is not None and s.stop_when(self.hit, ~self.dead, t)):
                        break
            steps_run = t
        X = self.Xbuf[steps_run % 2]
        state = self._final_state(steps_run)
        if self.frame is not None:
            X = self.frame.back(X)
            state = map_tensors(lambda f: self.frame.back(f) if f.shape == X.shape else f, state)
        diverged_at = torch.where(self.dead, self.dead_from.nan_to_num(posinf=-1.0), -1.0).to(torch.int64)
        return _Outcome(X=X, state=state, steps_run=steps_run, curves=self.curves, active=~self.dead,
                        diverged_at=diverged_at, hit=self.hit)

    def _each_chunk(self, fn):
        """fn(chunk) for every chunk: in turn, or with ``self.workers`` threads, each taking every
        workers-th chunk and running torch single-threaded (the chunks share nothing: the same
        numbers come out either way; torch ops and the C kernels release the GIL)."""
        if self.workers <= 1 or len(self.chunks) <= 1:
            for c in self.chunks:
                fn(c)
            return
        from concurrent.futures import ThreadPoolExecutor
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="heterosim-chunks") as pool:
                parts = [self.chunks[i::self.workers] for i in range(self.workers)]
                for fut in [pool.submit(lambda part=part: [fn(c) for c in part]) for part in parts]:
                    fut.result()
        finally:
            torch.set_num_threads(threads)

    def _final_state(self, steps_run):
        """The batch's state: the engine's buffers (the chunks' steps update them in place), with
        the count of the chunks (every chunk ran to ``steps_run``)."""
        first = self.chunks[0].state
        if not self.chunked_state:
            return first
        for c in self.chunks:
            for whole, part in zip(tensors_of(self.state), tensors_of(c.state)):
                if part.data_ptr() != whole[c.r0:c.r1].data_ptr():
                    raise RuntimeError(f"the in-place step of {self.s.opt.name} replaced a state tensor "
                                       "instead of updating it in place")
        return type(first)(first.count, self.state.parts) if hasattr(first, "parts") else first

    def _oracle(self, c, X):
        """f at X and the gradient into c.G (in the frame of the run)."""
        if self.native is not None:
            self.native(X, c.G, c.F)
            return c.F
        if self.into is not None:
            return self.into(X, c.G, c.E, c.W)
        f, G = self.s.problem.loss_and_grad(X)
        c.G = G
        return f

    def _advance(self, c: _Chunk, t_end: int, may_stop: bool):
        """Run the rows of chunk ``c`` from its step to ``t_end``; with ``may_stop``, stop at the
        first multiple of _STOP_CHECK_EVERY where all its rows have hit the target or diverged."""
        s = self.s
        opt, blocks, problem = s.opt, s.blocks, s.problem
        step_, inplace = self.step, self.inplace
        rec_index, ring, track = self.rec_index, self.ring, self.metric is not None
        every = _STOP_CHECK_EVERY
        # ||g|| of the target comes with a quadratic's oracle (the same sums as _native.tree_norm)
        fused_norm = self.metric == "grad_l2" and self.exact_oracle
        numpy_checks = c.f_limit.device.type == "cpu"  # a (R,) comparison: numpy's call is the cheaper
        f_limit_np = c.f_limit.numpy() if numpy_checks else None
        native = self.native  # the oracle, ||g|| and the divergence test in one C call
        for t in range(c.t + 1, t_end + 1):
            xa, xb = c.X[(t - 1) % 2], c.X[t % 2]
            g = c.G
            if s.gens is not None:  # one draw per seed, shared by its rows (the plain loop's order)
                g = self.Gs
                if self.native_mb is not None:
                    self.native_mb(xa, g, torch.stack([problem.draw_minibatch(gen) for gen, _ in s.gens]), self.which)
                else:
                    for gen, rows in s.gens:
                        g[rows] = problem.stochastic_grad(xa[rows], gen)
            if inplace:
                c.state = step_(g, c.state, xa, c.lr, xb, c.tmp)
            else:  # a pure rule may keep references to its inputs: give it copies we will not overwrite
                step, c.state = opt.update(g.clone(), c.state, xa.clone(), c.lr, blocks)
                torch.add(xa, step, out=xb)
            row = ring[t % every, c.r0:c.r1] if track else None
            if native is not None:  # frozen (diverged) rows: x_t <- x_{t-1}, nothing computed
                f = c.F
                bad = native(xb, c.G, f, row if fused_norm else None, c.f_limit, root=True,
                             frozen=c.dead if c.dead_idx.numel() else None, X_prev=xa)
                if bad:
                    self._bury(c, ~(f <= c.f_limit) & ~c.dead, t, xa, xb, only_new=True)
            else:
                f = self._oracle(c, xb)
                if c.dead_idx.numel() == 0:
                    if not (bool((f.numpy() <= f_limit_np).all()) if numpy_checks else bool((f <= c.f_limit).all())):
                        self._bury(c, ~(f <= c.f_limit), t, xa, xb)
                else:
                    self._bury(c, ~(f <= c.f_limit) & ~c.dead, t, xa, xb)
            if track and not fused_norm:
                self._metric(self.metric, f, c, xb, out=row)
            k = rec_index.get(t)
            if k is not None:
                self._record(c, k, f, xb)
            if t % every == 0:
                self._flush(c, t)
                if may_stop and bool((torch.isfinite(c.hit) | c.dead).all()):
                    c.t = t
                    return
        if t_end > c.t:
            c.t = t_end
            self._flush(c, t_end)

    def _bury(self, c, newly, t, xa, xb, only_new=False):
        """Rows that diverged at step t keep their last good iterate x_{t-1} (as in the plain loop,
        their state and gradient go on, unused; the native oracle skips them). ``only_new``: copy
        x_{t-1} into the newly diverged rows only (the native oracle restores the others)."""
        idx = None
        if bool(newly.any()):
            c.dead |= newly
            c.dead_from.masked_fill_(newly, float(t))
            c.dead_idx = torch.nonzero(c.dead).flatten()
            if only_new:
                idx = torch.nonzero(newly).flatten()
        if not only_new:
            idx = c.dead_idx if c.dead_idx.numel() else None
        if idx is not None:
            xb.index_copy_(0, idx, xa.index_select(0, idx))

    def _metric(self, m, f, c, X, out=None):
        """The metric m of the chunk's rows at X (f: the loss there), written into ``out`` if given."""
        if m == "grad_l2":
            v = _native.tree_norm(c.G)  # summed as the C oracle sums it
            return v if out is None else out.copy_(v)
        if m == "loss":
            v = f
        elif m == "subopt":
            v = f - self.s.f_star
        elif m == "grad_l1":
            G = self.frame.back(c.G) if self.frame is not None else c.G
            v = G.abs().sum(1)
        elif m == "dist":
            if self.s.x_star is None:
                raise ValueError(f"metric 'dist' needs a known minimiser; {self.s.problem.name} has x_star = None")
            v = _native.tree_norm(X - (self.frame.y_star if self.frame is not None else self.s.x_star))
        else:
            v = self.s.blocks.norms(c.G)
        return v if out is None else out.copy_(v)

    def _record(self, c, k, f, X):
        alive = ~c.dead if c.dead_idx.numel() else None
        for m in self.s.names:
            v = self._metric(m, f, c, X)
            if alive is not None:  # diverged rows record NaN from their divergence on
                v = torch.where(alive if v.dim() == 1 else alive.unsqueeze(1), v, torch.nan)
            self.curves[m][c.r0:c.r1, k] = v

    def _flush(self, c, t):
        """First hits among the steps since the last flush, read from the ring: the first step
        with metric <= threshold while the row was alive."""
        if self.ring is None or t <= c.flushed:
            return
        k = _STOP_CHECK_EVERY
        if t - c.flushed == k and t % k == 0:  # a full ring: row j holds step t - k + j (row 0: t)
            steps, vals = self.ring_steps + (t - k), self.ring[:, c.r0:c.r1]
        else:
            idx = torch.arange(c.flushed + 1, t + 1, device=self.ring.device)
            steps, vals = idx.to(self.ring.dtype), self.ring[idx % k, c.r0:c.r1]
        steps = steps.unsqueeze(1)
        ok = (vals <= c.thr) & (steps < c.dead_from)
        torch.minimum(c.hit, torch.where(ok, steps, math.inf).amin(0), out=c.hit)
        c.flushed = t
