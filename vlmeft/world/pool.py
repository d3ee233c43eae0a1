"""The pretraining pool: world samples addressed by index, rendered once each.

Sample ``i`` of a pool depends only on ``(seed, i)``, so a pool is reproducible and its
prefix is independent of its length. :func:`build_pool` renders every sample up front (about
0.7 ms an image, minutes for the default 120,000) and :func:`load_or_build_pool` caches that
on disk; :class:`LazyPool` renders a sample the first time a batch draws it, so a short run
pays only for the images it uses and a long one spreads the cost over its steps. Both give
the same images and captions for the same ``(seed, i)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlmeft.world.samples import N_CAPTIONS, render_digit, render_marked_scene, render_object, render_scene
from vlmeft.world.vocab import GENERATOR_VERSION, IMAGE_SIZE

# Fractions of single objects, digits, multi-object scenes and scenes with one object
# circled in red. The marked scenes stand in for what web-scale data teaches CLIP about
# drawn markers (Shtedritski et al. 2023): without them a marker is just red pixels.
MIX = (0.42, 0.30, 0.16, 0.12)


@dataclass
class Pool:
    images: np.ndarray  # uint8 [N, H, W, 3]
    captions: list[list[str]]  # N_CAPTIONS alternatives per image

    def __len__(self) -> int:
        return len(self.images)

    def images_at(self, idx: Sequence[int]) -> np.ndarray:
        return self.images[np.asarray(idx, dtype=np.int64)]

    def captions_at(self, i: int) -> list[str]:
        return self.captions[i]


class LazyPool:
    """A pool of ``n`` samples, each rendered the first time it is asked for, then kept.

    The image array is allocated up front but pages the operating system never touches cost
    no memory, so a short run holds only what it drew."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed = n, seed
        self._images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        self._captions: list[list[str] | None] = [None] * n
        self.rendered = 0  # how many samples have been rendered so far

    def __len__(self) -> int:
        return self.n

    def _ensure(self, i: int) -> None:
        if self._captions[i] is None:
            sample = render_sample(self.seed, i)
            self._images[i] = sample.image
            self._captions[i] = sample.captions
            self.rendered += 1

    def images_at(self, idx: Sequence[int]) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        for i in idx.tolist():
            self._ensure(i)
        return self._images[idx]

    def captions_at(self, i: int) -> list[str]:
        self._ensure(i)
        return self._captions[i]  # type: ignore[return-value]


def open_pool(n: int, seed: int = 0) -> Pool | LazyPool:
    """The cached, fully rendered pool when :func:`load_or_build_pool` left one on disk, else a
    :class:`LazyPool` (nothing is rendered, or written, before the first batch asks for it)."""
    path = _cache_path(n, seed)
    return load_or_build_pool(n, seed) if path.is_file() else LazyPool(n, seed)


def render_sample(seed: int, i: int):
    rng = np.random.default_rng([seed, i])
    u = rng.random()
    if u < MIX[0]:
        return render_object(rng)
    if u < MIX[0] + MIX[1]:
        return render_digit(rng)
    if u < MIX[0] + MIX[1] + MIX[2]:
        return render_scene(rng)
    return render_marked_scene(rng)


def cache_dir() -> Path:
    """Where vlmeft keeps derived files: $VLMEFT_CACHE or ~/.cache/vlmeft."""
    return Path(os.environ.get("VLMEFT_CACHE") or Path.home() / ".cache" / "vlmeft")


def build_pool(n: int, seed: int = 0, *, progress: bool = False) -> Pool:
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    captions: list[list[str]] = []
    it = range(n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="rendering world", unit="img", mininterval=2.0)
    for i in it:
        s = render_sample(seed, i)
        images[i] = s.image
        captions.append(s.captions)
    return Pool(images, captions)


def _cache_path(n: int, seed: int) -> Path:
    return cache_dir() / f"pool-{GENERATOR_VERSION}-seed{seed}-n{n}.npz"


def load_or_build_pool(n: int, seed: int = 0, *, progress: bool = False, use_cache: bool = True) -> Pool:
    """A pool, read from the cache when present; written there atomically otherwise."""
    path = _cache_path(n, seed)
    if use_cache and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            caps = z["captions"].reshape(-1, N_CAPTIONS).tolist()
            return Pool(z["images"], caps)
    pool = build_pool(n, seed, progress=progress)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, images=pool.images, captions=np.array([c for cs in pool.captions for c in cs]))
        os.replace(tmp, path)
    return pool
