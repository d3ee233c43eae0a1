"""synthclip-tiny: the embedded default backbone, a small CLIP pretrained on the procedural world.

``state_dict()`` gives the shipped weights as a full fp32 open_clip state dict (checksum
verified); ``config_dir()`` is the folder to pass to ``open_clip.add_model_config``;
``checkpoint_path()`` materialises a plain open_clip safetensors checkpoint in the cache.
"""

from __future__ import annotations

import importlib
from typing import Any

from vlmeft.backbone.synthclip.paths import CONFIG_NAME, MEAN, STD, config_dir, model_config

_WEIGHTS = ("checkpoint_path", "sha256", "shipped_info", "state_dict")  # need torch: imported on use


def __getattr__(name: str) -> Any:
    if name in _WEIGHTS:
        return getattr(importlib.import_module("vlmeft.backbone.synthclip.weights"), name)
    raise AttributeError(f"module 'vlmeft.backbone.synthclip' has no attribute {name!r}")

__all__ = ["CONFIG_NAME", "MEAN", "STD", "checkpoint_path", "config_dir", "model_config", "sha256", "shipped_info",
           "state_dict"]
