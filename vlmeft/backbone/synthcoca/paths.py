"""Where synthcoca-tiny's files live (its preprocessing is synthclip-tiny's)."""

from __future__ import annotations

import json
from pathlib import Path

from vlmeft.backbone.synthclip.paths import MEAN, STD, config_text  # the same world, the same normalisation

CONFIG_NAME = "synthcoca-tiny"
HERE = Path(__file__).resolve().parent

__all__ = ["CONFIG_NAME", "HERE", "MEAN", "STD", "config_dir", "model_config"]


def config_dir() -> Path:
    """The folder holding synthcoca-tiny.json, for ``open_clip.add_model_config``."""
    return HERE


def model_config() -> dict:
    """A fresh copy of the open_clip model config."""
    return json.loads(config_text(HERE, CONFIG_NAME))
