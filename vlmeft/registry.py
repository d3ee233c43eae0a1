"""The method registry: one static table from registry id to implementation.

Ids equal knowledge-base record ids. The table is data (strings), so listing and
validating ids never imports torch or runs method code; ``get`` imports a module only
from inside ``vlmeft.methods``. A record may only link to an id listed here, which is
how nothing in a record is ever imported or executed.
"""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING

from vlmeft.errors import VlmeftError

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Mapping, Sequence

    from vlmeft.backbone.wrapper import Backbone
    from vlmeft.method import Method

# id -> (module under vlmeft.methods, class name)
_TABLE: dict[str, tuple[str, str]] = {
    "zsclip": ("prompt_textual_handcrafted.zsclip", "ZSCLIP"),
    "coop": ("prompt_textual_learnable.coop", "CoOp"),
    "cocoop": ("prompt_textual_learnable.cocoop", "CoCoOp"),
    "kgcoop": ("prompt_textual_learnable.kgcoop", "KgCoOp"),
    "vp": ("prompt_visual_pixel.vp", "VisualPrompt"),
    "vpt": ("prompt_visual_token.vpt", "VPT"),
    "red-circle": ("prompt_visual_annotation.red_circle", "RedCircle"),
    "ivlp": ("prompt_multimodal_decoupled.ivlp", "IVLP"),
    "maple": ("prompt_multimodal_coupled.maple", "MaPLe"),
    "clip-adapter": ("adapter_unimodal.clip_adapter", "CLIPAdapter"),
    "tip-adapter": ("adapter_unimodal.tip_adapter", "TipAdapter"),
    "tip-adapter-f": ("adapter_unimodal.tip_adapter", "TipAdapterF"),
    "clip-lora": ("adapter_unimodal.clip_lora", "CLIPLoRA"),
    "calip": ("adapter_crossmodal.calip", "CALIP"),
    "mma": ("adapter_crossmodal.mma", "MMA"),
    "linear-probe": ("baseline.linear_probe", "LinearProbe"),
    "taskres": ("adapter_unimodal.taskres", "TaskRes"),
    "clap": ("adapter_unimodal.clap", "CLAP"),
    "lp-plus-plus": ("adapter_unimodal.lp_plus_plus", "LPPlusPlus"),
    "ape": ("adapter_unimodal.ape", "APE"),
    "ape-t": ("adapter_unimodal.ape", "APET"),
    "tda": ("adapter_unimodal.tda", "TDA"),
    "meta-adapter": ("adapter_crossmodal.meta_adapter", "MetaAdapter"),
    "graphadapter": ("adapter_crossmodal.graphadapter", "GraphAdapter"),
}

# The reference implementation of each taxonomy leaf: records of methods without their
# own code link here with fidelity `category-reference`.
CATEGORY_REFERENCE: dict[str, str] = {
    "prompt.textual.handcrafted": "zsclip",
    "prompt.textual.learnable": "coop",
    "prompt.visual.pixel": "vp",
    "prompt.visual.token": "vpt",
    "prompt.visual.annotation": "red-circle",
    "prompt.multimodal.decoupled": "ivlp",
    "prompt.multimodal.coupled": "maple",
    "adapter.unimodal": "clip-adapter",
    "adapter.crossmodal": "calip",
}


def names() -> list[str]:
    """All registered ids, sorted."""
    return sorted(_TABLE)


def is_registered(name: str) -> bool:
    return name in _TABLE


def suggest(name: str) -> str:
    close = difflib.get_close_matches(name, names(), n=3, cutoff=0.4)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def location(name: str) -> tuple[str, str] | None:
    """``(module under vlmeft.methods, class name)`` of a registered id, or None; lets the
    docs read a method's source without importing it."""
    return _TABLE.get(name)


def get(name: str) -> type[Method]:
    """The method class registered as ``name``."""
    if name not in _TABLE:
        raise VlmeftError(f"unknown method '{name}'{suggest(name)}; known: {', '.join(names())}")
    module_name, class_name = _TABLE[name]
    module = importlib.import_module(f"vlmeft.methods.{module_name}")
    cls = getattr(module, class_name)
    if getattr(cls, "name", None) != name:
        raise RuntimeError(f"registry mismatch: {module_name}.{class_name}.name != {name!r}")
    return cls


def available(name: str) -> bool:
    """Whether the implementation module of a registered id exists and imports."""
    try:
        get(name)
    except (ImportError, AttributeError):
        return False
    return True


def names_without_vision_tokens() -> list[str]:
    """Implemented ids that run on any image tower (ResNet included)."""
    able = []
    for name in names():
        try:
            cls = get(name)
        except (ImportError, AttributeError):
            continue
        if not cls.requires_vision_tokens:
            able.append(name)
    return able


def build(
    name: str,
    backbone: Backbone,
    classnames: Sequence[str],
    templates: Sequence[str],
    overrides: Mapping[str, object] | None = None,
    *,
    seed: int | None = None,
) -> Method:
    """Build method ``name`` with its config defaults plus ``overrides`` (``--set``).
    With ``seed``, parameter initialisation draws from a local seeded RNG."""
    import torch

    cls = get(name)
    config = cls.Config().apply_overrides(dict(overrides or {}))
    if seed is None:
        return cls(backbone, classnames, templates, config)
    devices = [backbone.device] if backbone.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return cls(backbone, classnames, templates, config)
