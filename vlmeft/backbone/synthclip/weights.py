"""Loading the shipped weights: checksum, compact-format expansion, cached full checkpoint."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from vlmeft.backbone.synthclip import compact
from vlmeft.backbone.synthclip.paths import CONFIG_NAME, HERE, model_config
from vlmeft.errors import VlmeftError

INFO_FILE = HERE / "weights.json"


def shipped_info(folder: Path | None = None) -> dict:
    """weights.json of the shipped weights (or of a pretraining output folder)."""
    path = Path(folder or HERE) / "weights.json"
    if not path.is_file():
        raise VlmeftError("no weights.json: synthclip-tiny weights are not installed", where=str(path))
    try:
        info = json.loads(path.read_text())
        info["sha256"], info["file"]
    except (ValueError, KeyError, TypeError) as err:
        raise VlmeftError(f"malformed weights description ({err})", where=str(path)) from None
    return info


def state_dict(folder: Path | None = None) -> dict[str, torch.Tensor]:
    """The full fp32 open_clip state dict of synthclip-tiny, after verifying the file's sha256."""
    folder = Path(folder or HERE)
    info = shipped_info(folder)
    packed = compact.load_compact(folder / info["file"], info["sha256"])
    return compact.unpack(packed, int(model_config()["text_cfg"]["vocab_size"]))


def _cache_dir() -> Path:
    return Path(os.environ.get("VLMEFT_CACHE") or Path.home() / ".cache" / "vlmeft")


def checkpoint_path(folder: Path | None = None) -> Path:
    """A full fp32 safetensors checkpoint that plain open_clip can load as ``pretrained=``.

    Written once per weights hash into $VLMEFT_CACHE (default ~/.cache/vlmeft) and reused;
    its own sha256 is recorded next to it and re-checked on every call."""
    return materialise(shipped_info(folder), CONFIG_NAME, lambda: state_dict(folder))


def materialise(info: dict, name: str, state: Callable[[], dict[str, torch.Tensor]]) -> Path:
    """The cached full checkpoint of weights described by ``info`` (``state()`` builds its
    state dict when the cache lacks it)."""
    path = _cache_dir() / f"{name}-{info['sha256'][:16]}.safetensors"
    mark = path.with_name(path.name + ".sha256")
    if path.is_file() and mark.is_file() and compact.sha256_file(path) == mark.read_text().strip():
        return path
    state = state()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, path)
    tmpm = mark.with_name(mark.name + ".tmp")
    tmpm.write_text(compact.sha256_file(path) + "\n")
    os.replace(tmpm, mark)
    return path


def sha256(folder: Path | None = None) -> str:
    """The recorded sha256 of the shipped weights file (verified whenever it is loaded)."""
    return str(shipped_info(folder)["sha256"])


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def record_eval(folder: Path | None, results: dict) -> Path:
    """Store evaluation results under ``eval`` in a weights folder's weights.json."""
    folder = Path(folder or HERE)
    info = shipped_info(folder)
    info["eval"] = {k: v for k, v in results.items() if k not in ("backbone", "weights")}
    _write_json(folder / "weights.json", info)
    return folder / "weights.json"


def install(run: Path, dest_dir: Path | None = None) -> Path:
    """Copy a finished run's weights + weights.json into the package (or ``dest_dir``),
    checksum verified."""
    import shutil

    run = Path(run)
    dest_dir = Path(dest_dir or HERE)
    info = shipped_info(run)
    src = run / info["file"]
    got = compact.sha256_file(src) if src.is_file() else None
    if got != info["sha256"]:
        raise VlmeftError("exported weights missing or not matching their sha256", where=str(src))
    dest = dest_dir / info["file"]
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    _write_json(dest_dir / "weights.json", info)
    return dest
