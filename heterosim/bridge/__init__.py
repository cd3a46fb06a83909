"""The bridge: heterosim's optimizers and measures on transformer fine-tuning.

* :mod:`~heterosim.bridge.models` -- :class:`TinyTransformer`, a compact encoder whose
  only switch between Pre-LN and Post-LN is the LayerNorm placement;
* :mod:`~heterosim.bridge.hf` -- Hugging Face encoders with a fresh linear head,
  all-MiniLM-L6-v2 from a local package (``transformers`` imported lazily);
* :mod:`~heterosim.bridge.data` -- offline tasks (digits patches, standard-library
  docstrings, synthetic many-class) and Hugging Face datasets;
* :mod:`~heterosim.bridge.checkpoints` -- safetensors checkpoints, validated on load;
* :mod:`~heterosim.bridge.train` -- one fine-tuning loop for every optimizer, lr tuning,
  a short pretraining;
* :mod:`~heterosim.bridge.monitors` -- per-step gradient/head/logit monitors, scheduled
  block Hessian measures;
* :mod:`~heterosim.bridge.studies` -- docs/theory.md C6 (head growth), C7 (Pre-LN vs Post-LN
  spread), C8 (heterogeneity vs the SGD-Adam gap);
* :func:`cli_main` -- ``heterosim bridge ...``.
"""
from __future__ import annotations

from heterosim.bridge.checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from heterosim.bridge.data import (SimpleTokenizer, Task, digits_task, docstrings_task, hf_text_task, make_task,
                                   synthetic_task)
from heterosim.bridge.models import TinyConfig, TinyTransformer
from heterosim.bridge.monitors import StepMonitor, hessian_measures
from heterosim.bridge.train import build_model, finetune, make_optimizer, pretrain, tune_lr


def cli_main(argv=None) -> int:
    """``heterosim bridge ...`` (see :mod:`heterosim.bridge.cli`)."""
    from heterosim.bridge.cli import cli_main as _main
    return _main(argv)


def load_hf_classifier(*args, **kwargs):
    """See :func:`heterosim.bridge.hf.load_hf_classifier` (imports transformers on call)."""
    from heterosim.bridge.hf import load_hf_classifier as _load
    return _load(*args, **kwargs)


def load_minilm(*args, **kwargs):
    """See :func:`heterosim.bridge.hf.load_minilm` (imports transformers on call)."""
    from heterosim.bridge.hf import load_minilm as _load
    return _load(*args, **kwargs)


__all__ = ["TinyConfig", "TinyTransformer", "Task", "SimpleTokenizer", "digits_task", "docstrings_task",
           "synthetic_task", "hf_text_task", "make_task", "save_checkpoint", "load_checkpoint", "read_checkpoint",
           "StepMonitor", "hessian_measures", "build_model", "finetune", "make_optimizer", "pretrain", "tune_lr",
           "load_hf_classifier", "load_minilm", "cli_main"]
