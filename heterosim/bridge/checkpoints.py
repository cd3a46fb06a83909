"""Checkpoints: tensors in safetensors, the model's config as JSON in its header.

A checkpoint is one ``.safetensors`` file: the model's ``state_dict`` (tensors only,
so nothing is unpickled on load) and, in the header's string metadata, a JSON
object with the :class:`~heterosim.bridge.models.TinyConfig` (``"config"``), a
format tag and any extra JSON-serialisable information (the task it was trained
on, steps, final loss). Loading validates everything: a file that is not a
safetensors file, has no or bad config, or whose tensor names or shapes do not match
the model raises a ``ValueError`` that says which.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from heterosim.bridge.models import TinyConfig, TinyTransformer

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "load_state_into"]

FORMAT = "heterosim.bridge/1"
HEAD_PREFIX = "head."


def save_checkpoint(path, model: TinyTransformer, info: dict | None = None) -> Path:
    """Write ``model``'s parameters and config to ``path`` (atomically: a temporary file
    in the same folder is renamed into place). ``info``: extra JSON-serialisable data."""
    from safetensors.torch import save_file

    if not isinstance(model, TinyTransformer):
        raise ValueError(f"save_checkpoint stores TinyTransformer models; got {type(model).__name__} "
                         "(save a Hugging Face model with its own save_pretrained)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "config": json.dumps(model.config.to_dict()),
            "info": json.dumps(info or {})}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_checkpoint(path) -> tuple[dict[str, torch.Tensor], TinyConfig, dict]:
    """(tensors, config, info) of a checkpoint file; ValueError if it is not a valid one."""
    from safetensors import SafetensorError
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint file at {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise ValueError(f"{path} is not a readable safetensors checkpoint (corrupt or truncated?): {e}") from e
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file but not a heterosim bridge checkpoint "
                         f"(format tag {meta.get('format')!r}, expected {FORMAT!r})")
    try:
        cfg = TinyConfig(**json.loads(meta["config"]))
        info = json.loads(meta.get("info", "{}"))
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: the config stored in the checkpoint header is missing or invalid: {e}") from e
    return tensors, cfg, info


def load_state_into(model: torch.nn.Module, tensors: dict[str, torch.Tensor], skip_head: bool = False,
                    source: str = "checkpoint") -> None:
    """Copy ``tensors`` into ``model`` after checking that names and shapes match exactly
    (the head ``head.*`` is left out of the check and the copy with ``skip_head``)."""
    own = model.state_dict()
    keep = (lambda k: not k.startswith(HEAD_PREFIX)) if skip_head else (lambda k: True)
    want = {k for k in own if keep(k)}
    have = {k for k in tensors if keep(k)}
    missing, unexpected = sorted(want - have), sorted(have - want)
    shapes = [f"{k}: {tuple(tensors[k].shape)} in {source}, {tuple(own[k].shape)} in model"
              for k in sorted(want & have) if tuple(tensors[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:6]}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            parts.append(f"unexpected tensors {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}")
        if shapes:
            parts.append("shape mismatch " + "; ".join(shapes[:6]))
        raise ValueError(f"{source} does not match the model: " + "; ".join(parts))
    with torch.no_grad():
        for k in sorted(want):
            own[k].copy_(tensors[k])


def load_checkpoint(path, n_classes: int | None = None, head_seed: int | None = None,
                    new_head: bool | None = None, **overrides) -> tuple[TinyTransformer, dict]:
    """Rebuild a :class:`TinyTransformer` from a checkpoint: (model, info).

    ``new_head``: True builds a fresh linear head of ``n_classes`` outputs (default the
    stored count), initialised from ``head_seed`` (default the config's seed), and loads
    every other tensor -- fine-tuning on a new task; False loads the stored head too;
    None (default) means True exactly when ``n_classes`` differs from the stored count.
    ``overrides`` change config fields that do not alter shapes (e.g. ``attn="math"``);
    a shape change is caught by the check.
    """
    tensors, cfg, info = read_checkpoint(path)
    fields = cfg.to_dict()
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown config fields {unknown}; allowed: {sorted(fields)}")
    fields.update(overrides)
    if new_head is None:
        new_head = n_classes is not None and n_classes != cfg.n_classes
    elif not new_head and n_classes is not None and n_classes != cfg.n_classes:
        raise ValueError(f"new_head=False keeps the stored head of {cfg.n_classes} classes; got n_classes={n_classes}")
    if n_classes is not None:
        fields["n_classes"] = int(n_classes)
    if head_seed is not None:
        fields["seed"] = int(head_seed)
    model = TinyTransformer(TinyConfig(**fields))
    load_state_into(model, tensors, skip_head=new_head, source=str(path))
    return model, info
