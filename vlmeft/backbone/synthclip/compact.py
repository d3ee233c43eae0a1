"""The shipped weight format: an fp16 open_clip state dict without the untrained vocabulary.

Only a few hundred of the tokenizer's 49,408 token-embedding rows ever receive a gradient
(the world's vocabulary is closed). The file stores those rows (``token_embedding.rows``)
and their token ids (``token_embedding.ids``) instead of the full table; every other
tensor is stored whole, in fp16. At load the full table is rebuilt with zeros in the
untrained rows: zeros are deterministic, need no seed, and give every unknown word the
same neutral embedding. (During pretraining those rows never influence any output, so
their values are arbitrary; zeros is a choice, not a loss.)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vlmeft.errors import VlmeftError

FORMAT = "vlmeft-compact-v1"
TOK = "token_embedding.weight"


def pack(full_state: dict[str, torch.Tensor], used_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Full fp32 state dict -> compact fp16 tensors."""
    ids = torch.as_tensor(used_ids, dtype=torch.int64).sort().values
    out = {k: v.detach().to(torch.float16).contiguous() for k, v in full_state.items() if k != TOK}
    out["token_embedding.ids"] = ids.contiguous()
    out["token_embedding.rows"] = full_state[TOK].detach()[ids].to(torch.float16).contiguous()
    return out


def unpack(compact: dict[str, torch.Tensor], vocab_size: int) -> dict[str, torch.Tensor]:
    """Compact tensors -> full fp32 state dict with a ``vocab_size``-row token table."""
    ids = compact["token_embedding.ids"].to(torch.int64)
    rows = compact["token_embedding.rows"].to(torch.float32)
    if ids.numel() and (int(ids.max()) >= vocab_size or int(ids.min()) < 0):
        raise VlmeftError(f"token id out of range for a vocabulary of {vocab_size}", where="token_embedding.ids")
    table = torch.zeros(vocab_size, rows.shape[1], dtype=torch.float32)
    table[ids] = rows
    out = {k: v.to(torch.float32) for k, v in compact.items() if not k.startswith("token_embedding.")}
    out[TOK] = table
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_compact(path: Path, compact: dict[str, torch.Tensor], fmt: str = FORMAT) -> str:
    """Write atomically (``fmt`` goes into the file's metadata); return the file's sha256."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(compact, str(tmp), metadata={"format": fmt})
    os.chmod(tmp, 0o644)  # safetensors writes owner-only files; the package file is public
    os.replace(tmp, path)
    return sha256_file(path)


def load_compact(path: Path, expected_sha256: str | None) -> dict[str, torch.Tensor]:
    """Read a compact file, verifying its checksum first when one is given."""
    path = Path(path)
    if not path.is_file():
        raise VlmeftError("weights file not found", where=str(path))
    if expected_sha256 is not None:
        got = sha256_file(path)
        if got != expected_sha256:
            raise VlmeftError(f"sha256 mismatch: expected {expected_sha256}, got {got} (file altered or corrupt)",
                              where=str(path))
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types on malformed files
        raise VlmeftError(f"not a readable safetensors file ({err})", where=str(path)) from None
