"""The pretraining recipe: plain data, importable without torch (the CLI reads its defaults)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from vlmeft.backbone.synthclip.paths import CONFIG_NAME
from vlmeft.world.vocab import GENERATOR_VERSION


@dataclass
class Recipe:
    steps: int = 1500
    batch_size: int = 256
    seed: int = 0
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    pool_size: int = 120_000
    threads: int = 1
    checkpoint_every: int = 100
    model: str = CONFIG_NAME
    world: str = GENERATOR_VERSION
    loss: str = "symmetric InfoNCE, soft targets over identical captions in the batch"

    def compatible(self, other: dict) -> list[str]:
        """Fields that must match for a resume (steps may grow: the schedule follows the new total)."""
        mine = asdict(self)
        keys = ("batch_size", "seed", "lr", "warmup", "weight_decay", "pool_size", "model", "world")
        return [k for k in keys if k in other and _norm(other[k]) != _norm(mine[k])]


def _norm(v):
    return list(v) if isinstance(v, tuple) else v
