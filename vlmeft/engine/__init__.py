"""The runtime: a plain training loop, exact feature caching, adapter checkpoints."""

from vlmeft.engine.cache import FeatureCache, default_cache
from vlmeft.engine.train import FitReport, evaluate, fit, predict

__all__ = ["FeatureCache", "FitReport", "default_cache", "evaluate", "fit", "predict"]
