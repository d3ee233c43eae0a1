"""vlmeft: a runnable knowledge base of prompt and adapter fine-tuning for CLIP-like VLMs.

The Python API (``load_backbone``, ``build``, ``fit``, ``evaluate``, ``predict``, ``save``,
``load``; see :mod:`vlmeft.api`) is imported on first use, so ``import vlmeft`` and the
CLI's start-up stay free of torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

API = ("load_backbone", "build", "fit", "evaluate", "predict", "save", "load")

__all__ = ["__version__", *API]


def __getattr__(name: str) -> Any:
    if name in API:
        return getattr(importlib.import_module("vlmeft.api"), name)
    raise AttributeError(f"module 'vlmeft' has no attribute {name!r}")
