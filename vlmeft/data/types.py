"""Plain containers for task data, shared by the world, the protocol and the engine.

Images are kept as uint8 arrays ``[N, H, W, 3]`` (small embedded tasks) or as a list
of file paths (``imagefolder:``); :mod:`vlmeft.data.loading` turns either into
normalised tensors at the backbone's resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np


@dataclass
class Split:
    """One split of a classification task: images plus integer labels."""

    # uint8 [N, H, W, 3] or image paths; from the Python API also a float tensor [N, 3, H, W]
    # in [0, 1] or a sequence of images (vlmeft.data.inputs; read by vlmeft.data.loading)
    images: np.ndarray | list[Path] | Sequence
    labels: np.ndarray  # int64 [N]
    key: str  # stable identity of the data, used in feature-cache keys

    def __len__(self) -> int:
        return len(self.labels)


class FewShotSampler(Protocol):
    """A task's own few-shot draw (the official code's, where a protocol must match it):
    ``draw`` gives ``(train, val)`` for ``shots`` and ``seed``; ``without`` the same
    sampler minus some image paths. :mod:`vlmeft.data.protocol` restricts its draws to
    base or novel classes."""

    def draw(self, shots: int, seed: int) -> tuple[Split, Split]: ...

    def without(self, paths: set[str]) -> Any: ...


@dataclass
class ClassificationTask:
    name: str
    classnames: list[str]
    templates: list[str]  # each holds one "{}" for the class name
    train: Split
    val: Split
    test: Split
    # Extra test sets under a domain shift, keyed by domain name.
    shifted: dict[str, Split] = field(default_factory=dict)
    description: str = ""
    # None: vlmeft.data.protocol's own seeded draw from train and val.
    sampler: FewShotSampler | None = None
    # Whole other tasks to test on after training on this one, per transfer protocol
    # (CoOp: ImageNet's "cross-dataset" and "domain-generalisation" targets).
    targets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # A test-only task names the task it is trained on (ImageNet-A: "coop:imagenet").
    source: str = ""


@dataclass
class GroundingSample:
    image: np.ndarray  # uint8 [H, W, 3]
    boxes: np.ndarray  # float [K, 4] as x0, y0, x1, y1 in pixels
    expression: str  # names exactly one of the boxes
    target: int  # index of that box


@dataclass
class SceneTask:
    """Multi-object scenes: image-text retrieval and referring-expression grounding."""

    name: str
    images: np.ndarray  # uint8 [N, H, W, 3]
    captions: list[str]  # one caption per image, for retrieval
    grounding: list[GroundingSample]
    description: str = ""
