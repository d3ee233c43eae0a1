"""The frozen VLM that every method hooks into: the wrapper, the factory and the shipped default."""

from vlmeft.backbone.factory import DEFAULT_BACKBONE, load_backbone, register_configs
from vlmeft.backbone.wrapper import Backbone

__all__ = ["DEFAULT_BACKBONE", "Backbone", "load_backbone", "register_configs"]
