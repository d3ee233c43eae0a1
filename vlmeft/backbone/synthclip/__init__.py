"""synthclip-tiny: the embedded default backbone, a small CLIP pretrained on the procedural world.

``state_dict()`` gives the shipped weights as a full fp32 open_clip state dict (checksum
verified); ``config_dir()`` is the folder to pass to ``open_clip.add_model_config``;
``checkpoint_path()`` materialises a plain open_clip safetensors checkpoint in the cache.
"""

from vlmeft.backbone.synthclip.paths import CONFIG_NAME, MEAN, STD, config_dir, model_config
from vlmeft.backbone.synthclip.weights import checkpoint_path, sha256, shipped_info, state_dict

__all__ = ["CONFIG_NAME", "MEAN", "STD", "checkpoint_path", "config_dir", "model_config", "sha256", "shipped_info",
           "state_dict"]
