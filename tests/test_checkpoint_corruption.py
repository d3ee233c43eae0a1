"""Checkpoints from users' disks: truncated or tampered files and configs for another
method end in one clear error naming the file, never a traceback or a half-loaded model.

tests/test_engine.py covers the basic cases (hash mismatch, a header of garbage, wrong
shapes, another method's id); here the tampering keeps the recorded hash consistent, so
the safetensors parser and the config checks themselves are what must hold, on a real
registered method (CoOp), through the CLI, the pretraining checkpoint and backbone weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TINY_CLASSES
from vlmeft import registry
from vlmeft.engine import checkpoint
from vlmeft.errors import VlmeftError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def saved(tiny_vit, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    method = registry.build("coop", tiny_vit, TINY_CLASSES, ["a photo of a {}."], {"n_ctx": "4"})
    return checkpoint.save(method, tmp_path_factory.mktemp("ckpt") / "coop")


def _copy(saved: Path, tmp_path: Path, blob: bytes | None = None,
          edit: Callable[[dict], None] | None = None, rehash: bool = True) -> Path:
    """A copy of the checkpoint with its tensor file replaced and/or config edited; the
    recorded SHA-256 is updated, so only the checks after the hash can catch the damage."""
    d = tmp_path / "ckpt"
    shutil.copytree(saved, d)
    if blob is not None:
        (d / checkpoint.ADAPTER_FILE).write_bytes(blob)
    meta = json.loads((d / checkpoint.CONFIG_FILE).read_text())
    if edit is not None:
        edit(meta)
    if rehash:
        meta["adapter_sha256"] = hashlib.sha256((d / checkpoint.ADAPTER_FILE).read_bytes()).hexdigest()
    (d / checkpoint.CONFIG_FILE).write_text(json.dumps(meta))
    return d


def _header(blob: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def _with_header(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _refused(d: Path, backbone, fragment: str, file: str) -> str:
    with pytest.raises(VlmeftError) as info:
        checkpoint.load(d, backbone, method="coop")
    text = str(info.value)
    assert text.startswith(str(d / file)), text
    assert fragment in text and "\n" not in text, text
    return text


@pytest.mark.parametrize("cut", ["prefix", "header", "data", "empty"])
def test_truncated_tensor_file(saved, tiny_vit, tmp_path, cut):
    blob = (saved / checkpoint.ADAPTER_FILE).read_bytes()
    n = struct.unpack("<Q", blob[:8])[0]
    keep = {"prefix": 5, "header": 8 + n // 2, "data": len(blob) - 3, "empty": 0}[cut]
    d = _copy(saved, tmp_path, blob[:keep])
    _refused(d, tiny_vit, "damaged safetensors file", checkpoint.ADAPTER_FILE)


def _tamper_offsets(h: dict, k: str) -> None:
    h[k]["data_offsets"] = [0, 10**12]


def _tamper_dtype(h: dict, k: str) -> None:
    h[k]["dtype"] = "F64"


def _tamper_shape(h: dict, k: str) -> None:
    h[k]["shape"] = [h[k]["shape"][0] * 2, h[k]["shape"][1]]


@pytest.mark.parametrize("tamper", [_tamper_offsets, _tamper_dtype, _tamper_shape], ids=["offsets", "dtype", "shape"])
def test_tampered_header(saved, tiny_vit, tmp_path, tamper):
    header, data = _header((saved / checkpoint.ADAPTER_FILE).read_bytes())
    key = next(k for k in header if k != "__metadata__")
    tamper(header, key)
    d = _copy(saved, tmp_path, _with_header(header, data))
    _refused(d, tiny_vit, "damaged safetensors file", checkpoint.ADAPTER_FILE)


def test_header_length_that_would_allocate_exabytes(saved, tiny_vit, tmp_path):
    blob = (saved / checkpoint.ADAPTER_FILE).read_bytes()
    d = _copy(saved, tmp_path, struct.pack("<Q", 2**62) + blob[8:])
    _refused(d, tiny_vit, "damaged safetensors file", checkpoint.ADAPTER_FILE)


def test_consistent_file_with_foreign_tensors(saved, tiny_vit, tmp_path):
    """A well-formed safetensors file with the right name but another method's tensors."""
    from safetensors.torch import save

    d = _copy(saved, tmp_path, save({"prompt_learner.ctx": torch.zeros(7, 5), "extra.weight": torch.zeros(2)}))
    with pytest.raises(VlmeftError) as info:
        checkpoint.load(d, tiny_vit, method="coop")
    assert str(checkpoint.ADAPTER_FILE) in str(info.value)


def _other_method(meta: dict) -> None:
    meta["method"] = "maple"  # CoOp's settings and tensors, labelled MaPLe


def _import_path(meta: dict) -> None:
    meta["method"] = "os:system"


def _wrong_type(meta: dict) -> None:
    meta["config"]["lr"] = "abc"


def _absurd_setting(meta: dict) -> None:
    meta["config"]["n_ctx"] = 10**12


def _classnames_objects(meta: dict) -> None:
    meta["classnames"] = [1, {"__class__": "os.system"}]


def _no_classnames(meta: dict) -> None:
    meta["classnames"] = []


def _bad_templates(meta: dict) -> None:
    meta["templates"] = ["a photo of a {}.", 3]


def _unknown_setting(meta: dict) -> None:
    meta["config"]["__init__"] = "x"


@pytest.mark.parametrize("edit, fragment", [
    (_other_method, "for method 'maple', not 'coop'"),
    (_import_path, "for method 'os:system', not 'coop'"),
    (_wrong_type, "setting 'lr' has the wrong type"),
    (_absurd_setting, "does not build a 'coop'"),
    (_classnames_objects, "'classnames' must be a non-empty list"),
    (_no_classnames, "'classnames' must be a non-empty list"),
    (_bad_templates, "'templates' must be a non-empty list"),
    (_unknown_setting, "unknown setting(s) __init__"),
], ids=lambda v: v.__name__.strip("_") if callable(v) else "")
def test_config_for_another_method_or_tampered(saved, tiny_vit, tmp_path, edit, fragment):
    d = _copy(saved, tmp_path, edit=edit)
    _refused(d, tiny_vit, fragment, checkpoint.CONFIG_FILE)


def test_other_method_checkpoint_through_its_own_class(saved, tiny_vit, tmp_path):
    """Relabelled as MaPLe and loaded without naming the method: MaPLe's own checks refuse it."""
    d = _copy(saved, tmp_path, edit=_other_method)
    with pytest.raises(VlmeftError) as info:
        checkpoint.load(d, tiny_vit)
    assert str(d) in str(info.value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_random_byte_damage_with_a_matching_hash(saved, tiny_vit, tmp_path_factory, data):
    """Any damage to the tensor file: a clean VlmeftError, or (when only tensor values
    changed) a loaded model with the saved shapes, never anything else."""
    blob = bytearray((saved / checkpoint.ADAPTER_FILE).read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, len(blob)))
        if op == "flip" and blob:
            blob[min(pos, len(blob) - 1)] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del blob[pos:pos + data.draw(st.integers(1, 64))]
        else:
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
    d = _copy(saved, tmp_path_factory.mktemp("fuzz"), bytes(blob))
    try:
        model = checkpoint.load(d, tiny_vit, method="coop")
    except VlmeftError as err:
        assert str(err).startswith(str(d)) and "\n" not in str(err)
        return
    assert model.state_tensors()["prompt_learner.ctx"].shape == (4, tiny_vit.text_width)


def test_cli_eval_of_a_damaged_checkpoint_is_one_line(saved, tmp_path):
    blob = (saved / checkpoint.ADAPTER_FILE).read_bytes()
    d = _copy(saved, tmp_path, blob[: len(blob) // 2])
    proc = subprocess.run([sys.executable, "-m", "vlmeft", "eval", "coop", "--checkpoint", str(d), "--task", "digits"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    # open_clip logs that the random-init backbone has no pretrained weights; the rest is the error
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("WARNING:root:No pretrained weights")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {d / checkpoint.ADAPTER_FILE}: damaged"), proc.stderr


# ------------------------------------------------------------------ pretraining checkpoint
SMOKE = ["--steps", "4", "--batch-size", "8", "--pool-size", "200", "--warmup", "1", "--checkpoint-every", "2",
         "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory) -> Path:
    from vlmeft.cli import main

    out = tmp_path_factory.mktemp("pretrain") / "run"
    assert main(["backbone", "pretrain", *SMOKE, "--out", str(out), "--stop-after", "2"]) == 0
    return out


def _damage_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def _damage_garbage(path: Path) -> None:
    path.write_bytes(b"PK\x03\x04 not a torch file" * 10)


def _damage_foreign(path: Path) -> None:
    torch.save({"model": {}, "step": "x"}, path)  # loads, but is not a pretraining checkpoint


def _damage_pickle(path: Path) -> None:
    import pickle

    class Payload:  # would run os.system on unpickling with weights_only=False
        def __reduce__(self):
            return (os.system, ("touch vlmeft-pwned",))

    path.write_bytes(pickle.dumps(Payload()))


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_garbage, _damage_foreign, _damage_pickle],
                         ids=["truncated", "garbage", "foreign", "pickle-payload"])
def test_damaged_pretraining_checkpoint_is_a_clear_error(pretrain_run, tmp_path, capsys, monkeypatch, damage):
    from vlmeft.backbone.synthclip.pretrain import CHECKPOINT
    from vlmeft.cli import main

    out = tmp_path / "run"
    shutil.copytree(pretrain_run, out)
    damage(out / CHECKPOINT)
    monkeypatch.chdir(tmp_path)
    assert main(["backbone", "pretrain", *SMOKE, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out / CHECKPOINT}: ") and err.count("\n") == 1, err
    assert "--no-resume" in err or "differs" in err
    assert not (tmp_path / "vlmeft-pwned").exists()


# ------------------------------------------------------------------------- backbone weights
def test_truncated_backbone_weights_file(tmp_path, tiny_vit):
    """`--pretrained FILE` from a user's disk, cut short."""
    from safetensors.torch import save_file

    from vlmeft.backbone import load_backbone

    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_vit.model.state_dict().items()}, str(path))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(VlmeftError) as info:
        load_backbone("vlmeft-tiny-vit", pretrained=str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
