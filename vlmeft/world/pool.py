"""The pretraining pool: many world samples rendered once into arrays (and cached on disk).

Rendering costs about 0.7 ms an image, so pretraining draws its batches from a
pre-rendered pool instead of rendering on the fly. Sample ``i`` of a pool depends only on
``(seed, i)``, so a pool is reproducible and its prefix is independent of its length.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlmeft.world.samples import N_CAPTIONS, render_digit, render_marked_scene, render_object, render_scene
from vlmeft.world.vocab import GENERATOR_VERSION

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
    images = np.empty((n, 32, 32, 3), dtype=np.uint8)
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


def load_or_build_pool(n: int, seed: int = 0, *, progress: bool = False, use_cache: bool = True) -> Pool:
    """A pool, read from the cache when present; written there atomically otherwise."""
    path = cache_dir() / f"pool-{GENERATOR_VERSION}-seed{seed}-n{n}.npz"
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
