r"""The code behind a result: what a sweep's cache key holds besides the config.

A stored row is served again only when everything that decides it is unchanged. The
config decides part of it (:func:`heterosim.sweep.config_hash`); the rest is code, and
:func:`code_parts` names each piece so that a stale row can say *why* it is stale:

``fn_hash``
    The measure function: its source text as joblib.Memory reads it
    (:func:`joblib.func_inspect.get_func_code`, which re-reads the file instead of
    trusting :mod:`inspect`'s cache), plus the values it closes over: defaults,
    closure cells, ``functools.partial`` arguments, and the immutable-data globals its
    code names (numbers, strings, tuples, numpy arrays, tensors; not lists or dicts, which
    may hold a cache), hashed with :func:`joblib.hash`. A decorator's wrapper adds its
    own code.
    A notebook cell that changes ``K = 10`` to ``K = 1`` therefore changes the key even
    when the function's text does not.
``module_hash``
    The source files of the user's modules behind the row: the module that defines the
    measure function, the experiment script given to the sweep, and the user modules
    (not the standard library, not site-packages, not heterosim) whose functions,
    classes or modules the measure function names directly. A module constant changed
    from 1e-4 to 1e-8 changes this part.
``source_hash``
    Every source file of the installed heterosim package (``*.py`` and the C sources),
    read from disk, so uncommitted changes count; ``heterosim_version`` goes with it.
``lib_versions``
    The versions of torch, numpy and scipy.

joblib.Memory keys a cached call on the function's code and its arguments and warns
when the code changes; it does not follow module constants, other modules or the
libraries' versions, which decide a measurement just as much. So this module borrows
joblib's two pieces (its code reader and its object hash) and adds the module, package
and library parts. The code key is the BLAKE2b digest of all four parts.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import numbers
import os
import sys
import sysconfig
import types
from pathlib import Path
from typing import Any, Callable, Iterable

__all__ = ["CodeParts", "code_parts", "function_hash", "modules_hash", "source_tree_hash",
           "library_versions", "describe_changes", "PART_COLUMNS", "LIBRARIES"]

#: The libraries whose versions are part of every key.
LIBRARIES = ("torch", "numpy", "scipy")
#: The columns a results row stores for its code key (besides ``heterosim_version``).
PART_COLUMNS = ("code_key", "fn_hash", "module_hash", "source_hash", "lib_versions")
_SOURCE_SUFFIXES = (".py", ".c", ".h", ".cpp")
_DIGEST = 8  # bytes: 16 hex digits


def _blake(*chunks: bytes | str) -> str:
    h = hashlib.blake2b(digest_size=_DIGEST)
    for c in chunks:
        b = c.encode() if isinstance(c, str) else c
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


# ----------------------------------------------------------------------------- heterosim
def _package_root() -> Path:
    import heterosim
    return Path(heterosim.__file__).resolve().parent


def _tree_files(base: Path) -> tuple:
    """(relative path, mtime in ns, size) of every source file below ``base``, sorted."""
    files = sorted(p for p in base.rglob("*") if p.suffix in _SOURCE_SUFFIXES and p.is_file()
                   and "__pycache__" not in p.parts)
    return tuple((p.relative_to(base).as_posix(), st.st_mtime_ns, st.st_size) for p in files for st in (p.stat(),))


@functools.lru_cache(maxsize=8)
def _tree_hash(root: str, stats: tuple) -> str:
    base = Path(root)
    return _blake(*[c for rel, _, _ in stats for c in (rel, (base / rel).read_bytes())])


def source_tree_hash(root: str | os.PathLike | None = None) -> str:
    """Digest of every source file of the heterosim package (or of ``root``), committed or
    not. The files are listed (with their modification times and sizes) at every call and
    read again only when that list changed, so an edit in a long-running process (a
    notebook) changes the key of the next sweep."""
    base = Path(root).resolve() if root is not None else _package_root()
    return _tree_hash(str(base), _tree_files(base))


@functools.lru_cache(maxsize=1)
def library_versions() -> str:
    """``"torch 2.13.0, numpy 2.4.6, scipy 1.17.1"`` (``none`` for one not installed)."""
    out = []
    for lib in LIBRARIES:
        mod = sys.modules.get(lib)
        v = getattr(mod, "__version__", None) if mod is not None else None
        if v is None:
            try:
                v = importlib.metadata.version(lib)
            except importlib.metadata.PackageNotFoundError:
                v = "none"
        out.append(f"{lib} {v}")
    return ", ".join(out)


# ----------------------------------------------------------------------------- user code
_SYSTEM_DIRS = tuple({str(Path(p).resolve()) for p in
                      (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])})


def _user_file(obj) -> Path | None:
    """The source file of a module (or of the module defining ``obj``) when it is the
    user's own code: not the standard library, not an installed package, not heterosim."""
    mod = obj if isinstance(obj, types.ModuleType) else sys.modules.get(getattr(obj, "__module__", "") or "")
    if mod is None:
        return None
    name = mod.__name__
    if name == "heterosim" or name.startswith("heterosim."):
        return None
    file = getattr(mod, "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    text = str(path)
    if "site-packages" in path.parts or "dist-packages" in path.parts or text.startswith(_SYSTEM_DIRS):
        return None
    if path.is_relative_to(_package_root()) or not path.is_file():
        return None
    return path


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _code_names(c)
    return names


_SCALARS = (numbers.Number, str, bytes, bool, type(None))


def _is_data(v) -> bool:
    """A value that decides results and cannot change behind the key's back: numbers,
    strings, tuples and frozensets of them, numpy arrays and scalars, torch tensors.
    Mutable containers (lists, dicts, sets) are left out: a measure function may keep a
    cache or a call log in one, and its contents must not change the key (their
    literal values are in the module's source, which is hashed)."""
    if isinstance(v, _SCALARS):
        return True
    if isinstance(v, (tuple, frozenset)):
        return all(_is_data(u) for u in v)
    mod = type(v).__module__
    return mod.startswith("numpy") or (mod.startswith("torch") and hasattr(v, "detach"))


def _value_hash(v) -> str:
    import joblib
    try:
        return joblib.hash(v)
    except Exception:  # pragma: no cover  (an object pickle refuses: its repr is the next best thing)
        return _blake(type(v).__qualname__, repr(v))


def _unwrap(fn) -> tuple[Callable, list]:
    """(the plain function behind ``fn``, the bound values that go with it)."""
    bound: list = []
    while True:
        if isinstance(fn, functools.partial):
            bound += [("partial", fn.args, sorted(fn.keywords.items()))]
            fn = fn.func
        elif isinstance(fn, types.MethodType):
            bound += [("self", type(fn.__self__).__qualname__)]
            fn = fn.__func__
        elif hasattr(fn, "__wrapped__"):  # a decorator's wrapper: its own code counts too
            if isinstance(fn, types.FunctionType):
                bound += [("wrapper", _own_code(fn))]
            fn = fn.__wrapped__
        elif not isinstance(fn, types.FunctionType) and hasattr(type(fn), "__call__") \
                and isinstance(getattr(type(fn), "__call__", None), types.FunctionType):
            attrs = sorted((k, v) for k, v in getattr(fn, "__dict__", {}).items() if _is_data(v))
            bound += [("callable", type(fn).__qualname__, _value_hash(attrs))]
            fn = type(fn).__call__
        else:
            return fn, bound


def _own_code(fn: types.FunctionType) -> str:
    from joblib.func_inspect import get_func_code
    return _blake(get_func_code(fn)[0], fn.__code__.co_code)


def _referenced(fn: types.FunctionType) -> Iterable[tuple[str, Any]]:
    g = getattr(fn, "__globals__", {})
    for name in sorted(_code_names(fn.__code__)):
        if name in g:
            yield name, g[name]


def function_hash(fn: Callable) -> str:
    """Digest of a measure function: its code (joblib's reader) and the data it sees
    (defaults, closure cells, partial arguments, the plain-data globals it names; see
    :func:`_is_data` for what counts as data)."""
    from joblib.func_inspect import get_func_code
    fn, bound = _unwrap(fn)
    if not isinstance(fn, types.FunctionType):  # a builtin or C callable: its name is all there is
        return _blake("builtin", getattr(fn, "__module__", "") or "", getattr(fn, "__qualname__", repr(fn)))
    code, _, _ = get_func_code(fn)
    parts = [fn.__module__ or "", fn.__qualname__, code, fn.__code__.co_code]
    parts.append(_value_hash(_frozen([fn.__defaults__ or (), sorted((fn.__kwdefaults__ or {}).items())])))
    cells = [c.cell_contents for c in (fn.__closure__ or ()) if _cell_set(c)]
    parts.append(_value_hash([v if _is_data(v) else _qual(v) for v in cells]))
    parts.append(_value_hash([_frozen(b) for b in bound]))
    parts += [f"{k}={_value_hash(v)}" for k, v in _referenced(fn) if _is_data(v)]
    return _blake(*parts)


def _cell_set(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _frozen(v):
    """``v`` with every value that is not :func:`_is_data` replaced by its qualified name."""
    if isinstance(v, (list, tuple)):
        return tuple(_frozen(u) for u in v)
    return v if _is_data(v) else _qual(v)


def _qual(v) -> str:
    return f"{getattr(v, '__module__', '')}.{getattr(v, '__qualname__', type(v).__qualname__)}"


def user_files(fn: Callable, extra: Iterable = ()) -> list[Path]:
    """The user source files behind ``fn``: its module, ``extra`` modules or paths, and the
    user modules of the functions, classes and modules that its code names."""
    files: dict[Path, None] = {}
    plain, _ = _unwrap(fn)
    for obj in [plain, *extra]:
        if isinstance(obj, (str, os.PathLike)):
            p = Path(obj).resolve()
            if p.is_file():
                files[p] = None
            continue
        p = _user_file(obj)
        if p is not None:
            files[p] = None
    if isinstance(plain, types.FunctionType):
        for _, v in _referenced(plain):
            if isinstance(v, (types.FunctionType, type, types.ModuleType)):
                p = _user_file(v)
                if p is not None:
                    files[p] = None
    return sorted(files)


def modules_hash(fn: Callable, extra: Iterable = ()) -> str:
    """Digest of the user source files behind ``fn`` (see :func:`user_files`); ``"none"``
    when there are none (a notebook, or a measure function from heterosim itself)."""
    files = user_files(fn, extra)
    if not files:
        return "none"
    return _blake(*[c for p in files for c in (p.name, p.read_bytes())])


# ----------------------------------------------------------------------------- the key
@dataclasses.dataclass(frozen=True)
class CodeParts:
    """The code half of a cache key, part by part (see the module docstring)."""

    fn_hash: str
    module_hash: str
    source_hash: str
    heterosim_version: str
    lib_versions: str

    @functools.cached_property
    def code_key(self) -> str:
        return _blake(self.fn_hash, self.module_hash, self.source_hash, self.heterosim_version,
                      self.lib_versions)

    def columns(self) -> dict:
        """The provenance columns a results row stores for this key."""
        return {"code_key": self.code_key, "fn_hash": self.fn_hash, "module_hash": self.module_hash,
                "source_hash": self.source_hash, "lib_versions": self.lib_versions}


def code_parts(fn: Callable, modules: Iterable = ()) -> CodeParts:
    """The code key of results measured by ``fn`` (with ``modules``: extra experiment
    modules or script paths whose source decides the rows)."""
    import heterosim
    return CodeParts(fn_hash=function_hash(fn), module_hash=modules_hash(fn, modules),
                     source_hash=source_tree_hash(), heterosim_version=heterosim.__version__,
                     lib_versions=library_versions())


_REASONS = (("fn_hash", "measure function changed"), ("module_hash", "experiment module changed"),
            ("source_hash", "heterosim source changed"), ("heterosim_version", "heterosim version changed"),
            ("lib_versions", "library versions changed"))


def describe_changes(stored: dict, current: CodeParts) -> list[str]:
    """Why a row stored with provenance ``stored`` (a dict of its columns) is stale under
    ``current``: a list of reasons, empty when its code key matches."""
    key = stored.get("code_key")
    if not isinstance(key, str) or not key:
        return ["stored without a code key (older heterosim)"]
    if stored["code_key"] == current.code_key:
        return []
    out = []
    for col, text in _REASONS:
        old, new = stored.get(col), getattr(current, col)
        if old != new:
            out.append(f"{text} ({old} -> {new})" if col in ("lib_versions", "heterosim_version") else text)
    return out or ["code key changed"]
