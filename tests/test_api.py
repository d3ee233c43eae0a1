"""The Python API (issue 13, part 8): vlmeft.load_backbone / build / fit / evaluate /
predict / save / load, on plain tensors, files and a torch Dataset; the README example
runs verbatim."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vlmeft
from vlmeft.errors import VlmeftError

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    """The first python block of the README's "Python API" section, as written there."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "the README's Python API section has no python block"
    return blocks[0]


def test_readme_example_runs_verbatim(tmp_path, monkeypatch, capsys):
    code = readme_example()
    assert 8 <= len([line for line in code.splitlines() if line.strip()]) <= 14  # "about ten lines"
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md (Python API)", "exec"), {"__name__": "readme"})  # noqa: S102
    out = capsys.readouterr().out
    accuracy = float(re.search(r"accuracy: ([0-9.]+)", out).group(1))
    assert accuracy >= 0.9, out  # three coloured squares: CoOp learns them
    assert re.search(r"predicted: \[\d, \d, \d, \d\]", out), out
    saved = tmp_path / "runs" / "my-coop"
    assert (saved / "config.json").is_file() and (saved / "adapter.safetensors").is_file()
    loaded = vlmeft.load(saved, device="cpu")
    assert loaded.name == "coop" and loaded.classnames == ["red", "green", "blue"]


def test_import_vlmeft_stays_torch_free():
    probe = "import sys, vlmeft; print('torch' in sys.modules, sorted(vlmeft.API))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.startswith("False")


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def backbone():
    return vlmeft.load_backbone("vlmeft-tiny-vit", None, device="cpu")


CLASSES = ["red", "green", "blue"]


def _data(n_per_class: int = 4, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat(n_per_class)
    images = 0.3 * torch.rand(len(labels), 3, size, size, generator=g)
    images[torch.arange(len(labels)), labels] += 0.7
    return images, labels


class PairDataset(torch.utils.data.Dataset):
    """(PIL image, label) pairs of varied sizes, no ``targets`` attribute."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.items = [(Image.fromarray((img.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).resize((40 + i, 36)),
                       int(lab)) for i, (img, lab) in enumerate(zip(images, labels))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


# -------------------------------------------------------------------- tests
def test_fit_evaluate_predict_on_tensors_dataset_and_files(backbone, tmp_path):
    images, labels = _data()
    method = vlmeft.build("linear-probe", backbone, CLASSES)
    report = vlmeft.fit(method, images, labels, val=(images, labels), seed=0)
    assert report.selected  # the probe chose its C on the val pair
    acc = vlmeft.evaluate(method, images, labels)
    logits = vlmeft.predict(method, images)
    assert logits.shape == (len(images), 3) and logits.dtype == torch.float32
    assert acc == float((logits.argmax(1) == labels).float().mean())
    # the same images as uint8 arrays [N, H, W, 3], as files, and as a Dataset of PIL images
    u8 = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    paths = []
    for i, arr in enumerate(u8):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(arr).save(paths[-1])
    from_array = vlmeft.predict(method, u8)
    from_files = vlmeft.predict(method, paths)
    torch.testing.assert_close(from_array, from_files, atol=1e-5, rtol=0)
    torch.testing.assert_close(from_array, logits, atol=0.05, rtol=0)  # uint8 rounding only
    dataset = PairDataset(images, labels)
    assert 0.0 <= vlmeft.evaluate(method, dataset) <= 1.0
    assert vlmeft.predict(method, dataset).shape == (len(dataset), 3)


def test_coop_trains_on_a_dataset_and_round_trips(backbone, tmp_path):
    images, labels = _data()
    dataset = PairDataset(images, labels)
    coop = vlmeft.build("coop", backbone, CLASSES, n_ctx=2, epochs=2, min_steps=0, templates=["a {} square."])
    before = coop.prompt_learner.ctx.detach().clone() if hasattr(coop, "prompt_learner") else None
    report = vlmeft.fit(coop, dataset, seed=3)
    assert report.steps > 0
    if before is not None:
        assert not torch.equal(before, coop.prompt_learner.ctx)
    vlmeft.save(coop, tmp_path / "ckpt")
    with pytest.raises(VlmeftError, match="already holds a checkpoint.*pass force=True"):
        vlmeft.save(coop, tmp_path / "ckpt")
    vlmeft.save(coop, tmp_path / "ckpt", force=True)
    again = vlmeft.load(tmp_path / "ckpt", backbone)
    torch.testing.assert_close(vlmeft.predict(again, images), vlmeft.predict(coop, images), atol=0, rtol=0)
    novel = vlmeft.load(tmp_path / "ckpt", backbone, classnames=["yellow", "purple"])
    assert vlmeft.predict(novel, images).shape == (len(images), 2)


def test_random_weights_warn_through_python_warnings():
    with pytest.warns(UserWarning, match="random weights"):
        vlmeft.load_backbone("synthclip-tiny", None, device="cpu")


@pytest.mark.parametrize("call,message", [
    (lambda m, x, y: vlmeft.fit(m, x), "labels are needed"),
    (lambda m, x, y: vlmeft.fit(m, x, y + 5), "label 7 is out of range for 3 classes"),
    (lambda m, x, y: vlmeft.evaluate(m, x, y[:-1]), "expected 12 integer class indices"),
    (lambda m, x, y: vlmeft.fit(m, {"a": 1}, y), "cannot read images from a dict"),
    (lambda m, x, y: vlmeft.predict(m, torch.rand(2, 5, 8, 8)), "expected images [N, 3, H, W]"),
    (lambda m, x, y: vlmeft.build("coop", m.backbone, ["a"], n_ctx="x"), "Config.n_ctx='x'"),
    (lambda m, x, y: vlmeft.build("coop", m.backbone, ["a"], n_ctx=2.5), "n_ctx=2.5 does not fit"),
    (lambda m, x, y: vlmeft.build("coop", m.backbone, ["a"], templates=["no slot"]), "exactly one '{}'"),
    (lambda m, x, y: vlmeft.build("coop", m.backbone, []), "classnames must be a non-empty list"),
    (lambda m, x, y: vlmeft.build("copo", m.backbone, ["a"]), "unknown method 'copo'"),
])
def test_bad_input_is_a_vlmeft_error(backbone, call, message):
    images, labels = _data()
    method = vlmeft.build("linear-probe", backbone, CLASSES)
    with pytest.raises(VlmeftError) as info:
        call(method, images, labels)
    assert message in str(info.value) and "\n" not in str(info.value)
