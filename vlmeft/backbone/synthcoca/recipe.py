"""The synthcoca-tiny pretraining recipe: plain data, importable without torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from vlmeft.backbone.synthcoca.paths import CONFIG_NAME
from vlmeft.world.vocab import GENERATOR_VERSION

QA_VERSION = "qa-v1"  # bump with any change to vlmeft.world.qa's questions


@dataclass
class Recipe:
    steps: int = 1400
    batch_size: int = 128
    seed: int = 0
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    pool_size: int = 120_000
    qa_fraction: float = 0.4  # rows of a batch that hold a question-answer pair instead of a caption
    caption_weight: float = 2.0  # open_clip's CoCa defaults: captioning 2.0, contrastive 1.0
    contrastive_weight: float = 1.0
    threads: int = 1
    checkpoint_every: int = 100
    model: str = CONFIG_NAME
    world: str = GENERATOR_VERSION
    qa: str = QA_VERSION
    loss: str = ("contrastive (symmetric InfoNCE over caption rows, identical captions soft positives) + "
                 "captioning (teacher-forced cross-entropy; on question rows only the answer and end token)")

    def compatible(self, other: dict) -> list[str]:
        """Fields that must match for a resume (steps may grow: the schedule follows the new total)."""
        mine = asdict(self)
        keys = ("batch_size", "seed", "lr", "warmup", "weight_decay", "pool_size", "qa_fraction", "caption_weight",
                "contrastive_weight", "model", "world", "qa")
        return [k for k in keys if k in other and _norm(other[k]) != _norm(mine[k])]


def _norm(v):
    return list(v) if isinstance(v, tuple) else v
