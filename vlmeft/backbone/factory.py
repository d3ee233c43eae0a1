"""Plain factory: a model name and weights in, a frozen :class:`Backbone` out.

Which weights load, and how they are checked, is decided in one place:
:mod:`vlmeft.backbone.weights`. ``synthclip-tiny`` and ``synthcoca-tiny`` (the embedded
captioner) load the weights shipped in the package; any other open_clip model needs weights
named explicitly (a tag, a file, the local Hugging Face cache, a folder) or ``none`` for
random init (enough to count parameters and time steps at real scale). A CoCa comes back as
a :class:`~vlmeft.backbone.captioner.Captioner`.
"""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch

from vlmeft.backbone import DEFAULT_BACKBONE  # defined once, in the light package init
from vlmeft.backbone.captioner import Captioner, is_captioner_model
from vlmeft.backbone.wrapper import Backbone

_CONFIG_DIR = Path(__file__).with_name("configs")  # extra configs for tests (random init only)
_SYNTHCLIP_DIR = Path(__file__).with_name("synthclip")
_registered = False


def register_configs() -> None:
    """Make vlmeft's open_clip configs (synthclip-tiny, synthcoca-tiny and the test configs) known to open_clip."""
    global _registered
    if _registered:
        return
    from vlmeft.backbone import synthclip
    from vlmeft.backbone.synthcoca.paths import config_dir as synthcoca_dir

    # The synthclip config ships next to its weights; fall back to that folder while the
    # package's own helpers are missing, so the test configs load regardless.
    config_dir = getattr(synthclip, "config_dir", None)
    open_clip.add_model_config(config_dir() if callable(config_dir) else _SYNTHCLIP_DIR)
    open_clip.add_model_config(synthcoca_dir())
    open_clip.add_model_config(_CONFIG_DIR)
    _registered = True


def load_backbone(
    name: str = DEFAULT_BACKBONE,
    pretrained: str | None = "default",
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Backbone:
    """Build a frozen backbone on ``device``.

    ``pretrained``: ``"default"`` (the shipped weights of synthclip-tiny and synthcoca-tiny; an
    error for any other backbone), ``None``/``"none"`` (random init, seeded, with a warning), an
    open_clip tag such as ``"openai"``, a weights file (``gelu:PATH`` for GELU-trained weights),
    ``hf-hub:ORG/NAME`` or a folder (see :mod:`vlmeft.backbone.weights`). Notes and
    warnings of the resolution are kept in ``backbone.notes`` / ``backbone.warnings``.
    """
    from vlmeft.backbone.weights import resolve

    resolved = resolve(name, pretrained, seed=seed)
    common = dict(name=resolved.name, pretrained=resolved.pretrained, weights_id=resolved.weights_id)
    if is_captioner_model(resolved.model):  # a CoCa: the generative wrapper (its contrastive half is a Backbone too)
        backbone: Backbone = Captioner(resolved.model, resolved.tokenizer, output_ids=resolved.output_ids,
                                       **common).to(device)
    else:
        backbone = Backbone(resolved.model.to(device), resolved.tokenizer, **common)
    backbone.model_cfg = resolved.model_cfg
    backbone.notes = list(resolved.notes)
    backbone.warnings = list(resolved.warnings)
    return backbone
