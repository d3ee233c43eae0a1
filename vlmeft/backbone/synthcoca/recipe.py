"""The synthcoca-tiny pretraining recipe: synthclip-tiny's, plus the captioning and question
settings (plain data, importable without torch)."""

from __future__ import annotations

from dataclasses import dataclass

from vlmeft.backbone.synthclip.recipe import Recipe as ContrastiveRecipe
from vlmeft.backbone.synthcoca.paths import CONFIG_NAME

QA_VERSION = "qa-v1"  # bump with any change to vlmeft.world.qa's questions


@dataclass
class Recipe(ContrastiveRecipe):
    steps: int = 1200
    batch_size: int = 128
    qa_fraction: float = 0.4  # rows of a batch that hold a question-answer pair instead of a caption
    caption_weight: float = 2.0  # open_clip's CoCa defaults: captioning 2.0, contrastive 1.0
    contrastive_weight: float = 1.0
    model: str = CONFIG_NAME
    qa: str = QA_VERSION
    loss: str = ("contrastive (symmetric InfoNCE over caption rows, identical captions soft positives) + "
                 "captioning (teacher-forced cross-entropy; on question rows only the answer and end token)")

    def compatible(self, other: dict) -> list[str]:
        """synthclip's resume checks, plus the captioning and question settings."""
        from vlmeft.backbone.synthclip.recipe import _norm

        extra = ("qa_fraction", "caption_weight", "contrastive_weight", "qa")
        return super().compatible(other) + [k for k in extra if k in other and _norm(other[k]) != _norm(getattr(self, k))]
