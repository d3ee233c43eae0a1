"""A trained method, exported for use outside vlmeft: ``vlmeft export``.

The export folder always holds a model card, ``card.json`` and ``card.md``: the method's
record id, title and citation, the class names and templates it was trained with, the
backbone and the id (hash) of its weights, the recipe and config, what the training run
measured (``vlmeft run --save`` records it), and the SHA-256 of every exported file.

Beside the card:

- a method whose update merges into the backbone (``merged_state()``: CLIP-LoRA) gives
  the merged backbone as ``open_clip_model.safetensors`` plus ``open_clip_config.json``:
  plain open_clip loads it (``open_clip.create_model("local-dir:OUT")``) and, prompting
  with the card's first template, gives the adapted model's logits; so does
  ``--pretrained OUT`` in vlmeft;
- any other method gives its learned tensors, ``adapter.safetensors`` (the checkpoint's
  file, hash verified), which ``vlmeft.load`` / ``vlmeft eval`` rebuild into the method.

Files already there are never replaced without ``force``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from vlmeft import __version__
from vlmeft.engine import checkpoint
from vlmeft.errors import VlmeftError

CARD_JSON = "card.json"
CARD_MD = "card.md"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"
OPEN_CLIP_CONFIG = "open_clip_config.json"


def merges(method_id: str) -> bool:
    """Whether the method's update merges into the backbone's own weights."""
    from vlmeft import registry

    return callable(getattr(registry.get(method_id), "merged_state", None))


def planned_files(method_id: str) -> list[str]:
    body = [OPEN_CLIP_WEIGHTS, OPEN_CLIP_CONFIG] if merges(method_id) else [checkpoint.ADAPTER_FILE]
    return [*body, CARD_JSON, CARD_MD]


def _refuse_overwrite(out: Path, names: list[str], force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise VlmeftError("exists and is not a folder", where=str(out))
    present = [n for n in names if (out / n).exists()]
    if present and not force:
        raise VlmeftError(f"already holds {', '.join(present)}; pass --force to overwrite", where=str(out))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _merged_files(directory: Path, meta: dict, device: Any) -> dict[str, bytes]:
    """The merged backbone (open_clip state dict) and its open_clip config."""
    from safetensors.torch import save

    from vlmeft.backbone import load_backbone
    from vlmeft.backbone.weights import model_config

    backbone = load_backbone(meta["backbone"]["name"], meta["backbone"].get("pretrained"), device=device)
    method = checkpoint.load(directory, backbone, method=meta["method"])
    state = {k: v.detach() for k, v in backbone.model.state_dict().items()}
    for name, tensor in method.merged_state().items():
        if name.startswith("text_tower."):  # text_tower aliases the model (or its .text)
            name = ("text." if backbone.text_tower is not backbone.model else "") + name.removeprefix("text_tower.")
        name = name.removeprefix("model.")
        if name not in state or state[name].shape != tensor.shape:
            raise VlmeftError(f"merged tensor '{name}' has no place in the backbone's state")
        state[name] = tensor.detach()
    blob = save({k: v.cpu().contiguous() for k, v in state.items()}, metadata={"format": "pt"})
    cfg = backbone.model_cfg or model_config(backbone.name)
    pre = getattr(backbone.model.visual, "preprocess_cfg", {}) or {}
    config = {"model_cfg": cfg, "preprocess_cfg": {k: (list(v) if isinstance(v, tuple) else v) for k, v in pre.items()}}
    return {OPEN_CLIP_WEIGHTS: blob, OPEN_CLIP_CONFIG: (json.dumps(config, indent=2) + "\n").encode()}


def card(meta: dict, files: dict[str, str]) -> dict[str, Any]:
    """The model card of checkpoint ``meta`` whose exported files have hashes ``files``."""
    from vlmeft.kb import cite
    from vlmeft.kb.load import load_kb

    record = load_kb().methods.get(meta["method"])
    recipe = meta.get("recipe", meta["config"].get("recipe"))
    return {
        "method": meta["method"],
        "title": record.title if record else None,
        "citation": cite.text(record) if record else None,
        "bibtex": cite.bibtex([record]).strip() if record else None,
        "fidelity": record.implementation.fidelity if record and record.implementation else None,
        "classnames": list(meta["classnames"]),
        "templates": list(meta["templates"]),
        "backbone": dict(meta["backbone"]),
        "recipe": recipe,
        "config": dict(meta["config"]),
        "metrics": meta.get("metrics"),
        "files": files,
        "adapter_sha256": meta["adapter_sha256"],
        "vlmeft_version": __version__,
        "trained_with_vlmeft": meta.get("vlmeft_version"),
    }


def _pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def card_markdown(c: dict[str, Any]) -> str:
    bb = c["backbone"]
    m = c["metrics"] or {}
    lines = [f"# {c['method']}: {c['title'] or 'a vlmeft method'}", ""]
    if c["citation"]:
        lines += [f"Cite: {c['citation']}", ""]
    lines += ["## Model", "",
              f"- backbone: `{bb.get('name')}`, weights `{bb.get('pretrained')}` (id `{bb.get('weights_id')}`)",
              f"- recipe: {c['recipe'] if c['recipe'] is not None else 'not recorded'}",
              f"- fidelity of the implementation: {c['fidelity'] or '-'}",
              f"- trained with vlmeft {c['trained_with_vlmeft'] or '?'}; exported with vlmeft {c['vlmeft_version']}",
              "", "## Classes", "", f"{len(c['classnames'])} classes: " + ", ".join(c["classnames"]), "",
              "Templates: " + " | ".join(f"`{t}`" for t in c["templates"]), "", "## Measured", ""]
    if m:
        lines += [f"- task `{m.get('task')}`, protocol {m.get('protocol')}, {m.get('shots')} shots, "
                  f"seed {m.get('seed')}",
                  f"- accuracy {_pct(m.get('accuracy'))} (zero-shot CLIP {_pct(m.get('zero_shot_accuracy'))})"]
        if m.get("hm") is not None:
            lines.append(f"- base {_pct(m.get('base_accuracy'))}, novel {_pct(m.get('novel_accuracy'))}, "
                         f"HM {_pct(m.get('hm'))}")
    else:
        lines.append("Nothing recorded (the checkpoint was not written by `vlmeft run --save`).")
    lines += ["", "## Files", "", *[f"- `{name}`: sha256 `{sha}`" for name, sha in c["files"].items()], "",
              "## Settings", "", "```json", json.dumps(c["config"], indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


def export(directory: str | Path, out: str | Path, *, method: str, force: bool = False,
           device: Any = "cpu") -> list[Path]:
    """Export checkpoint ``directory`` of ``method`` into folder ``out``; returns the files."""
    directory, out = Path(directory), Path(out)
    meta = checkpoint.read_config(directory)
    if meta["method"] != method:
        raise VlmeftError(f"this checkpoint is for method '{meta['method']}', not '{method}'",
                          where=str(directory / checkpoint.CONFIG_FILE))
    names = planned_files(method)
    _refuse_overwrite(out, names, force)
    if merges(method):
        blobs = _merged_files(directory, meta, device)
    else:
        tensors = checkpoint.ADAPTER_FILE
        checkpoint.read_tensors(directory / tensors, meta["adapter_sha256"])  # intact, or a one-line error
        blobs = {tensors: (directory / tensors).read_bytes()}
    files = {name: _sha256(blob) for name, blob in blobs.items()}
    c = card(meta, files)
    blobs[CARD_JSON] = (json.dumps(c, indent=2) + "\n").encode()
    blobs[CARD_MD] = card_markdown(c).encode()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VlmeftError(f"cannot create the export folder ({err.strerror})", where=str(out)) from None
    for name in names:  # the card last: a card always describes complete files
        checkpoint.atomic_write(out / name, blobs[name])
    return [out / name for name in names]
