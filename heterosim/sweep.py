r"""Sweeps: a grid of configurations -> a cached, resumable results table.

A *grid* is a dict of lists (benchopt's ``parameters``); it expands into the
Cartesian product of its values, first key slowest::

    grid = {"spread": [0, 1, 2], "optimizer": ["sgd", "adam"], "seed": [0, 1]}   # 12 configs

Keys whose values go together are *zipped* instead of crossed: give them as one
tuple key with a list of tuples, or name them in ``zip``::

    {("optimizer", "beta"): [("signsgd", None), ("signum", 0.9)], "C": [10, 100]}  # 4 configs
    run(grid={"optimizer": ["signsgd", "signum"], "beta": [None, 0.9], "C": [10, 100]},
        zip=[("optimizer", "beta")], ...)                                        # the same 4

A list of grids is their union (configs in order, duplicates dropped). Each config
is a flat dict of JSON-like values with a stable hash (:func:`config_hash`: BLAKE2b
of its canonical JSON, so ``1`` and ``1.0`` differ and key order does not matter).

``fn(config)`` measures one config and returns its rows: a dict, a list of dicts or
a DataFrame. :func:`run` calls it for every config not already stored and writes
each finished config's rows to ``<root>/<study>/`` as Parquet:

- **Atomic chunks.** Finished configs are buffered for at most ``flush_every``
  seconds and written as one chunk file (``chunk-<ns>-<pid>-<seq>.parquet``), first to
  a temporary name in the same folder, fsynced, then renamed (``os.replace`` is
  atomic on POSIX). All rows of a config live in one chunk, so a config is stored
  whole or not at all; a SIGKILL loses at most the last ``flush_every`` seconds of
  work, which the next run recomputes.
- **Resume, never duplicate, never stale.** When the same config hash appears in several
  chunks (a re-run, a failed config retried, a compaction interrupted) only the rows of
  the newest chunk count. A run skips a config only when its stored status is ``ok``
  *and* its stored code key equals the current one (:mod:`heterosim.codekey`: the measure
  function and the data it closes over, the user modules behind it, heterosim's version
  and source tree, dirty changes included, and the versions of torch, numpy and scipy).
  Missing, failed and stale configs are (re)computed, and the summary line says how many
  were recomputed and why (``measure function changed``, ``heterosim source changed``,
  ...); ``force=True`` recomputes all; ``salt`` starts a fresh key space. After a run the
  chunks are merged into one (written before the old ones go).
- **Failures never crash a sweep.** An exception in ``fn`` becomes one row with
  ``status = "failed"`` and the error text; it is retried on the next run.
- **Provenance.** Every row carries its config, the measured values, ``config_hash``,
  ``row`` (index within its config), ``status``, ``error``, ``seconds`` (time spent in
  ``fn``), ``time`` (UTC, ISO 8601, when it finished), ``heterosim_version``, the code
  key and its parts (``code_key``, ``fn_hash``, ``module_hash``, ``source_hash``,
  ``lib_versions``), ``git_rev``, ``git_dirty``, ``engine_path`` and ``cpu``
  (:mod:`heterosim.provenance`).
- **Registrations travel.** Rules and problems registered outside heterosim (in the
  script, notebook or experiment module) are sent with every task and registered in the
  worker before ``fn`` runs, so ``-j N`` and Dask know them as this process does.
- **No orphans.** A local worker (loky, or a local Dask cluster) watches the process
  that submitted its tasks and exits within a second of its death, so a SIGKILLed
  sweep leaves no workers behind.

One writer per study at a time: two concurrent sweeps of one study are safe for
the stored rows (newest chunk wins) but may compute a config twice.

Executors. ``n_jobs=1`` runs in this process; any other ``n_jobs`` runs joblib's
loky process pool (``-1``: one worker per core). ``scheduler`` sends the configs to a
Dask distributed cluster instead: ``"local"`` starts a local cluster of ``n_jobs``
single-threaded worker processes, an address (``"tcp://host:8786"``) connects to a
running scheduler, and a ``distributed.Client`` is used as given. Dask is the
optional extra ``pip install heterosim[dask]``. On a SLURM machine start the workers
with dask-jobqueue and pass its scheduler::

    from dask_jobqueue import SLURMCluster
    cluster = SLURMCluster(cores=1, processes=1, memory="4GB", walltime="01:00:00")
    cluster.scale(jobs=32)
    hs.sweep.run(grid, "c1_block_scale", fn, scheduler=cluster.scheduler_address)

or from the command line ``heterosim sweep experiments/c1_block_scale.py --scheduler
tcp://HOST:8786``. Every executor runs ``fn`` with ``threads`` torch threads (default 1)
and returns rows in grid order, so serial, joblib and Dask give identical tables
(up to the volatile columns ``seconds`` and ``time``, see :func:`strip_volatile`).

Command line: ``heterosim sweep SCRIPT [-j N] [--scheduler ADDRESS|local] [--force]
[--quick]``, where SCRIPT defines ``STUDY``, ``grid(quick=False)`` and ``measure(config)``
(optionally ``ZIP`` and ``summarize(table) -> str``); see ``experiments/``.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import hashlib
import importlib.util
import itertools
import json
import math
import numbers
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from heterosim.codekey import PART_COLUMNS, CodeParts, code_parts, describe_changes

__all__ = ["run", "expand", "config_hash", "load", "study_dir", "strip_volatile", "Store",
           "load_experiment", "cli_main", "script_main", "META_COLUMNS", "VOLATILE_COLUMNS"]

#: Columns every row gets besides its config and measured values.
META_COLUMNS = ("config_hash", "row", "status", "error", "seconds", "time", "heterosim_version",
                *PART_COLUMNS, "git_rev", "git_dirty", "engine_path", "cpu")
#: Columns that differ between two runs of the same sweep (timings).
VOLATILE_COLUMNS = ("seconds", "time")
FLUSH_EVERY_S = 0.5   # the most finished work (in seconds) a SIGKILL can cost
_HASH_BYTES = 8       # 16 hex digits: collisions need ~4e9 configs in one study
_STUDY_RE = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")
_CHUNK_GLOB = "chunk-*.parquet"
_TMP_PREFIX = ".tmp-"


# ----------------------------------------------------------------------------- grids
def _json_value(v, where: str):
    """A config value in canonical JSON-able form (numpy scalars -> Python, tuples -> lists)."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.generic):
        return _json_value(v.item(), where)
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_json_value(u, where) for u in v]
    if isinstance(v, Mapping):
        return {str(k): _json_value(u, where) for k, u in v.items()}
    raise ValueError(f"config value {v!r} at {where} is a {type(v).__name__}; allowed: None, bool, int, "
                     "float, str, and lists/tuples/dicts of these")


def _check_key(k):
    if not isinstance(k, str) or not k:
        raise ValueError(f"grid keys must be non-empty strings (or tuples of them, to zip); got {k!r}")
    if k in META_COLUMNS or k.startswith("_"):
        raise ValueError(f"grid key {k!r} is reserved; reserved names: {', '.join(META_COLUMNS)} "
                         "and anything starting with '_'")
    return k


def _axes(grid: Mapping, zip_keys) -> list[tuple[tuple[str, ...], list[tuple]]]:
    """The grid as a list of axes: (key names, list of value tuples)."""
    if not isinstance(grid, Mapping):
        raise ValueError(f"a grid is a dict of lists (or a list of such dicts); got {type(grid).__name__}")
    grid = dict(grid)
    axes = []
    zipped_names = set()
    for group in zip_keys or ():
        group = tuple(group)
        if len(group) < 2:
            raise ValueError(f"zip groups need at least two keys; got {group!r}")
        missing = [k for k in group if k not in grid]
        if missing:
            raise ValueError(f"zip names keys {missing} that the grid does not have; grid keys: {list(grid)}")
        lists = [grid[k] for k in group]
        for k, vals in zip(group, lists):
            if not isinstance(vals, (list, tuple)):
                raise ValueError(f"grid[{k!r}] must be a list of values; got {vals!r}")
        if len({len(v) for v in lists}) != 1:
            raise ValueError(f"zipped keys {group} need lists of equal length; got lengths "
                             f"{[len(v) for v in lists]}")
        zipped_names.update(group)
        axes.append((group, [tuple(t) for t in zip(*lists)], group[0]))
    for key, vals in grid.items():
        if isinstance(key, tuple):
            names = tuple(_check_key(k) for k in key)
            if not isinstance(vals, (list, tuple)):
                raise ValueError(f"grid[{key!r}] must be a list of tuples; got {vals!r}")
            tuples = []
            for t in vals:
                if not isinstance(t, (list, tuple)) or len(t) != len(names):
                    raise ValueError(f"grid[{key!r}] holds {t!r}; each entry must be a tuple of "
                                     f"{len(names)} values, one per key")
                tuples.append(tuple(t))
            axes.append((names, tuples, key))
        elif key in zipped_names:
            continue
        else:
            _check_key(key)
            if isinstance(vals, (str, bytes)) or not isinstance(vals, (list, tuple, range, np.ndarray)):
                raise ValueError(f"grid[{key!r}] must be a list of values (wrap a single value in a list); "
                                 f"got {vals!r}")
            axes.append(((key,), [(v,) for v in vals], key))
    # keep the grid's key order (a zip group sits where its first key was)
    order = {k: i for i, k in enumerate(grid)}
    axes.sort(key=lambda a: order[a[2]])
    names = [n for a in axes for n in a[0]]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"keys {dup} appear in more than one axis of the grid")
    return [(a[0], a[1]) for a in axes]


def expand(grid: Mapping | Sequence[Mapping], zip: Sequence[Sequence[str]] | None = None) -> list[dict]:
    """All configs of ``grid`` (a dict of lists, or a list of such dicts: their union), in
    order: the Cartesian product over axes, first key slowest; ``zip`` groups keys whose
    lists are paired element by element (as does a tuple key). Duplicates are dropped.
    An axis with an empty list gives no configs."""
    grids = [grid] if isinstance(grid, Mapping) else list(grid)
    if not grids:
        raise ValueError("the grid is empty: give a dict of lists or a non-empty list of dicts")
    out, seen = [], set()
    for g in grids:
        axes = _axes(g, zip)
        for combo in itertools.product(*[vals for _, vals in axes]):
            cfg = {}
            for (names, _), values in zip_(axes, combo):
                for n, v in zip_(names, values):
                    cfg[n] = v
            h = config_hash(cfg)
            if h not in seen:
                seen.add(h)
                out.append(cfg)
    return out


zip_ = zip  # the builtin, kept under another name (``zip`` is a parameter of expand/run)


def _canonical(config: Mapping) -> str:
    return json.dumps({str(k): _json_value(v, f"key {k!r}") for k, v in config.items()},
                      sort_keys=True, separators=(",", ":"), allow_nan=True)


def config_hash(config: Mapping, salt: str = "") -> str:
    """Stable 16-hex-digit hash of a config: BLAKE2b of its canonical JSON (sorted keys,
    numpy scalars as Python numbers, tuples as lists) plus ``salt``. Independent of the
    process, the platform and the key order."""
    h = hashlib.blake2b((_canonical(config) + str(salt)).encode(), digest_size=_HASH_BYTES)
    return h.hexdigest()


# ----------------------------------------------------------------------------- rows
def _cell(v, key):
    """A measured value as something Parquet stores: scalars stay, arrays become lists."""
    if v is None or isinstance(v, (bool, str, int, float)):
        return v
    if isinstance(v, np.generic):
        return v.item()
    if hasattr(v, "detach") and hasattr(v, "tolist"):  # torch tensor
        v = v.detach().cpu()
        return v.item() if v.numel() == 1 and v.dim() == 0 else v.tolist()
    if isinstance(v, np.ndarray):
        return v.item() if v.ndim == 0 else v.tolist()
    if isinstance(v, (list, tuple)):
        return [_cell(u, key) for u in v]
    raise ValueError(f"measured value {key!r} = {v!r} ({type(v).__name__}) cannot be stored; return "
                     "numbers, strings, bools, None or arrays/lists of numbers")


def _config_cells(config: Mapping) -> dict:
    """Config values for the table: scalars as they are, lists/dicts as JSON text."""
    out = {}
    for k, v in config.items():
        v = _json_value(v, f"key {k!r}")
        out[k] = json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v
    return out


def _as_rows(result) -> list[dict]:
    if isinstance(result, pd.DataFrame):
        return result.to_dict("records")
    if isinstance(result, Mapping):
        return [dict(result)]
    if isinstance(result, (list, tuple)) and all(isinstance(r, Mapping) for r in result):
        return [dict(r) for r in result]
    raise ValueError(f"fn must return a dict, a list of dicts or a DataFrame; got {type(result).__name__}")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _set_threads(threads):
    """Set torch's intra-op threads (if torch is loaded) and return the previous value."""
    torch = sys.modules.get("torch")
    if torch is None or threads is None:
        return None
    prev = torch.get_num_threads()
    if prev != threads:
        torch.set_num_threads(int(threads))
    return prev


@dataclasses.dataclass(frozen=True)
class _Context:
    """What travels with every task besides ``fn`` and its config: the code-key columns
    (computed once, in the submitting process), the user's registrations (so a rule or
    problem registered in a script exists in every worker) and the submitting process's
    pid (a local worker exits when that process is gone)."""

    meta: dict
    registrations: dict = dataclasses.field(default_factory=dict)
    parent_pid: int | None = None


def _user_registrations() -> dict:
    """``{(kind, name): factory}`` for every optimizer and problem registered outside
    heterosim (in a user's script, notebook or experiment module)."""
    from heterosim import optimizers, problems
    out = {}
    for kind, registry in (("optimizer", optimizers._REGISTRY), ("problem", problems._REGISTRY)):
        for name, factory in registry.items():
            mod = getattr(factory, "__module__", None) or ""
            if mod != "heterosim" and not mod.startswith("heterosim."):
                out[(kind, name)] = factory
    return out


def _install_registrations(registrations: dict) -> None:
    """In a worker: register what the submitting process had registered (names the worker
    knows already, e.g. because unpickling imported the user's module, stay as they are)."""
    if not registrations:
        return
    from heterosim import optimizers, problems
    registries = {"optimizer": optimizers._REGISTRY, "problem": problems._REGISTRY}
    for (kind, name), factory in registrations.items():
        registries[kind].setdefault(name, factory)


_WATCHED: set[int] = set()
_WATCH_EVERY_S = 0.5


def _watch_parent(pid: int | None) -> None:
    """In a local worker process: exit as soon as the submitting process ``pid`` is gone
    (a SIGKILLed sweep would otherwise leave its loky or Dask workers behind for minutes)."""
    if pid is None or pid == os.getpid() or pid in _WATCHED:
        return
    _WATCHED.add(pid)
    import threading

    def watch():
        while _pid_alive(pid):
            time.sleep(_WATCH_EVERY_S)
        os._exit(70)

    threading.Thread(target=watch, name=f"heterosim-watch-{pid}", daemon=True).start()


def _call(fn: Callable, config: dict, chash: str, threads: int | None, ctx: _Context | None = None) -> list[dict]:
    """Run ``fn(config)`` and return its finished rows (config + measured + meta).
    Runs in the worker; an exception becomes one 'failed' row."""
    from heterosim.provenance import provenance
    ctx = ctx or _Context(meta={})
    _watch_parent(ctx.parent_pid)
    _install_registrations(ctx.registrations)
    prev = _set_threads(threads)  # torch is loaded already when fn's module uses it (unpickling fn imports it)
    t0 = time.perf_counter()
    cfg_cells = _config_cells(config)
    try:
        rows = _as_rows(fn(dict(config)))
        if not rows:
            raise ValueError("fn returned no rows; return at least one row (a dict) per config")
        out = []
        for i, r in enumerate(rows):
            row = dict(cfg_cells)
            for k, v in r.items():
                if not isinstance(k, str):
                    raise ValueError(f"row keys must be strings; got {k!r}")
                if k in META_COLUMNS:
                    raise ValueError(f"fn returned the reserved column {k!r}; reserved: {', '.join(META_COLUMNS)}")
                v = _cell(v, k)
                if k in cfg_cells and not _same(cfg_cells[k], v):
                    raise ValueError(f"fn returned {k!r} = {v!r}, which contradicts the config's {k!r} = "
                                     f"{cfg_cells[k]!r}; rename the measured column")
                row[k] = v
            out.append(row)
        status, error = "ok", None
    except Exception as e:  # a failed config is a row, never a crashed sweep
        tb = traceback.extract_tb(e.__traceback__)
        where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
        out = [dict(cfg_cells)]
        status, error = "failed", f"{type(e).__name__}: {e}{where}"
    finally:
        if prev is not None:
            _set_threads(prev)
    seconds = time.perf_counter() - t0
    meta = dict(config_hash=chash, status=status, error=error, seconds=seconds, time=_now(), **provenance(),
                **ctx.meta)
    for i, row in enumerate(out):
        row.update(meta, row=i)
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


# ----------------------------------------------------------------------------- storage
def study_dir(study: str, root: str | os.PathLike = "results") -> Path:
    """``<root>/<study>``; a study name is letters, digits, ``_ . -``, and ``/`` for nesting."""
    if not isinstance(study, str) or not _STUDY_RE.match(study) or any(p in (".", "..") for p in study.split("/")):
        raise ValueError(f"invalid study name {study!r}; use letters, digits, '_', '.', '-' "
                         "(and '/' to nest), without '.' or '..' segments")
    return Path(root) / study


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True


class Store:
    """The Parquet chunks of one study folder (see the module docstring).

    Column types come from the values ``fn`` returned (an int column stays int, a bool
    column bool); a column that is missing in some rows is float (NaN) or object (None)
    only as long as a missing value is really there, so the table read back depends on
    the stored rows alone, not on how they were chunked."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._seq = 0

    def chunks(self) -> list[Path]:
        """Chunk files, oldest first (names sort by creation time)."""
        return sorted(self.path.glob(_CHUNK_GLOB)) if self.path.is_dir() else []

    def clean_tmp(self) -> None:
        """Remove temporary files left by a killed writer (whose process is gone)."""
        if not self.path.is_dir():
            return
        for p in self.path.glob(_TMP_PREFIX + "*"):
            try:
                pid = int(p.name[len(_TMP_PREFIX):].split("-")[0])
            except ValueError:
                continue
            if pid != os.getpid() and not _pid_alive(pid):
                p.unlink(missing_ok=True)

    def write(self, rows: list[dict], kinds: dict | None = None) -> Path | None:
        """Write rows as one new chunk, atomically; returns its path (None for no rows).
        ``kinds`` (column -> "int"/"bool"/...) keeps integer and boolean columns typed where
        values are missing (used by :meth:`compact`)."""
        if not rows:
            return None
        self.path.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = f"chunk-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.parquet"
        tmp = self.path / f"{_TMP_PREFIX}{os.getpid()}-{self._seq:06d}-{name}"
        _write_rows(rows, tmp, kinds or {})
        final = self.path / name
        os.replace(tmp, final)
        _fsync_dir(self.path)
        return final

    def load(self, chunks: list[Path] | None = None, with_kinds: bool = False):
        """Every stored row, the newest chunk's rows for each config hash, in storage order
        (with ``with_kinds`` also the column kinds: "int", "float", "bool", "str", "other")."""
        import pyarrow.parquet as pq
        chunks = self.chunks() if chunks is None else chunks
        if not chunks:
            return (pd.DataFrame(), {}) if with_kinds else pd.DataFrame()
        frames, kinds, newest = [], {}, {}
        for i, c in enumerate(chunks):
            tab = pq.read_table(c)
            for fld in tab.schema:
                kinds[fld.name] = _merge_kind(kinds.get(fld.name), _arrow_kind(fld.type))
            f = tab.to_pandas()
            frames.append(f)
            for h in f["config_hash"].unique():
                newest[h] = i
        kept = [f[f["config_hash"].map(newest) == i] for i, f in enumerate(frames)]
        kept = [f for f in kept if not f.empty]
        df = _normalise(pd.concat(kept, ignore_index=True), kinds)
        return (df, kinds) if with_kinds else df

    def compact(self) -> None:
        """Merge all chunks into one: the merged chunk is written (atomically) before the
        old ones are removed, and is the newest, so an interruption changes nothing."""
        chunks = self.chunks()
        if len(chunks) <= 1:
            return
        df, kinds = self.load(chunks, with_kinds=True)
        self.write(df.to_dict("records"), kinds)
        for c in chunks:
            c.unlink(missing_ok=True)
        _fsync_dir(self.path)


def _arrow_kind(t) -> str | None:
    import pyarrow as pa
    if pa.types.is_null(t):
        return None
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "str"
    return "other"


def _merge_kind(a, b):
    """The kind of a column stored as kind a in one chunk and b in another."""
    if a is None or b is None or a == b:
        return b if a is None else a
    return "float" if {a, b} == {"int", "float"} else "other"


def _missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _normalise(df: pd.DataFrame, kinds: dict) -> pd.DataFrame:
    """Column dtypes from the stored kinds and the values present: an int (bool) column
    without a missing value is int64 (bool), with one float64 (object); missing text is None."""
    out = {}
    for c in df.columns:
        k, col = kinds.get(c), df[c]
        if k == "int":
            col = col.astype("int64") if not col.isna().any() else col.astype("float64")
        elif k == "bool":
            col = col.astype(bool) if not col.isna().any() else col.astype(object).where(col.notna(), None)
        elif k == "float":
            col = col.astype("float64")
        elif col.dtype == object or k is None:
            col = col.astype(object).where(col.notna(), None)
        out[c] = col
    return pd.DataFrame(out, index=df.index)


def _write_rows(rows: list[dict], path: Path, kinds: dict) -> None:
    """Rows -> one Parquet file; each column typed from its values (``kinds`` forces int/bool)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    names = list(dict.fromkeys(k for r in rows for k in r))
    arrays = {}
    for c in names:
        vals = [r.get(c) for r in rows]
        kind = kinds.get(c)
        if kind in ("int", "bool"):
            arrays[c] = pa.array([None if _missing(v) else v for v in vals],
                                 type=pa.int64() if kind == "int" else pa.bool_())
            continue
        try:
            arrays[c] = pa.array(vals)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column mixing types: store it as text
            arrays[c] = pa.array([None if _missing(v) else str(v) for v in vals], type=pa.string())
    pq.write_table(pa.table(arrays), path)
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover  (platforms without directory fds)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def load(study: str, root: str | os.PathLike = "results", ok_only: bool = False) -> pd.DataFrame:
    """The stored table of ``study`` (newest rows per config; ``ok_only`` drops failed configs).
    Raises ValueError when nothing is stored there."""
    path = study_dir(study, root)
    df = Store(path).load()
    if df.empty:
        raise ValueError(f"no results stored for study {study!r} under {path}; run its experiment first "
                         f"(heterosim sweep experiments/{study.split('/')[-1]}.py)")
    return df[df["status"] == "ok"].reset_index(drop=True) if ok_only else df


def strip_volatile(table: pd.DataFrame) -> pd.DataFrame:
    """The table without the columns that differ between identical runs (timings)."""
    return table.drop(columns=[c for c in VOLATILE_COLUMNS if c in table.columns])


# ----------------------------------------------------------------------------- executors
def _cloudpickle():
    """cloudpickle (a dependency of heterosim; joblib's loky uses it too)."""
    import cloudpickle
    return cloudpickle


def _register_by_value(*objs) -> None:
    """Let worker processes unpickle ``objs`` (the measure function, the factories of user
    registrations) even when their module (a script, a test file) is not importable
    there: pickle that module's functions by value."""
    from heterosim.codekey import _user_file
    cp = _cloudpickle()
    for obj in objs:
        mod = sys.modules.get(getattr(obj, "__module__", None) or "")
        if mod is None or mod.__name__ == "__main__" or "." in mod.__name__ or _user_file(mod) is None:
            continue  # __main__ goes by value anyway; packages and installed modules are importable
        try:
            cp.register_pickle_by_value(mod)
        except (ValueError, AttributeError):  # pragma: no cover
            pass


def _pack(fn, ctx: _Context) -> bytes:
    """``(fn, ctx)`` as cloudpickle bytes, user modules by value. Tasks carry these bytes
    and a JSON-like config, so an executor never has to unpickle user code itself (Dask
    would try plain pickle first, by reference, and fail in a worker that cannot import
    a script); a blob that cannot be loaded becomes a failed row, not a hung sweep."""
    _register_by_value(fn, *ctx.registrations.values())
    return _cloudpickle().dumps((fn, ctx))


class _Unloadable:
    """Stands in for a measure function that could not be unpickled in the worker."""

    def __init__(self, error: BaseException):
        self.error = f"{type(error).__name__}: {error}"

    def __call__(self, config):
        raise RuntimeError(f"the worker could not load the measure function or the registrations: {self.error}")


def _call_packed(blob: bytes, config: dict, chash: str, threads: int | None, parent_pid: int | None):
    """:func:`_call` in a worker, from :func:`_pack`'s bytes."""
    import pickle
    try:
        fn, ctx = pickle.loads(blob)
    except Exception as e:  # noqa: BLE001  (any unpickling error)
        fn, ctx = _Unloadable(e), _Context(meta={})
    return _call(fn, config, chash, threads, dataclasses.replace(ctx, parent_pid=parent_pid))


def _serial(fn, todo, threads, ctx):
    for chash, cfg in todo:
        yield _call(fn, cfg, chash, threads, ctx)


def _joblib(fn, todo, threads, n_jobs, ctx):
    from joblib import Parallel, delayed
    blob, me = _pack(fn, ctx), os.getpid()
    try:  # joblib >= 1.4 hands results over as they finish; 1.3 in submission order
        par = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered", batch_size=1)
    except ValueError:  # pragma: no cover
        par = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator", batch_size=1)
    yield from par(delayed(_call_packed)(blob, cfg, chash, threads, me) for chash, cfg in todo)


def _dask(fn, todo, threads, n_jobs, scheduler, ctx):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as e:  # pragma: no cover
        raise ValueError("scheduler= needs Dask distributed: pip install 'heterosim[dask]'") from e
    import logging
    blob, parent = _pack(fn, ctx), None
    cluster = None
    own_client = True
    if isinstance(scheduler, str) and scheduler == "local":
        workers = n_jobs if n_jobs and n_jobs > 0 else (os.cpu_count() or 1)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.WARNING)
        client = Client(cluster)
        parent = os.getpid()  # local workers: exit with this process
    elif isinstance(scheduler, str):
        client = Client(scheduler)
    elif isinstance(scheduler, Client):
        client, own_client = scheduler, False
    else:
        raise ValueError(f"scheduler must be 'local', an address like 'tcp://host:8786' or a "
                         f"distributed.Client; got {scheduler!r}")
    try:
        [blob_f] = client.scatter([blob], broadcast=True)
        futures = [client.submit(_call_packed, blob_f, cfg, chash, threads, parent, pure=False)
                   for chash, cfg in todo]
        for fut in as_completed(futures):
            yield fut.result()
            fut.release()
    finally:
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()


def _executor(fn, todo, *, n_jobs, scheduler, threads, ctx) -> Iterable[list[dict]]:
    if scheduler is not None:
        return _dask(fn, todo, threads, n_jobs, scheduler, ctx)
    if n_jobs == 1 or len(todo) <= 1:
        return _serial(fn, todo, threads, ctx)
    return _joblib(fn, todo, threads, n_jobs, ctx)


def _check_jobs(n_jobs) -> None:
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive integer or -1 (all cores); got {n_jobs!r}")


# ----------------------------------------------------------------------------- run
def _order(table: pd.DataFrame, hashes: list[str], config_keys: list[str]) -> pd.DataFrame:
    """Rows in grid order (then row index); columns: config keys, measured (in order of
    first appearance along the grid), meta. Independent of which executor finished first."""
    pos = {h: i for i, h in enumerate(hashes)}
    t = table[table["config_hash"].isin(pos)].copy()
    t["_pos"] = t["config_hash"].map(pos)
    t = t.sort_values(["_pos", "row"], kind="stable").drop(columns="_pos").reset_index(drop=True)
    cfg = [k for k in config_keys if k in t.columns]
    meta = [k for k in META_COLUMNS if k in t.columns]
    rest = [c for c in t.columns if c not in cfg and c not in meta]
    notnull = t[rest].notna().to_numpy() if rest else np.zeros((len(t), 0), bool)
    first = [int(np.argmax(notnull[:, j])) if notnull[:, j].any() else len(t) for j in range(len(rest))]
    rest = [c for _, _, c in sorted(zip_(first, range(len(rest)), rest))]
    return t[cfg + rest + meta]


def run(grid: Mapping | Sequence[Mapping], study: str, fn: Callable[[dict], Any], *,
        zip: Sequence[Sequence[str]] | None = None, root: str | os.PathLike = "results",
        n_jobs: int = -1, scheduler=None, force: bool = False, threads: int | None = 1,
        progress: bool = True, verbose: bool = True, flush_every: float = FLUSH_EVERY_S,
        salt: str = "", modules: Sequence = ()) -> pd.DataFrame:
    """Measure every config of ``grid`` with ``fn``, cached under ``<root>/<study>/``.

    A stored row is reused only when its config *and* its code are unchanged: the code
    key (:mod:`heterosim.codekey`) covers ``fn``'s source and the data it closes over, the
    user modules behind it (``fn``'s own, ``modules``, and those it names), heterosim's
    version and source tree, and the versions of torch, numpy and scipy. Rows stored
    under another code key are recomputed, and the summary says why.

    Args:
        grid: a dict of lists or a list of them (see :func:`expand`); ``zip`` pairs keys.
        study: the results folder's name (``/`` nests).
        fn: ``fn(config) -> rows`` (a dict, a list of dicts or a DataFrame); must be
            deterministic given the config (seed everything from it) for executors to agree.
        n_jobs: 1 runs in this process; N > 1 (or -1, all cores) uses joblib's loky pool;
            with ``scheduler="local"`` the number of Dask workers.
        scheduler: None (joblib or serial), ``"local"`` (a local Dask cluster), a scheduler
            address, or a ``distributed.Client``.
        force: recompute every config (new rows supersede the stored ones).
        threads: torch threads inside ``fn`` (None leaves them alone).
        progress: a tqdm bar over the configs to compute; verbose: print a summary.
        flush_every: seconds between chunk writes (0: one chunk per finished config).
        salt: mixed into every config hash (change it to invalidate a study's cache).
        modules: further modules or source paths whose text decides the rows (the
            experiment script when ``fn`` is imported from elsewhere).

    Rules and problems registered outside heterosim (``@optimizers.register`` or
    ``@problems.register`` in a script or notebook) travel with every task, so workers
    know them too.

    Returns the rows of this grid's configs (status ``ok`` and ``failed``) in grid order:
    config columns, measured columns, then :data:`META_COLUMNS`.
    """
    t0 = time.perf_counter()
    configs = expand(grid, zip=zip)
    if not configs:
        raise ValueError("the grid expands to no configs (an axis has an empty list)")
    if not callable(fn):
        raise ValueError(f"fn must be callable (config -> rows); got {fn!r}")
    if not flush_every >= 0:
        raise ValueError(f"flush_every must be >= 0 seconds; got {flush_every!r}")
    if scheduler is None:
        _check_jobs(n_jobs)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral)
                                or threads < 1):
        raise ValueError(f"threads must be a positive integer or None (leave torch's setting); got {threads!r}")
    hashes = [config_hash(c, salt) for c in configs]
    keys = list(dict.fromkeys(k for c in configs for k in c))
    parts = code_parts(fn, modules)
    store = Store(study_dir(study, root))
    store.clean_tmp()
    todo, reasons = _plan(store.load(), hashes, configs, parts, force)
    ctx = _Context(meta=parts.columns(), registrations=_user_registrations())
    n_failed, pending, last = 0, [], time.monotonic()
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(todo), desc=study, unit="cfg", leave=False, file=sys.stderr)
    try:
        for rows in _executor(fn, todo, n_jobs=n_jobs, scheduler=scheduler, threads=threads, ctx=ctx):
            n_failed += rows[0]["status"] != "ok"
            pending.extend(rows)
            if bar is not None:
                bar.update(1)
            if time.monotonic() - last >= flush_every:
                store.write(pending)
                pending, last = [], time.monotonic()
    finally:
        store.write(pending)  # whatever finished, also on KeyboardInterrupt or an executor error
        if bar is not None:
            bar.close()
    store.compact()
    table = _order(store.load(), hashes, keys)
    if verbose:
        print(_summary(study, store.path, len(configs), len(todo), reasons, n_failed, table,
                       time.perf_counter() - t0))
    return table


def _plan(stored: pd.DataFrame, hashes: list[str], configs: list[dict], parts: CodeParts,
          force: bool) -> tuple[list, dict]:
    """The configs to compute, and ``{reason: count}`` for those that were stored but are
    recomputed (stale code key, a failed row, ``force``)."""
    reasons: dict[str, int] = {}
    if stored.empty:
        return list(zip_(hashes, configs)), reasons
    first = stored.drop_duplicates("config_hash").set_index("config_hash")
    current = first["status"].eq("ok") if "status" in first else pd.Series(False, index=first.index)
    if "code_key" in first:
        current &= first["code_key"].eq(parts.code_key)
    else:
        current &= False
    todo = []
    for h, cfg in zip_(hashes, configs):
        if h in first.index and current.at[h] and not force:
            continue                                   # stored, ok, same code: reuse
        todo.append((h, cfg))
        if h not in first.index:
            continue                                   # new
        if force:
            why = ["--force"]
        else:
            why = describe_changes(first.loc[h].to_dict(), parts) or ["failed before"]
        key = "; ".join(why)
        reasons[key] = reasons.get(key, 0) + 1
    return todo, reasons


def _summary(study, path, n, computed, reasons, failed, table, seconds) -> str:
    """``study: N configs (C cached, K computed: R recomputed [why], M new; F failed); ...``"""
    recomputed = sum(reasons.values())
    why = "; ".join(f"{r}: {c}" for r, c in reasons.items())
    if recomputed:
        detail = f": {recomputed} recomputed [{why}], {computed - recomputed} new"
    else:
        detail = f": {computed} new" if computed else ""
    lines = [f"{study}: {n} configs ({n - computed} cached, {computed} computed{detail}; {failed} failed); "
             f"{len(table)} rows in {path} [{seconds:.1f} s]"]
    if failed:
        bad = table[table["status"] == "failed"].drop_duplicates("config_hash").head(3)
        for r in bad.itertuples():
            lines.append(f"  failed {r.config_hash}: {r.error}")
        lines.append("  failed configs are retried on the next run")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- scripts and CLI
def load_experiment(path: str | os.PathLike):
    """Import an experiment script by path. It must define ``STUDY`` (str), ``grid(quick=False)``
    (or a dict ``GRID``) and ``measure(config)``; optional: ``ZIP`` and ``summarize(table)``.
    A script that measures a claim of :mod:`heterosim.claims` may instead define ``CLAIM``
    (its label, ``"C1"``): the claim's study, grid, zip, measure and criterion fill in
    whatever the script does not define itself."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"experiment script {str(path)!r} does not exist")
    name = f"heterosim_experiment_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import {path} as a Python module")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    if hasattr(mod, "CLAIM"):
        _fill_from_claim(mod)
    missing = [a for a in ("STUDY", "measure") if not hasattr(mod, a)]
    if not (hasattr(mod, "grid") or hasattr(mod, "GRID")):
        missing.append("grid (or GRID)")
    if missing:
        raise ValueError(f"{path} is not an experiment script: it lacks {', '.join(missing)}")
    return mod


def _fill_from_claim(mod) -> None:
    """Give a ``CLAIM = "Cn"`` script its claim's STUDY, grid, ZIP, measure and summarize."""
    from heterosim import claims
    claim = claims.get(mod.CLAIM)
    if claim.measure is None:
        raise ValueError(f"claim {claim.label} is measured by `{claim.how_to_run()}`, not by a sweep script")
    defaults = {"STUDY": claim.study, "grid": claim.grid, "measure": claim.measure,
                "summarize": lambda table: str(claim.criterion(table))}
    if claim.zip:
        defaults["ZIP"] = claim.zip
    for name, value in defaults.items():
        if not hasattr(mod, name):
            setattr(mod, name, value)


def _experiment_grid(mod, quick: bool):
    if hasattr(mod, "grid") and callable(mod.grid):
        return mod.grid(quick=quick)
    if quick:
        raise ValueError(f"{mod.__file__} has a fixed GRID and no grid(quick) function; drop --quick")
    return mod.GRID


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="heterosim sweep",
        description="Run an experiment script's grid as a cached, resumable sweep: results go to "
                    "<root>/<STUDY>/ as Parquet; configs already stored are skipped.",
        epilog="A script defines STUDY, grid(quick=False) and measure(config); see experiments/. "
               "On SLURM: start Dask workers with dask-jobqueue (SLURMCluster) and pass --scheduler "
               "with its address.")
    p.add_argument("script", help="experiment script, e.g. experiments/c1_block_scale.py")
    from heterosim.cli import jobs_int, positive_int
    p.add_argument("-j", "--jobs", type=jobs_int, default=-1,
                   help="worker processes (joblib loky; -1 = all cores, 1 = this process); "
                        "with --scheduler local, the number of Dask workers")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on Dask distributed: 'local' starts a local cluster, or a scheduler "
                        "address such as tcp://host:8786")
    p.add_argument("--force", action="store_true", help="recompute every config, even those stored")
    p.add_argument("--quick", action="store_true",
                   help="the script's reduced grid (the tests' size), stored as <STUDY>_quick")
    p.add_argument("--root", default="results", help="results folder (default: results)")
    p.add_argument("--study", default=None, help="store under this study name instead of the script's STUDY")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true", help="list how many configs the grid has and stop")
    return p


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``heterosim sweep SCRIPT ...``; returns the exit status (1 when a config failed)."""
    from heterosim.cli import report_error
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        mod = load_experiment(args.script)
        grid = _experiment_grid(mod, args.quick)
        study = args.study or (mod.STUDY + ("_quick" if args.quick else ""))
        zip_keys = getattr(mod, "ZIP", None)
        configs = expand(grid, zip=zip_keys)
        if args.dry_run:
            print(f"{study}: {len(configs)} configs; keys: {', '.join(dict.fromkeys(k for c in configs for k in c))}")
            return 0
        table = run(grid, study, mod.measure, zip=zip_keys, root=args.root, n_jobs=args.jobs,
                    scheduler=args.scheduler, force=args.force, threads=args.threads,
                    progress=not args.no_progress, modules=[mod])
    except ValueError as e:
        parser.print_usage(sys.stderr)
        report_error(parser.prog, e)
        return 2
    if hasattr(mod, "summarize"):
        ok = table[table["status"] == "ok"]
        if not ok.empty:
            print(mod.summarize(ok))
    return int((table["status"] != "ok").any())


def script_main(file: str, argv: Sequence[str] | None = None) -> int:
    """What an experiment script runs as ``__main__``: ``cli_main([file, *argv])``."""
    return cli_main([file, *(sys.argv[1:] if argv is None else argv)])
