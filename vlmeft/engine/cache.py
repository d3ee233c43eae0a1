"""Exact frozen image features, computed once per (backbone, weights, data, transform).

Tip-Adapter keys its cache on dataset and shots only, so swapping the backbone serves
stale features. Here the key holds the backbone name, its weights id (a hash of the
file, a tag, or the random-init seed), the split's data key, the transform spec and
the dtype. Features are computed in fixed-size chunks so they do not depend on the
caller's batch size, kept in memory, and (for real weights) written to
``$VLMEFT_CACHE`` (default ``~/.cache/vlmeft``) as safetensors, atomically.
Random-init backbones are never cached on disk: their weights depend on the library
versions that drew them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from vlmeft.backbone.wrapper import Backbone
from vlmeft.data.loading import Preprocess
from vlmeft.data.types import Split

CHUNK = 64  # images per encoder call; fixed so features never depend on a batch size


def cache_root() -> Path:
    return Path(os.environ.get("VLMEFT_CACHE") or Path.home() / ".cache" / "vlmeft")


@torch.no_grad()
def encode_split(backbone: Backbone, split: Split, prep: Preprocess | None = None, *,
                 workers: int | None = None) -> Tensor:
    """Normalised frozen image features ``[N, E]`` of a whole split (no cache); ``workers``
    decode file-based splits in parallel (:mod:`vlmeft.engine.loader`)."""
    from vlmeft.engine.loader import chunks, image_batches

    prep = prep or Preprocess.for_backbone(backbone)
    batches = image_batches(split, chunks(len(split), CHUNK), prep, device=backbone.device, workers=workers)
    feats = [backbone.encode_image(images.to(backbone.device, non_blocking=True), normalize=True).float()
             for images in batches]
    return torch.cat(feats) if feats else torch.empty(0, backbone.embed_dim)


class FeatureCache:
    """In-memory (and optionally on-disk) store of frozen image features."""

    def __init__(self, disk: bool = True, root: Path | None = None, max_items: int = 64) -> None:
        self.disk = disk
        self.root = Path(root) if root is not None else None
        self.max_items = max_items
        self._memory: dict[str, Tensor] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(backbone: Backbone, split: Split, prep: Preprocess) -> str:
        parts = [backbone.name, backbone.weights_id, split.key, prep.key, str(backbone.dtype), str(len(split))]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]

    def _path(self, key: str) -> Path:
        return (self.root or cache_root()) / "features" / f"{key}.safetensors"

    def _disk_ok(self, backbone: Backbone) -> bool:
        return self.disk and not backbone.weights_id.startswith("random:")

    def features(self, backbone: Backbone, split: Split, *, workers: int | None = None) -> Tensor:
        """Frozen normalised features ``[N, E]`` (float32, on the backbone's device)."""
        prep = Preprocess.for_backbone(backbone)
        key = self.key(backbone, split, prep)
        if key in self._memory:
            self.hits += 1
            return self._memory[key].to(backbone.device)
        feats = self._read(key) if self._disk_ok(backbone) else None
        if feats is None or feats.shape != (len(split), backbone.embed_dim):
            self.misses += 1
            feats = encode_split(backbone, split, prep, workers=workers).cpu()
            if self._disk_ok(backbone):
                self._write(key, feats)
        else:
            self.hits += 1
        if len(self._memory) >= self.max_items:
            self._memory.pop(next(iter(self._memory)))
        self._memory[key] = feats
        return feats.to(backbone.device)

    def _read(self, key: str) -> Tensor | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:  # a damaged cache entry is recomputed, never trusted
            from safetensors.torch import load_file

            return load_file(str(path))["features"]
        except Exception:  # noqa: BLE001
            return None

    def _write(self, key: str, feats: Tensor) -> None:
        from safetensors.torch import save_file

        path = self._path(key)
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            os.close(fd)
            save_file({"features": feats.contiguous()}, tmp)
            os.replace(tmp, path)
        except OSError:  # a read-only or full cache folder only costs recomputation
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)

    def clear(self) -> None:
        self._memory.clear()


_DEFAULT: FeatureCache | None = None


def default_cache() -> FeatureCache:
    """The process-wide cache used when callers pass none."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = FeatureCache()
    return _DEFAULT
