"""synthcoca-tiny's shipped weights: compact fp16 format, checksum, cached full checkpoint.

CoCa has two vocabulary-sized tables, the text tower's token embedding (rows) and the
multimodal decoder's output projection (columns). Only the world's few hundred token ids
ever train, so the file stores those rows and columns (``vocab.ids``,
``text.token_embedding.rows``, ``text_decoder.text_projection.cols``) and every other
tensor whole, in fp16, as synthclip-tiny's compact format does (:mod:`vlmeft.backbone.synthclip.compact`,
whose checksum and file helpers this module reuses).

At load the full tables are rebuilt with zeros elsewhere. A zero projection column gives
its token the logit 0, which can beat the trained tokens' logits, so generation on these
weights is restricted to :func:`vocabulary_ids` (the backbone wrapper's ``vocab_mask``).
Plain open_clip loads :func:`checkpoint_path` too, but its ``generate`` does not apply
that restriction.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vlmeft.backbone.synthclip import compact
from vlmeft.backbone.synthclip.weights import _write_json, materialise
from vlmeft.backbone.synthclip.weights import install as _install
from vlmeft.backbone.synthclip.weights import record_eval as _record_eval
from vlmeft.backbone.synthclip.weights import sha256 as _sha256
from vlmeft.backbone.synthclip.weights import shipped_info as _shipped_info
from vlmeft.backbone.synthcoca.paths import CONFIG_NAME, HERE, MEAN, STD, model_config
from vlmeft.errors import VlmeftError

FORMAT = "vlmeft-coca-compact-v1"
TOKENS = "text.token_embedding.weight"  # [V, width]: rows are tokens
PROJECTION = "text_decoder.text_projection"  # [width, V]: columns are tokens
_ROWS, _COLS, _IDS = "text.token_embedding.rows", "text_decoder.text_projection.cols", "vocab.ids"

__all__ = ["FORMAT", "checkpoint_path", "export", "install", "pack", "record_eval", "sha256", "shipped_info",
           "state_dict", "unpack", "vocabulary_ids"]


def shipped_info(folder: Path | None = None) -> dict:
    folder = Path(folder or HERE)
    if not (folder / "weights.json").is_file():
        raise VlmeftError("no weights.json: synthcoca-tiny weights are not installed", where=str(folder / "weights.json"))
    return _shipped_info(folder)


def sha256(folder: Path | None = None) -> str:
    return _sha256(Path(folder or HERE))


def install(run: Path, dest_dir: Path | None = None) -> Path:
    """Copy a finished run's weights + weights.json into the package (checksum verified)."""
    return _install(run, Path(dest_dir or HERE))


def record_eval(folder: Path | None, results: dict) -> Path:
    return _record_eval(Path(folder or HERE), results)


def pack(full_state: dict[str, torch.Tensor], used_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Full fp32 CoCa state dict -> compact fp16 tensors."""
    ids = torch.as_tensor(used_ids, dtype=torch.int64).sort().values
    out = {k: v.detach().to(torch.float16).contiguous() for k, v in full_state.items() if k not in (TOKENS, PROJECTION)}
    out[_IDS] = ids.contiguous()
    out[_ROWS] = full_state[TOKENS].detach()[ids].to(torch.float16).contiguous()
    out[_COLS] = full_state[PROJECTION].detach()[:, ids].to(torch.float16).contiguous()
    return out


def unpack(packed: dict[str, torch.Tensor], vocab_size: int) -> dict[str, torch.Tensor]:
    """Compact tensors -> full fp32 state dict (zeros in the untrained rows and columns)."""
    for key in (_IDS, _ROWS, _COLS):
        if key not in packed:
            raise VlmeftError(f"not a {FORMAT} file: tensor '{key}' is missing", where=key)
    ids = packed[_IDS].to(torch.int64)
    if ids.numel() and (int(ids.max()) >= vocab_size or int(ids.min()) < 0):
        raise VlmeftError(f"token id out of range for a vocabulary of {vocab_size}", where=_IDS)
    rows, cols = packed[_ROWS].to(torch.float32), packed[_COLS].to(torch.float32)
    if rows.shape[0] != len(ids) or cols.shape[1] != len(ids):
        raise VlmeftError(f"{len(ids)} token ids but {rows.shape[0]} rows and {cols.shape[1]} columns", where=_IDS)
    out = {k: v.to(torch.float32) for k, v in packed.items() if k not in (_IDS, _ROWS, _COLS)}
    table = torch.zeros(vocab_size, rows.shape[1])
    table[ids] = rows
    proj = torch.zeros(cols.shape[0], vocab_size)
    proj[:, ids] = cols
    out[TOKENS], out[PROJECTION] = table, proj
    return out


def _vocab_size() -> int:
    return int(model_config()["text_cfg"]["vocab_size"])


def state_dict(folder: Path | None = None) -> dict[str, torch.Tensor]:
    """The full fp32 open_clip state dict of synthcoca-tiny, after verifying the file's sha256."""
    folder = Path(folder or HERE)
    info = shipped_info(folder)
    return unpack(compact.load_compact(folder / info["file"], info["sha256"]), _vocab_size())


def vocabulary_ids(folder: Path | None = None) -> torch.Tensor:
    """The token ids the shipped weights trained (sorted); decoding is restricted to them."""
    folder = Path(folder or HERE)
    info = shipped_info(folder)
    return compact.load_compact(folder / info["file"], info["sha256"])[_IDS].to(torch.int64)


def checkpoint_path(folder: Path | None = None) -> Path:
    """A full fp32 safetensors checkpoint plain open_clip loads as ``pretrained=`` (cached
    per weights hash in $VLMEFT_CACHE, its own sha256 re-checked on every call)."""
    return materialise(shipped_info(folder), CONFIG_NAME, lambda: state_dict(folder))


def full_state(model, used_ids: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: ANN001
    """The compact-vocabulary model's state over open_clip's full vocabulary."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    v = _vocab_size()
    table = torch.zeros(v, state[TOKENS].shape[1])
    table[used_ids] = state[TOKENS]
    proj = torch.zeros(state[PROJECTION].shape[0], v)
    proj[:, used_ids] = state[PROJECTION]
    state[TOKENS], state[PROJECTION] = table, proj
    return state


def export(model, used_ids: torch.Tensor, recipe, out: Path, **train_info) -> dict:  # noqa: ANN001
    """Write the compact fp16 weights and weights.json (sha256 + recipe) into ``out``."""
    from dataclasses import asdict

    from vlmeft.backbone.synthcoca.pretrain import WEIGHTS

    out = Path(out)
    state = full_state(model, used_ids)
    sha = compact.save_compact(out / WEIGHTS, pack(state, used_ids), FORMAT)
    meta = {
        "model": CONFIG_NAME,
        "file": WEIGHTS,
        "sha256": sha,
        "format": FORMAT,
        "bytes": (out / WEIGHTS).stat().st_size,
        "params": sum(t.numel() for t in state.values()),
        "stored_token_ids": int(len(used_ids)),
        "untrained_token_rows_and_columns": "zeros (decoding is restricted to the stored ids)",
        "preprocess_cfg": {"size": model_config()["vision_cfg"]["image_size"], "mean": list(MEAN), "std": list(STD)},
        "recipe": asdict(recipe),
        "train": train_info,
    }
    _write_json(out / "weights.json", meta)
    return {"step": recipe.steps, "exported": True, **meta}
