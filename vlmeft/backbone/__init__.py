"""The frozen VLM that every method hooks into: the wrapper, the factory and the shipped default.

Attributes are imported lazily, so code that only needs a name (the CLI parser, the
knowledge base) does not pay for importing torch and open_clip.
"""

from __future__ import annotations

import importlib
from typing import Any

DEFAULT_BACKBONE = "synthclip-tiny"

_LAZY = {
    "Backbone": "vlmeft.backbone.wrapper",
    "load_backbone": "vlmeft.backbone.factory",
    "register_configs": "vlmeft.backbone.factory",
}

__all__ = ["DEFAULT_BACKBONE", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vlmeft.backbone' has no attribute {name!r}")
