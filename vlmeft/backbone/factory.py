"""Plain factory: a model name and weights in, a frozen :class:`Backbone` out.

Offline by construction. ``synthclip-tiny`` and ``synthcoca-tiny`` (the embedded captioner)
load the weights shipped in the package;
any other open_clip model loads a local weights file, an open_clip tag (which needs the
weights already in open_clip's cache or a network), or nothing (random init, enough to
count parameters and time steps at real scale).
"""

from __future__ import annotations

import difflib
import hashlib
import logging
from pathlib import Path

import open_clip
import torch

from vlmeft.backbone import DEFAULT_BACKBONE  # defined once, in the light package init
from vlmeft.backbone.captioner import Captioner, is_captioner_model
from vlmeft.backbone.wrapper import Backbone
from vlmeft.errors import VlmeftError

_CONFIG_DIR = Path(__file__).with_name("configs")  # extra configs for tests (random init only)
_SYNTHCLIP_DIR = Path(__file__).with_name("synthclip")
_registered = False
EMBEDDED_CAPTIONER = "synthcoca-tiny"  # the embedded CoCa, pretrained like synthclip-tiny (vlmeft.backbone.synthcoca)
_SHIPPED = {DEFAULT_BACKBONE: "synthclip", EMBEDDED_CAPTIONER: "synthcoca"}  # name -> its shipped weights' tag


def register_configs() -> None:
    """Make vlmeft's open_clip configs (synthclip-tiny and the test configs) known to open_clip."""
    global _registered
    if _registered:
        return
    from vlmeft.backbone import synthclip

    # The synthclip config ships next to its weights; fall back to that folder while the
    # package's own helpers are missing, so the test configs load regardless.
    config_dir = getattr(synthclip, "config_dir", None)
    open_clip.add_model_config(config_dir() if callable(config_dir) else _SYNTHCLIP_DIR)
    from vlmeft.backbone.synthcoca.paths import config_dir as synthcoca_dir

    open_clip.add_model_config(synthcoca_dir())
    open_clip.add_model_config(_CONFIG_DIR)
    _registered = True


def _create_unloaded(name: str) -> torch.nn.Module:
    """open_clip model with no weights loaded. Random init is intended here (or the shipped
    weights follow), so open_clip's "initialized randomly" warning is not shown."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        return open_clip.create_model(name, pretrained=None, device="cpu")
    finally:
        root.setLevel(level)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _no_weights(pretrained: str | None) -> bool:
    return pretrained is None or str(pretrained).lower() in {"", "none", "random"}


def load_backbone(
    name: str = DEFAULT_BACKBONE,
    pretrained: str | None = "default",
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Backbone:
    """Build a frozen backbone.

    ``pretrained``: ``"default"`` (the shipped weights for synthclip-tiny and synthcoca-tiny,
    none otherwise),
    ``None``/``"none"`` (random init, seeded), an open_clip tag such as ``"openai"``, or a
    path to a weights file (safetensors, or a torch file read with ``weights_only=True``).
    A CoCa model comes back as a :class:`~vlmeft.backbone.captioner.Captioner`.
    """
    register_configs()
    if name not in open_clip.list_models():
        close = difflib.get_close_matches(name, open_clip.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise VlmeftError(f"unknown backbone '{name}'{hint}", where="--backbone")

    if pretrained == "default":
        pretrained = _SHIPPED.get(name)

    kwargs: dict = {}
    output_ids = None  # the token ids a captioner may generate (None: all)
    if name == EMBEDDED_CAPTIONER and pretrained == "synthcoca":
        from vlmeft.backbone import synthcoca

        model = _create_unloaded(name)
        model.load_state_dict(synthcoca.state_dict())  # verifies the shipped checksum
        output_ids = synthcoca.vocabulary_ids()
        weights_id = f"synthcoca:{synthcoca.sha256()[:16]}"
    elif name == DEFAULT_BACKBONE and pretrained == "synthclip":
        from vlmeft.backbone import synthclip

        model = _create_unloaded(name)
        state = synthclip.state_dict()  # verifies the shipped checksum
        model.load_state_dict(state)
        digest = synthclip.sha256() if hasattr(synthclip, "sha256") else synthclip.shipped_info()["sha256"]
        weights_id = f"synthclip:{digest[:16]}"
    elif _no_weights(pretrained):
        torch.manual_seed(seed)  # random init, reproducible
        model = _create_unloaded(name)
        if is_captioner_model(model):  # open_clip leaves a CoCa's output projection uninitialised (torch.empty)
            proj = model.text_decoder.text_projection
            torch.nn.init.normal_(proj, std=proj.shape[0] ** -0.5)
        weights_id = f"random:{seed}"
        pretrained = None
    else:
        path = Path(str(pretrained)).expanduser()
        looks_like_path = path.suffix != "" or "/" in str(pretrained) or "\\" in str(pretrained)
        if looks_like_path and not path.is_file():
            raise VlmeftError(f"weights file does not exist: {path}", where="--pretrained")
        if str(pretrained) == "openai" and "quickgelu" not in name.lower():
            kwargs["force_quick_gelu"] = True  # OpenAI weights were trained with QuickGELU
        try:
            model = open_clip.create_model(
                name, pretrained=str(path) if path.is_file() else str(pretrained), device="cpu", **kwargs
            )
        except Exception as err:  # noqa: BLE001 (torch, safetensors and open_clip raise many types)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise VlmeftError(f"could not load weights '{pretrained}' for '{name}': {first}", where="--pretrained") from None
        weights_id = f"file:{_file_sha256(path)[:16]}" if path.is_file() else f"tag:{pretrained}"

    model = model.to(device)
    tokenizer = open_clip.get_tokenizer(name)
    pretrained = None if pretrained is None else str(pretrained)
    if is_captioner_model(model):  # a CoCa: the generative wrapper (its contrastive half is a Backbone too)
        return Captioner(model, tokenizer, name=name, pretrained=pretrained, weights_id=weights_id,
                         output_ids=output_ids).to(device)
    return Backbone(model, tokenizer, name=name, pretrained=pretrained, weights_id=weights_id)
