"""synthcoca-tiny: the embedded captioner, a small open_clip CoCa pretrained on the procedural
world's captions and on question-answer pairs read off its scene facts (:mod:`vlmeft.world.qa`).

Mirrors :mod:`vlmeft.backbone.synthclip`: ``state_dict()`` gives the shipped weights as a
full fp32 open_clip state dict (checksum verified); ``config_dir()`` is the folder for
``open_clip.add_model_config``; ``checkpoint_path()`` materialises a plain open_clip
checkpoint; ``vocabulary_ids()`` lists the token ids the shipped weights hold (decoding is
restricted to them, see :mod:`.weights`).
"""

from __future__ import annotations

import importlib
from typing import Any

from vlmeft.backbone.synthcoca.paths import CONFIG_NAME, MEAN, STD, config_dir, model_config

_WEIGHTS = ("checkpoint_path", "sha256", "shipped_info", "state_dict", "vocabulary_ids")  # need torch


def __getattr__(name: str) -> Any:
    if name in _WEIGHTS:
        return getattr(importlib.import_module("vlmeft.backbone.synthcoca.weights"), name)
    raise AttributeError(f"module 'vlmeft.backbone.synthcoca' has no attribute {name!r}")


__all__ = ["CONFIG_NAME", "MEAN", "STD", "checkpoint_path", "config_dir", "model_config", "sha256", "shipped_info",
           "state_dict", "vocabulary_ids"]
