"""The runtime: fit/evaluate, the feature cache, checkpoints, image loading."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vlmeft import registry
from vlmeft.data.loading import Preprocess, load_batch
from vlmeft.engine import FeatureCache, checkpoint, evaluate, fit, predict
from vlmeft.engine.train import lr_at
from vlmeft.errors import VlmeftError
from vlmeft.method import Method, MethodConfig


@dataclass
class AdapterConfig(MethodConfig):
    epochs: int = 4
    batch_size: int = 8
    lr: float = 0.5
    warmup_epochs: int = 1
    warmup_lr: float = 0.05
    # The embedded recipe's shared settings (the base defaults are Dassl's): the tests
    # below check val selection, the exact feature cache and the legacy schedule.
    schedule: str = "legacy"
    augment: bool = False
    select: str = "val"


class ImageAdapter(Method):
    """Test method: a residual linear map on frozen image features (class-independent,
    so it can switch label sets), read only through the frozen encoder."""

    name = "test-image-adapter"
    category = "adapter.unimodal"
    Config = AdapterConfig
    frozen_image_path = True

    def __init__(self, backbone, classnames, templates, config=None):
        super().__init__(backbone, classnames, templates, config)
        self.map = nn.Linear(backbone.embed_dim, backbone.embed_dim, bias=False)
        nn.init.zeros_(self.map.weight)
        self.build_class_state()

    def adapt_image_features(self, features):
        return F.normalize(features + self.map(features), dim=-1)


class UncachedAdapter(ImageAdapter):
    """The same maths, but the engine must run the image encoder every step."""

    name = "test-uncached-adapter"
    frozen_image_path = False


class PixelBias(Method):
    """Test method whose image path is not frozen: a learned per-channel pixel offset."""

    name = "test-pixel-bias"
    category = "prompt.visual.pixel"
    Config = AdapterConfig

    def __init__(self, backbone, classnames, templates, config=None):
        super().__init__(backbone, classnames, templates, config)
        self.offset = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def image_features(self, images):
        return self.backbone.encode_image(images, pixel_hook=lambda x: x + self.offset, normalize=True)


def _build(cls, backbone, task, **overrides):
    config = cls.Config(**overrides) if overrides else None
    torch.manual_seed(0)
    return cls(backbone, task.classnames, task.templates, config)


def _snapshot(backbone):
    return {k: v.detach().clone() for k, v in backbone.state_dict().items()}


# ------------------------------------------------------------------ training
def test_fit_trains_only_the_method_and_learns(tiny_vit, tiny_task):
    before = _snapshot(tiny_vit)
    method = _build(ImageAdapter, tiny_vit, tiny_task)
    zero = evaluate(method, tiny_task.train)
    report = fit(method, tiny_task.train, tiny_task.val, seed=1, progress=False)
    after = tiny_vit.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit-identical frozen weights
    assert report.used_feature_cache and report.epochs == 4 and report.steps == 4 * (32 // 8)
    assert method.map.weight.abs().sum() > 0
    assert evaluate(method, tiny_task.train) > zero
    assert 1 <= report.best_epoch <= 4
    assert evaluate(method, tiny_task.val) == pytest.approx(report.best_val_accuracy)
    assert [h["epoch"] for h in report.history] == [1, 2, 3, 4]


def test_uncached_method_leaves_backbone_identical(tiny_vit, tiny_task):
    before = _snapshot(tiny_vit)
    method = _build(PixelBias, tiny_vit, tiny_task, epochs=2)
    report = fit(method, tiny_task.train, None, seed=1, progress=False)
    assert not report.used_feature_cache and report.best_epoch is None
    assert method.offset.abs().sum() > 0
    assert all(torch.equal(before[k], v) for k, v in tiny_vit.state_dict().items())
    assert all(p.grad is None for p in tiny_vit.parameters())


def test_cached_training_equals_uncached_training(tiny_vit, tiny_task):
    cached = _build(ImageAdapter, tiny_vit, tiny_task, epochs=3)
    uncached = _build(UncachedAdapter, tiny_vit, tiny_task, epochs=3)
    torch.testing.assert_close(cached.map.weight, uncached.map.weight, atol=0, rtol=0)
    r1 = fit(cached, tiny_task.train, tiny_task.val, seed=3, progress=False)
    r2 = fit(uncached, tiny_task.train, tiny_task.val, seed=3, progress=False)
    assert r1.used_feature_cache and not r2.used_feature_cache
    torch.testing.assert_close(cached.map.weight, uncached.map.weight, atol=1e-5, rtol=1e-4)
    assert r1.best_epoch == r2.best_epoch


def test_cached_logits_equal_forward_logits(tiny_vit, tiny_task):
    method = _build(ImageAdapter, tiny_vit, tiny_task)
    fit(method, tiny_task.train, None, seed=0, progress=False)
    prep = Preprocess.for_backbone(tiny_vit)
    with torch.no_grad():
        direct = method(load_batch(tiny_task.test, range(len(tiny_task.test)), prep))
    torch.testing.assert_close(predict(method, tiny_task.test), direct, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [ImageAdapter, PixelBias])
def test_evaluation_does_not_depend_on_batch_size(tiny_vit, tiny_task, cls):
    method = _build(cls, tiny_vit, tiny_task, epochs=1)
    fit(method, tiny_task.train, None, seed=0, progress=False)
    ref = predict(method, tiny_task.test, batch_size=256)
    for bs in (1, 5):
        torch.testing.assert_close(predict(method, tiny_task.test, batch_size=bs), ref, atol=1e-6, rtol=1e-6)
        assert evaluate(method, tiny_task.test, batch_size=bs) == evaluate(method, tiny_task.test)


def test_fit_is_seeded_locally(tiny_vit, tiny_task):
    torch.manual_seed(42)
    state = torch.get_rng_state().clone()
    a = _build(ImageAdapter, tiny_vit, tiny_task, epochs=2)
    b = _build(ImageAdapter, tiny_vit, tiny_task, epochs=2)
    c = _build(ImageAdapter, tiny_vit, tiny_task, epochs=2)
    torch.set_rng_state(state)
    fit(a, tiny_task.train, None, seed=5, progress=False)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is untouched
    fit(b, tiny_task.train, None, seed=5, progress=False)
    fit(c, tiny_task.train, None, seed=6, progress=False)
    assert torch.equal(a.map.weight, b.map.weight)
    assert not torch.equal(a.map.weight, c.map.weight)  # another seed shuffles differently


def test_augment_bypasses_the_cache_and_bf16_runs(tiny_vit, tiny_task):
    method = _build(ImageAdapter, tiny_vit, tiny_task, epochs=1, augment=True, precision="bf16")
    report = fit(method, tiny_task.train, None, seed=0, progress=False)
    assert not report.used_feature_cache and report.steps == 4
    assert torch.isfinite(method.map.weight).all() and method.map.weight.abs().sum() > 0


class GroupedAdapter(UncachedAdapter):
    """Two optimiser groups (the second frozen by a zero lr multiplier) and an epoch log."""

    name = "test-grouped-adapter"

    def __init__(self, backbone, classnames, templates, config=None):
        super().__init__(backbone, classnames, templates, config)
        self.shift = nn.Parameter(torch.zeros(backbone.embed_dim))
        self.events: list[tuple] = []

    def adapt_image_features(self, features):
        if not self.training:
            self.events.append(("eval",))
        return F.normalize(features + self.map(features) + self.shift, dim=-1)

    def parameter_groups(self):
        return [([self.map.weight], 1.0), ([self.shift], 0.0)]

    def end_epoch(self, epoch, epochs):
        self.events.append(("end", epoch, epochs))


def test_parameter_groups_scale_the_lr_and_end_epoch_runs_before_val(tiny_vit, tiny_task):
    method = _build(GroupedAdapter, tiny_vit, tiny_task, epochs=3)
    fit(method, tiny_task.train, tiny_task.val, seed=1, progress=False)
    assert method.map.weight.abs().sum() > 0  # multiplier 1: trained
    assert torch.equal(method.shift, torch.zeros_like(method.shift))  # multiplier 0: never moved
    ends = [e for e in method.events if e[0] == "end"]
    assert ends == [("end", 0, 3), ("end", 1, 3), ("end", 2, 3)]
    # Each epoch's end comes before that epoch's val evaluation.
    order = [e[0] for e in method.events]
    assert [order[i + 1] for i, e in enumerate(order) if e == "end"] == ["eval"] * 3


def test_parameter_groups_must_hold_every_trainable_parameter(tiny_vit, tiny_task):
    method = _build(GroupedAdapter, tiny_vit, tiny_task, epochs=1)
    method.parameter_groups = lambda: [([method.map.weight], 1.0)]  # shift left out
    with pytest.raises(RuntimeError, match="exactly once"):
        fit(method, tiny_task.train, None, seed=1, progress=False)


def test_adamw_and_schedule():
    cfg = AdapterConfig(epochs=10, lr=1.0, warmup_epochs=2, warmup_lr=1e-5)
    lrs = [lr_at(e, cfg) for e in range(10)]
    assert lrs[:2] == [1e-5, 1e-5]
    assert lrs[2] == pytest.approx(0.5 * (1 + np.cos(np.pi * 2 / 10)))
    assert all(x > y for x, y in zip(lrs[2:], lrs[3:]))  # cosine decay after warm-up
    assert lr_at(0, AdapterConfig(epochs=1, warmup_epochs=1)) == AdapterConfig().lr  # warm-up never takes all


def test_adamw_optimiser(tiny_vit, tiny_task):
    method = _build(ImageAdapter, tiny_vit, tiny_task, epochs=1, optimizer="adamw", lr=1e-2)
    fit(method, tiny_task.train, None, seed=0, progress=False)
    assert method.map.weight.abs().sum() > 0


def test_training_free_methods_do_not_optimise(tiny_vit, tiny_task):
    zs = registry.build("zsclip", tiny_vit, tiny_task.classnames, tiny_task.templates)
    report = fit(zs, tiny_task.train, tiny_task.val, seed=1, progress=False)
    assert report.steps == 0 and report.epochs == 0 and zs.num_trainable() == 0


def test_linear_probe_searches_c_on_val_and_learns(tiny_vit, tiny_task):
    lp = registry.build("linear-probe", tiny_vit, tiny_task.classnames, tiny_task.templates)
    report = fit(lp, tiny_task.train, tiny_task.val, seed=1, progress=False)
    assert report.steps == 0
    assert "C" in report.selected and report.selected["C"] == lp.chosen_C
    assert lp.num_trainable() == tiny_vit.embed_dim * 4 + 4
    assert evaluate(lp, tiny_task.test) > 0.5  # chance is 0.25
    with pytest.raises(VlmeftError, match="cannot classify"):
        lp.set_classnames(["a", "b", "c"])


def test_empty_training_split_is_an_error(tiny_vit, tiny_task):
    method = _build(ImageAdapter, tiny_vit, tiny_task)
    empty = replace(tiny_task.train, images=tiny_task.train.images[:0], labels=tiny_task.train.labels[:0])
    with pytest.raises(VlmeftError, match="empty"):
        fit(method, empty, None, seed=0, progress=False)


# --------------------------------------------------------------------- cache
def test_feature_cache_is_keyed_on_backbone_and_data(tiny_vit, tiny_task, tmp_path):
    from vlmeft.backbone import load_backbone

    cache = FeatureCache(root=tmp_path)
    a = cache.features(tiny_vit, tiny_task.test)
    assert cache.misses == 1 and torch.equal(cache.features(tiny_vit, tiny_task.test), a) and cache.hits == 1
    other = load_backbone("vlmeft-tiny-vit", pretrained=None, seed=1)  # same name, other weights
    b = cache.features(other, tiny_task.test)
    assert cache.misses == 2 and not torch.allclose(a, b)
    c = cache.features(tiny_vit, tiny_task.val)
    assert c.shape == (len(tiny_task.val), tiny_vit.embed_dim) and cache.misses == 3
    assert not list(tmp_path.rglob("*.safetensors"))  # random weights never go to disk


def test_feature_cache_on_disk_round_trip(tiny_vit, tiny_task, tmp_path, monkeypatch):
    monkeypatch.setattr(tiny_vit, "weights_id", "file:0123456789abcdef")
    first = FeatureCache(root=tmp_path)
    feats = first.features(tiny_vit, tiny_task.val)
    files = list(tmp_path.rglob("*.safetensors"))
    assert len(files) == 1 and not list(tmp_path.rglob("*.tmp"))
    second = FeatureCache(root=tmp_path)
    assert torch.equal(second.features(tiny_vit, tiny_task.val), feats) and second.misses == 0
    files[0].write_bytes(b"garbage")  # a damaged entry is recomputed, not trusted
    third = FeatureCache(root=tmp_path)
    assert torch.equal(third.features(tiny_vit, tiny_task.val), feats) and third.misses == 1


# ---------------------------------------------------------------- checkpoint
@pytest.fixture()
def trained(tiny_vit, tiny_task, tmp_path):
    method = _build(ImageAdapter, tiny_vit, tiny_task, epochs=2)
    fit(method, tiny_task.train, None, seed=0, progress=False)
    path = checkpoint.save(method, tmp_path / "ckpt")
    return method, path


def test_checkpoint_round_trip_gives_identical_logits(trained, tiny_vit, tiny_task):
    method, path = trained
    assert sorted(p.name for p in path.iterdir()) == ["adapter.safetensors", "config.json"]
    meta = json.loads((path / "config.json").read_text())
    assert meta["method"] == ImageAdapter.name and meta["classnames"] == tiny_task.classnames
    assert meta["backbone"] == {"name": "vlmeft-tiny-vit", "weights_id": "random:0", "pretrained": None}
    assert meta["config"]["epochs"] == 2 and meta["vlmeft_version"]
    loaded = checkpoint.load(path, tiny_vit, method_class=ImageAdapter)
    assert torch.equal(predict(loaded, tiny_task.test), predict(method, tiny_task.test))


def test_checkpoint_switches_class_names(trained, tiny_vit, tiny_task):
    method, path = trained
    novel = ["purple hexagon", "pink cross", "orange moon"]
    loaded = checkpoint.load(path, tiny_vit, novel, ["a photo of a {}."], method_class=ImageAdapter)
    assert loaded.classnames == novel
    method.set_classnames(novel, ["a photo of a {}."])
    logits = predict(loaded, tiny_task.test)
    assert logits.shape == (len(tiny_task.test), 3)
    assert torch.equal(logits, predict(method, tiny_task.test))


def test_checkpoint_for_another_method_is_refused(trained, tiny_vit):
    _, path = trained
    with pytest.raises(VlmeftError, match="for method 'test-image-adapter', not 'coop'"):
        checkpoint.load(path, tiny_vit, method="coop")
    with pytest.raises(VlmeftError, match="not 'test-uncached-adapter'"):
        checkpoint.load(path, tiny_vit, method_class=UncachedAdapter)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_tensor_file_names_the_file(trained, tiny_vit, damage):
    _, path = trained
    target = path / "adapter.safetensors"
    blob = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(blob[: len(blob) // 2])
    elif damage == "flip":
        target.write_bytes(blob[:-1] + bytes([blob[-1] ^ 0xFF]))
    else:
        target.unlink()
    with pytest.raises(VlmeftError) as info:
        checkpoint.load(path, tiny_vit, method_class=ImageAdapter)
    assert "adapter.safetensors" in str(info.value)


def test_damaged_header_with_matching_hash_is_a_clear_error(trained, tiny_vit):
    import hashlib

    _, path = trained
    target = path / "adapter.safetensors"
    target.write_bytes(b"\xff" * 8 + b"{not json")
    meta = json.loads((path / "config.json").read_text())
    meta["adapter_sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(VlmeftError, match="damaged safetensors"):
        checkpoint.load(path, tiny_vit, method_class=ImageAdapter)


def test_wrong_shapes_and_bad_json_are_clear_errors(trained, tiny_vit, tmp_path):
    import hashlib

    from safetensors.torch import save

    _, path = trained
    blob = save({"map.weight": torch.zeros(3, 3)})
    (path / "adapter.safetensors").write_bytes(blob)
    meta = json.loads((path / "config.json").read_text())
    meta["adapter_sha256"] = hashlib.sha256(blob).hexdigest()
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(VlmeftError, match=r"shape \(3, 3\)"):
        checkpoint.load(path, tiny_vit, method_class=ImageAdapter)
    (path / "config.json").write_text('{"method": "x",')
    with pytest.raises(VlmeftError, match="invalid JSON"):
        checkpoint.load(path, tiny_vit, method_class=ImageAdapter)
    with pytest.raises(VlmeftError, match="does not exist"):
        checkpoint.load(tmp_path / "missing", tiny_vit)


def test_checkpoint_refuses_other_weights(trained, tiny_task):
    from vlmeft.backbone import load_backbone

    _, path = trained
    other = load_backbone("vlmeft-tiny-vit", pretrained=None, seed=3)
    with pytest.raises(VlmeftError, match="weights"):
        checkpoint.load(path, other, method_class=ImageAdapter)


def test_checkpoint_save_is_atomic(trained, tiny_vit, monkeypatch):
    method, path = trained
    before = {p.name: p.read_bytes() for p in path.iterdir()}

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "replace", boom)
    with pytest.raises(OSError):
        checkpoint.save(method, path)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before  # nothing lost, no temp files


# ------------------------------------------------------------------- loading
def test_load_batch_normalises_and_resizes(tiny_vit):
    from vlmeft.data.types import Split

    images = np.full((2, 8, 8, 3), 128, dtype=np.uint8)
    out = load_batch(Split(images=images, labels=np.zeros(2, dtype=np.int64), key="k"), [0, 1],
                     Preprocess.for_backbone(tiny_vit))
    assert out.shape == (2, 3, 32, 32)
    expected = (128 / 255 - torch.tensor(tiny_vit.mean)) / torch.tensor(tiny_vit.std)
    torch.testing.assert_close(out[0, :, 5, 5], expected.float(), atol=1e-4, rtol=0)

