"""Adapter checkpoints: only the method's own tensors, plus a JSON description.

A checkpoint folder holds ``adapter.safetensors`` (``method.state_tensors()``) and
``config.json`` (method id, config and the recipe it came from, backbone name and
weights id, class names, templates, vlmeft version, and the SHA-256 of the tensor file). Both files are
written atomically. Loading checks everything before a tensor is touched: files
exist, JSON is valid, the method id is the one asked for, the tensor file is intact
(hash and safetensors header), and keys/shapes fit the method. A method is rebuilt
on the classes it was trained on, then switched to the requested ones, so class-
dependent buffers are rebuilt instead of loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlmeft import __version__
from vlmeft.backbone.wrapper import Backbone
from vlmeft.errors import VlmeftError
from vlmeft.method import Method

ADAPTER_FILE = "adapter.safetensors"
CONFIG_FILE = "config.json"
FORMAT = 1


def atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(method: Method, directory: str | Path) -> Path:
    """Write the checkpoint of ``method`` into ``directory`` (created if needed)."""
    from safetensors.torch import save

    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VlmeftError(f"cannot create checkpoint folder ({err.strerror})", where=str(directory)) from None
    tensors = {k: v.detach().cpu().contiguous() for k, v in method.state_tensors().items()}
    blob = save(tensors, metadata={"method": method.name, "format": str(FORMAT)})
    meta: dict[str, Any] = {
        "format": FORMAT,
        "method": method.name,
        "config": method.config.to_dict(),
        "recipe": method.recipe,  # "paper" / "embedded"; null for a config built by hand
        "backbone": {"name": method.backbone.name, "weights_id": method.backbone.weights_id,
                     "pretrained": method.backbone.pretrained},
        "classnames": list(method.classnames),
        "templates": list(method.templates),
        "vlmeft_version": __version__,
        "adapter_sha256": hashlib.sha256(blob).hexdigest(),
    }
    # Tensors first, description last: a config.json always describes a complete file.
    atomic_write(directory / ADAPTER_FILE, blob)
    atomic_write(directory / CONFIG_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    return directory


def refuse_overwrite(directory: str | Path, force: bool, flag: str = "--force") -> None:
    """A :class:`VlmeftError` when ``directory`` already holds a checkpoint and ``force`` is
    off: what is already written is never lost by accident (the CLI and the Python API
    call this before any work; :func:`save` itself replaces files atomically)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise VlmeftError("exists and is not a folder", where=str(directory))
    if force:
        return
    present = [name for name in (CONFIG_FILE, ADAPTER_FILE) if (directory / name).exists()]
    if present:
        raise VlmeftError(f"already holds a checkpoint ({', '.join(present)}); pass {flag} to overwrite it",
                          where=str(directory))


def record_metrics(directory: str | Path, metrics: dict[str, Any]) -> None:
    """Add what the trained method measured (task, protocol, accuracy, ...) to the
    checkpoint's ``config.json`` under ``metrics``; model cards quote it."""
    directory = Path(directory)
    meta = read_config(directory)
    meta["metrics"] = metrics
    atomic_write(directory / CONFIG_FILE, (json.dumps(meta, indent=2) + "\n").encode())


def read_config(directory: str | Path) -> dict[str, Any]:
    """The validated ``config.json`` of a checkpoint folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise VlmeftError("checkpoint folder does not exist", where=str(directory))
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise VlmeftError(f"not a checkpoint: {CONFIG_FILE} is missing", where=str(path))
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        line = f"line {err.lineno}: " if isinstance(err, json.JSONDecodeError) else ""
        raise VlmeftError(f"invalid JSON ({line}{getattr(err, 'msg', err)})", where=str(path)) from None
    if not isinstance(meta, dict):
        raise VlmeftError("expected a JSON object", where=str(path))
    expected = {"method": str, "config": dict, "backbone": dict, "classnames": list, "templates": list,
                "adapter_sha256": str}
    for key, kind in expected.items():
        if not isinstance(meta.get(key), kind):
            raise VlmeftError(f"field '{key}' is missing or not a {kind.__name__}", where=str(path))
    from vlmeft.recipes import RECIPES

    if meta.get("recipe") is not None and meta["recipe"] not in RECIPES:
        raise VlmeftError(f"field 'recipe' must be one of {', '.join(RECIPES)} or null", where=str(path))
    # Both reach the tokenizer: text only. A grounding-only method (red circle) has no label set,
    # a generative one (captioning, VQA) neither label set nor templates.
    generative = _generates(meta["method"])
    for key in ("classnames", "templates"):
        may_be_empty = (key == "classnames" or generative) and not _classifies(meta["method"])
        if (not meta[key] and not may_be_empty) or not all(isinstance(v, str) and v.strip() for v in meta[key]):
            raise VlmeftError(f"field '{key}' must be a non-empty list of non-empty strings", where=str(path))
    return meta


def _complete(cls: type[Method], meta: dict[str, Any]) -> dict[str, Any]:
    """The saved config, with the settings added since it was written filled in from its
    recipe. A checkpoint that records no recipe was trained before recipes existed, under
    what is now the embedded one (val selection, no augmentation, the legacy schedule)."""
    from vlmeft.recipes import recipe_values

    saved = meta["config"]
    if "recipe" in meta:  # written with recipes: every setting is there
        return saved
    missing = {k: v for k, v in recipe_values(cls.Config, "embedded").items() if k not in saved}
    return {**missing, **saved}


def _classifies(method_id: str) -> bool:
    from vlmeft import registry

    return not registry.is_registered(method_id) or "classification" in registry.get(method_id).tasks


def _generates(method_id: str) -> bool:
    from vlmeft import kinds, registry

    return registry.is_registered(method_id) and kinds.generates(registry.get(method_id))


def read_tensors(path: Path, expected_sha: str) -> dict:
    from safetensors.torch import load

    if not path.is_file():
        raise VlmeftError(f"{ADAPTER_FILE} is missing", where=str(path))
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != expected_sha:
        raise VlmeftError("tensor file does not match the hash recorded in config.json (truncated or modified)",
                          where=str(path))
    try:
        return load(blob)
    except Exception as err:  # noqa: BLE001 (safetensors raises its own error types)
        raise VlmeftError(f"damaged safetensors file ({str(err).strip() or type(err).__name__})", where=str(path)) from None


def load(
    directory: str | Path,
    backbone: Backbone,
    classnames: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    *,
    method: str | None = None,
    method_class: type[Method] | None = None,
    check_weights: bool = True,
) -> Method:
    """Rebuild a trained method from ``directory`` on ``backbone``.

    ``classnames``/``templates`` (default: the training ones) may differ from the
    training classes (base -> novel). ``method`` is the id the caller expects: a
    checkpoint of another method is refused. ``method_class`` serves classes outside
    the registry (tests, extensions). ``check_weights`` refuses a backbone whose
    weights differ from the training ones (the adapter would silently mean nothing)."""
    directory = Path(directory)
    meta = read_config(directory)
    where = str(directory / CONFIG_FILE)
    saved = meta["method"]
    if method is not None and saved != method:
        raise VlmeftError(f"this checkpoint is for method '{saved}', not '{method}'", where=where)
    if method_class is None:
        from vlmeft import registry

        cls = registry.get(saved)
    else:
        cls = method_class
        if cls.name != saved:
            raise VlmeftError(f"this checkpoint is for method '{saved}', not '{cls.name}'", where=where)
    saved_backbone = meta["backbone"].get("name")
    if saved_backbone != backbone.name:
        raise VlmeftError(
            f"checkpoint was trained on backbone '{saved_backbone}', not '{backbone.name}' (use --backbone {saved_backbone})",
            where=where,
        )
    saved_weights = meta["backbone"].get("weights_id")
    if check_weights and saved_weights and saved_weights != backbone.weights_id:
        raise VlmeftError(
            f"checkpoint was trained on weights '{saved_weights}', backbone has '{backbone.weights_id}' "
            "(pass the same --pretrained)",
            where=where,
        )
    config = cls.Config.from_dict(_complete(cls, meta), where=f"{where} field 'config'")
    tensors = read_tensors(directory / ADAPTER_FILE, meta["adapter_sha256"])
    try:
        model = cls(backbone, meta["classnames"], meta["templates"], config)
    except VlmeftError as err:  # a setting the method refuses: name the file it came from
        raise VlmeftError(f"its config does not build a '{saved}' ({str(err).removeprefix('--set: ')})",
                          where=where) from None
    model.load_state_tensors({k: v.to(backbone.device) for k, v in tensors.items()}, where=str(directory / ADAPTER_FILE))
    model.recipe = meta.get("recipe")
    if classnames is not None or templates is not None:
        model.set_classnames(meta["classnames"] if classnames is None else classnames, templates)
    model.eval()
    return model
