"""The Python API: every method on your own tensors, files or ``Dataset``.

    import vlmeft
    backbone = vlmeft.load_backbone()                          # synthclip-tiny, shipped
    coop = vlmeft.build("coop", backbone, ["cat", "dog"], n_ctx=4)
    vlmeft.fit(coop, images, labels)                          # images [N, 3, H, W] in [0, 1]
    vlmeft.evaluate(coop, test_images, test_labels)           # top-1 accuracy
    vlmeft.predict(coop, new_images)                          # logits [N, 2]
    vlmeft.save(coop, "runs/coop"); vlmeft.load("runs/coop")

These are thin: :mod:`vlmeft.data.inputs` turns the data into a split and the engine
does the rest, exactly as for ``vlmeft run``. Data may be a float tensor
``[N, 3, H, W]`` in [0, 1], uint8 images, a list of image files, a ``Dataset`` of
``(image, label)`` pairs, or a :class:`~vlmeft.data.types.Split`. Frozen image features
are cached in memory only (keyed by the data's bytes), never on disk.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vlmeft.backbone.wrapper import Backbone
from vlmeft.data.inputs import as_split
from vlmeft.data.types import Split
from vlmeft.engine import FeatureCache, FitReport
from vlmeft.errors import VlmeftError
from vlmeft.method import Method, _json_value_fits

DEFAULT_TEMPLATES = ("a photo of a {}.",)
_CACHE = FeatureCache(disk=False)


def load_backbone(name: str = "synthclip-tiny", pretrained: str | None = "default", *,
                  device: str | torch.device = "auto") -> Backbone:
    """A frozen backbone: ``name`` an open_clip model, ``pretrained`` as ``--pretrained``
    (``"default"`` = synthclip-tiny's shipped weights; ``"openai"``, a file,
    ``"hf-hub:ORG/NAME"``, a folder, or ``None`` for random weights, which warns)."""
    from vlmeft.backbone import load_backbone as load
    from vlmeft.engine.device import resolve_device

    backbone = load(name, pretrained, device=resolve_device(device))
    for line in backbone.warnings:
        warnings.warn(line.removeprefix("warning: "), UserWarning, stacklevel=2)
    return backbone


def build(method_id: str, backbone: Backbone, classnames: Sequence[str], *,
          templates: Sequence[str] | None = None, seed: int = 0, **config: Any) -> Method:
    """Method ``method_id`` on ``backbone`` for ``classnames``; ``config`` sets fields of
    its Config (``n_ctx=4``, ``epochs=5``, ``precision="bf16"``, ...). Templates hold one
    ``{}`` for the class name; ``seed`` fixes the initialisation."""
    from vlmeft import registry

    cls = registry.get(method_id)
    types = cls.Config.field_types()
    for key, value in config.items():
        if key in types and not isinstance(value, str) and not _json_value_fits(value, types[key]):
            raise VlmeftError(f"{key}={value!r} does not fit {cls.Config.__name__}.{key}", where=f"build({method_id})")
    classnames = list(classnames)
    if not classnames or not all(isinstance(c, str) and c.strip() for c in classnames):
        raise VlmeftError("classnames must be a non-empty list of non-empty strings", where=f"build({method_id})")
    templates = list(templates) if templates is not None else list(DEFAULT_TEMPLATES)
    bad = [t for t in templates if not isinstance(t, str) or t.count("{}") != 1]
    if not templates or bad:
        raise VlmeftError("each template needs exactly one '{}' for the class name", where=f"build({method_id})")
    return registry.build(method_id, backbone, classnames, templates, config, seed=seed)


def _split(method: Method, images: Any, labels: Any, where: str, need_labels: bool = True) -> Split:
    if need_labels and labels is None and not isinstance(images, (Split, torch.utils.data.Dataset)):
        raise VlmeftError("labels are needed: one class index per image", where=where)
    split = as_split(images, labels, where=where)
    if need_labels and len(split) and int(split.labels.max()) >= len(method.classnames):
        raise VlmeftError(f"label {int(split.labels.max())} is out of range for {len(method.classnames)} classes",
                          where=f"{where} labels")
    return split


def fit(method: Method, images: Any, labels: Any = None, *, val: Any = None, seed: int = 0,
        workers: int = 0, progress: bool = False) -> FitReport:
    """Train ``method`` on ``(images, labels)``; with ``val`` (a pair, a Dataset or a
    Split) the best epoch on it is kept. Returns the engine's :class:`FitReport`."""
    from vlmeft.engine import fit as engine_fit

    train = _split(method, images, labels, "fit images")
    val_split = None
    if val is not None:
        val_split = _split(method, *(val if isinstance(val, tuple) else (val, None)), "fit val")
    return engine_fit(method, train, val_split, seed=seed, progress=progress, cache=_CACHE, workers=workers)


def evaluate(method: Method, images: Any, labels: Any = None, *, workers: int = 0) -> float:
    """Top-1 accuracy (a fraction in [0, 1]) of ``method`` on ``(images, labels)``."""
    from vlmeft.engine import evaluate as engine_evaluate

    return engine_evaluate(method, _split(method, images, labels, "evaluate images"), cache=_CACHE, workers=workers)


def predict(method: Method, images: Any, *, workers: int = 0) -> Tensor:
    """Logits ``[N, C]`` (float32, CPU) of ``method`` on ``images``; ``.argmax(1)`` gives
    class indices, ``.softmax(1)`` probabilities."""
    from vlmeft.engine import predict as engine_predict

    split = _split(method, images, None, "predict images", need_labels=False)
    return engine_predict(method, split, cache=_CACHE, workers=workers)


def save(method: Method, directory: str | Path, *, force: bool = False) -> Path:
    """Write ``method``'s checkpoint (its own tensors + config.json) into ``directory``;
    an existing checkpoint there is replaced only with ``force=True``."""
    from vlmeft.engine import checkpoint

    checkpoint.refuse_overwrite(directory, force, flag="force=True")
    return checkpoint.save(method, directory)


def load(directory: str | Path, backbone: Backbone | None = None, *, classnames: Sequence[str] | None = None,
         templates: Sequence[str] | None = None, device: str | torch.device = "auto",
         precision: str | None = None) -> Method:
    """The method saved in ``directory``, on ``backbone`` (default: the checkpoint's own,
    loaded on ``device``); ``classnames`` switch the label set (base -> novel)."""
    from vlmeft.engine import checkpoint

    meta = checkpoint.read_config(directory)
    if backbone is None:
        saved = meta["backbone"]
        backbone = load_backbone(saved.get("name"), saved.get("pretrained") or None, device=device)
    method = checkpoint.load(directory, backbone, classnames, templates)
    if precision is not None:  # evaluation at another precision: the trained tensors are the same
        method.config = method.config.apply_overrides({"precision": precision})
    return method
