"""Shared fixtures: tiny real open_clip backbones and a tiny in-memory task.

Backbones are session-scoped and frozen; a test that needs to mutate one must build
its own with ``load_backbone``. Everything here is offline and CPU-only.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from vlmeft.data.types import ClassificationTask, Split

# Feature caches written by tests go to a throwaway folder, never the user's cache.
os.environ["VLMEFT_CACHE"] = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"vlmeft-test-cache-{os.getpid()}")


@pytest.fixture()
def one_thread():
    """Torch on one thread for the test (the machine is shared); restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def images_for(backbone, n: int = 3, seed: int = 0):
    """``n`` seeded random images at the backbone's resolution (probe inputs for method tests)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, backbone.image_size, backbone.image_size, generator=g)


@pytest.fixture(scope="session")
def tiny_vit():
    """Random-init ``vlmeft-tiny-vit`` (ViT 3x96, patch 8, 32 px; text 3x64; embed 48)."""
    from vlmeft.backbone import load_backbone

    return load_backbone("vlmeft-tiny-vit", pretrained=None)


@pytest.fixture(scope="session")
def tiny_rn():
    """Random-init ``vlmeft-tiny-rn`` (ModifiedResNet tower: no vision tokens)."""
    from vlmeft.backbone import load_backbone

    return load_backbone("vlmeft-tiny-rn", pretrained=None)


def synthclip_available() -> bool:
    """Whether the shipped synthclip-tiny weights exist in this checkout (their
    description file is present); a broken install then fails loudly, not skips."""
    from vlmeft.errors import VlmeftError

    try:
        from vlmeft.backbone import synthclip

        synthclip.shipped_info()
    except (ImportError, AttributeError, VlmeftError):
        return False
    return True


@pytest.fixture(scope="session")
def synthclip():
    """The shipped pretrained ``synthclip-tiny``; skips cleanly until its weights exist."""
    if not synthclip_available():
        pytest.skip("synthclip-tiny weights are not shipped yet")
    from vlmeft.backbone import load_backbone

    return load_backbone("synthclip-tiny")


TINY_CLASSES = ["red square", "green circle", "blue triangle", "yellow star"]
_TINY_COLOURS = np.array([[220, 40, 40], [40, 200, 60], [50, 70, 230], [230, 210, 40]], dtype=np.float64)


def make_tiny_task(
    n_train: int = 8, n_val: int = 4, n_test: int = 8, size: int = 32, seed: int = 0, name: str = "tiny"
) -> ClassificationTask:
    """Four classes told apart by colour plus noise: learnable in a few steps, 32 px."""
    rng = np.random.default_rng(seed)

    def split(per_class: int, tag: str, brightness: float = 1.0) -> Split:
        labels = np.repeat(np.arange(len(TINY_CLASSES)), per_class).astype(np.int64)
        base = brightness * _TINY_COLOURS[labels][:, None, None, :]
        noise = rng.normal(0.0, 40.0, size=(len(labels), size, size, 3))
        images = np.clip(base + noise, 0, 255).astype(np.uint8)
        return Split(images=images, labels=labels, key=f"{name}:seed{seed}:{tag}")

    return ClassificationTask(
        name=name,
        classnames=list(TINY_CLASSES),
        templates=["a photo of a {}.", "a drawing of a {}."],
        train=split(n_train, "train"),
        val=split(n_val, "val"),
        test=split(n_test, "test"),
        shifted={"dark": split(n_test, "test-dark", brightness=0.5)},
        description="tiny in-memory test task",
    )


@pytest.fixture(scope="session")
def tiny_task() -> ClassificationTask:
    """A 4-class in-memory ClassificationTask (8/4/8 images per class, 32 px uint8)."""
    return make_tiny_task()


@pytest.fixture(scope="session")
def vit_b16():
    """An untrained ViT-B-16 (about 150M parameters): real shapes, no weights. Built
    once per session; use it for shape, parameter-count and equality checks only."""
    from vlmeft.backbone import load_backbone

    return load_backbone("ViT-B-16", pretrained=None)


@pytest.fixture(scope="session")
def coop_root(tmp_path_factory):
    """A miniature copy of every CoOp dataset layout (tests/coop_layouts.py), built once
    per session. Read-only for tests: a test that corrupts a dataset copies it first."""
    import coop_layouts

    return coop_layouts.build(tmp_path_factory.mktemp("coop-data"))


@pytest.fixture(scope="session")
def tiny_coca():
    """Random-init ``vlmeft-tiny-coca`` (a CoCa: ViT 2x64, text 2x48, decoder 2x48): a captioner."""
    from vlmeft.backbone import load_backbone

    return load_backbone("vlmeft-tiny-coca", pretrained=None)


@pytest.fixture(scope="session")
def synthcoca():
    """The shipped pretrained ``synthcoca-tiny`` (the embedded captioner)."""
    from vlmeft.backbone import load_backbone

    return load_backbone("synthcoca-tiny")
