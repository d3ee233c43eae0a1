"""`vlmeft run / eval / params / methods`: results as JSON, and one-line errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vlmeft import registry
from vlmeft.cli import main

TINY = ["--backbone", "vlmeft-tiny-vit", "--pretrained", "none", "--no-progress"]
REQUIRED = {"method", "task", "shots", "seed", "zero_shot_accuracy", "accuracy", "trainable_params", "train_seconds",
            "backbone", "protocol"}


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """A 3-class image folder of 32 px colour patches (6 images per class)."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for name, colour in {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 220)}.items():
        (root / name).mkdir()
        for i in range(6):
            arr = np.clip(np.array(colour) + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.png")
    return root


def test_run_linear_probe_json(capsys, image_folder):
    code, out, err = _run(capsys, "run", "linear-probe", "--task", f"imagefolder:{image_folder}", "--shots", "2",
                          "--seed", "1", "--json", *TINY)
    assert code == 0, err
    result = _last_json(out)
    assert REQUIRED <= set(result)
    assert result["method"] == "linear-probe" and result["shots"] == 2 and result["seed"] == 1
    assert result["protocol"] == "few-shot" and result["backbone"] == "vlmeft-tiny-vit"
    assert result["trainable_params"] == 48 * 3 + 3
    assert 0.0 <= result["zero_shot_accuracy"] <= 1.0 and 0.0 <= result["accuracy"] <= 1.0
    assert "zero-shot accuracy" in out and "adapted accuracy" in out


def test_run_is_reproducible_per_seed(capsys, image_folder):
    args = ("run", "linear-probe", "--task", f"imagefolder:{image_folder}", "--shots", "1", "--json", *TINY)
    first = _last_json(_run(capsys, *args, "--seed", "3")[1])
    second = _last_json(_run(capsys, *args, "--seed", "3")[1])
    assert first["accuracy"] == second["accuracy"] and first["selected"] == second["selected"]


def test_run_any_record_says_which_implementation_stands_in(capsys, image_folder):
    """A record without code of its own runs its category's reference, and says so first."""
    from vlmeft.kb.load import load_kb

    rec = next(r for _, r in sorted(load_kb().methods.items()) if r.implementation is not None
               and r.implementation.fidelity == "category-reference"
               and "classification" in registry.get(r.implementation.id).tasks)
    impl = rec.implementation.id
    code, out, err = _run(capsys, "run", rec.id, "--task", f"imagefolder:{image_folder}", "--shots", "1",
                          "--json", *TINY)
    assert code == 0, err
    first = out.splitlines()[0]
    assert first == (f"{rec.id} has no implementation of its own; running its category's reference, "
                     f"{impl} ({rec.category})")
    result = _last_json(out)
    assert result["method"] == impl
    assert result["stand_in"] == {"record": rec.id, "implementation": impl, "fidelity": "category-reference",
                                  "category": rec.category, "note": first}
    # A record with its own code runs itself, with nothing standing in.
    code, out, err = _run(capsys, "run", "zsclip", "--task", f"imagefolder:{image_folder}", "--shots", "1",
                          "--json", *TINY)
    assert code == 0 and "stand_in" not in _last_json(out) and "no implementation of its own" not in out


def test_run_base_to_novel(capsys):
    code, out, err = _run(capsys, "run", "zsclip", "--task", "shapes", "--shots", "1", "--protocol", "base-to-novel",
                          "--json", *TINY)
    assert code == 0, err
    r = _last_json(out)
    hm = 2 * r["base_accuracy"] * r["novel_accuracy"] / (r["base_accuracy"] + r["novel_accuracy"])
    assert r["hm"] == pytest.approx(hm) and r["accuracy"] == r["hm"]
    assert r["zero_shot_hm"] == pytest.approx(r["hm"])  # zsclip is its own zero-shot baseline
    assert "HM" in out


def test_run_cross_domain(capsys):
    from vlmeft.data.tasks import get_task

    code, out, err = _run(capsys, "run", "zsclip", "--task", "shapes", "--shots", "1", "--protocol", "cross-domain",
                          "--json", *TINY)
    assert code == 0, err
    r = _last_json(out)
    assert set(r["domain_accuracy"]) == set(get_task("shapes").shifted) == set(r["zero_shot_domain_accuracy"])


def test_save_then_eval_on_novel_classes(capsys, tmp_path):
    ckpt = tmp_path / "coop"
    code, out, err = _run(capsys, "run", "coop", "--task", "shapes", "--shots", "1", "--protocol", "base-to-novel",
                          "--set", "epochs=1", "--set", "n_ctx=2", "--save", str(ckpt), "--json", *TINY)
    assert code == 0, err
    trained = _last_json(out)
    code, out, err = _run(capsys, "eval", "coop", "--checkpoint", str(ckpt), "--task", "shapes", "--subset", "novel",
                          "--json")
    assert code == 0, err
    assert _last_json(out)["accuracy"] == pytest.approx(trained["novel_accuracy"])
    # A checkpoint of another method is refused in one line.
    code, out, err = _run(capsys, "eval", "zsclip", "--checkpoint", str(ckpt), "--task", "shapes")
    assert code == 2 and "for method 'coop', not 'zsclip'" in err and err.count("\n") == 1
    # A truncated tensor file names the file.
    (ckpt / "adapter.safetensors").write_bytes((ckpt / "adapter.safetensors").read_bytes()[:20])
    code, out, err = _run(capsys, "eval", "coop", "--checkpoint", str(ckpt), "--task", "shapes")
    assert code == 2 and "adapter.safetensors" in err and "Traceback" not in err


@pytest.mark.parametrize("argv,message", [
    (["run", "copo", "--task", "digits"], "unknown method 'copo' (did you mean coop"),
    (["run", "zsclip", "--task", "digts"], "unknown task 'digts' (did you mean digits"),
    (["run", "linear-probe", "--task", "digits", "--set", "Cc=1"], "'Cc' is not a setting (did you mean C"),
    (["run", "linear-probe", "--task", "digits", "--set", "C"], "expected key=value"),
    (["run", "linear-probe", "--task", "digits", "--set", "C=-1"], "C must be positive"),
    (["run", "zsclip", "--task", "digits", "--backbone", "vlmeft-tiny-vit", "--pretrained", "/no/such/w.safetensors"],
     "weights file does not exist: /no/such/w.safetensors"),
    (["run", "zsclip", "--task", "digits", "--backbone", "ViT-Q-16"], "unknown backbone 'ViT-Q-16'"),
    (["run", "red-circle", "--task", "digits"], "does grounding only, not classification"),
    (["run", "red-circle", "--task", "digits", "--protocol", "few-shot"], "does grounding only, not classification"),
    (["run", "red-circle", "--task", "digts"], "unknown task 'digts' (did you mean digits"),
    (["run", "zsclip", "--task", "scenes"], "is a scene task, not image classification: pass --protocol"),
    (["run", "zsclip", "--task", "digits", "--protocol", "retrieval"], "runs on a scene task (scenes)"),
    (["run", "coop", "--task", "scenes", "--protocol", "grounding"], "does not do grounding here; methods that do: "
                                                                     "fgvp, red-circle, zsclip"),
    (["run", "coop", "--task", "scenes", "--protocol", "retrieval"], "does not do retrieval here; methods that do:"),
    (["run", "zsclip", "--task", "imagefolder:/no/such/folder"], "image folder does not exist"),
    (["eval", "zsclip", "--checkpoint", "/no/such/ckpt", "--task", "digits"], "checkpoint folder does not exist"),
    (["params", "linear-probe", "--backbone", "vlmeft-tiny-vit", "--num-classes", "0"], "must be positive"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, message):
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_vision_token_method_on_resnet_names_runnable_methods(capsys):
    code, out, err = _run(capsys, "params", "vpt", "--backbone", "vlmeft-tiny-rn")
    assert code == 2 and "ResNet" in err and "methods that run on it:" in err and "coop" in err and "vpt," not in err


def test_params_counts_and_last_line_is_the_integer(capsys):
    code, out, err = _run(capsys, "params", "linear-probe", "--backbone", "vlmeft-tiny-vit", "--num-classes", "7")
    assert code == 0 and out.strip().splitlines()[-1] == str(48 * 7 + 7)
    code, out, err = _run(capsys, "params", "zsclip", "--backbone", "vlmeft-tiny-rn")
    assert code == 0 and out.strip().splitlines()[-1] == "0"


def test_params_coop_matches_the_paper_on_vit_b16(capsys):
    # CoOp with 4 context vectors of the 512-wide ViT-B/16 text embedding: 2,048 parameters.
    code, out, err = _run(capsys, "params", "coop", "--backbone", "ViT-B-16", "--set", "n_ctx=4")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "2048"


def test_methods_lists_every_id(capsys):
    code, out, err = _run(capsys, "methods")
    assert code == 0
    listed = [line.split()[0] for line in out.strip().splitlines()]
    assert listed == registry.names()
    assert "prompt.textual.handcrafted" in out
    code, out, err = _run(capsys, "methods", "--json")
    data = json.loads(out)
    assert data["zsclip"]["category"] == "prompt.textual.handcrafted" and "training_free" in data["zsclip"]["flags"]
    assert data["zsclip"]["origin"] == "builtin" and data["zsclip"]["status"] == "ok"


def test_console_script_error_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "vlmeft", "run", "nope", "--task", "digits"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "unknown method 'nope'" in proc.stderr


def test_linear_probe_beats_zero_shot_on_digits(capsys, synthclip):
    """End to end on the shipped backbone and real UCI digits."""
    code, out, err = _run(capsys, "run", "linear-probe", "--task", "digits", "--shots", "16", "--seed", "1", "--json",
                          "--no-progress")
    assert code == 0, err
    r = _last_json(out)
    assert r["backbone"] == "synthclip-tiny"
    assert r["accuracy"] > r["zero_shot_accuracy"] > 0.1, r


def test_run_red_circle_grounds_scenes_above_chance(capsys, synthclip):
    """`vlmeft run red-circle --task scenes` (the README's line): grounding is its default protocol."""
    code, out, err = _run(capsys, "run", "red-circle", "--task", "scenes", "--json", "--no-progress")
    assert code == 0, err
    r = _last_json(out)
    assert r["protocol"] == "grounding" and r["trainable_params"] == 0
    assert 0.3 < r["chance"] < 0.5 and r["accuracy"] > r["chance"] + 0.05, r
    assert r["zero_shot_accuracy"] > r["chance"]  # crop-and-compare, printed as the reference
    assert "grounding accuracy:" in out and "crop and compare" in out


def test_run_retrieval_reports_recall_both_ways(capsys, synthclip):
    code, out, err = _run(capsys, "run", "zsclip", "--task", "scenes", "--protocol", "retrieval", "--json",
                          "--no-progress")
    assert code == 0, err
    r = _last_json(out)
    assert all(0 <= r[k] <= 1 for k in ("i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5"))
    assert r["i2t_r5"] >= r["i2t_r1"] > 0.1 and r["r1"] == pytest.approx((r["i2t_r1"] + r["t2i_r1"]) / 2)


def test_default_backbone_constant_matches_factory():
    from vlmeft.backbone import DEFAULT_BACKBONE
    from vlmeft.cli import run_commands

    assert run_commands.DEFAULT_BACKBONE == DEFAULT_BACKBONE


def test_a_bad_set_on_run_is_the_users_setting_and_a_profiles_stays_the_profiles(capsys, tiny_vit):
    """A --set that the method refuses at construction names --set, not a profile the user never
    gave; the same refusal inside a bench profile still names the profile."""
    from vlmeft.bench import plan
    from vlmeft.errors import VlmeftError

    code, out, err = _run(capsys, "run", "coop", "--task", "digits", "--shots", "1", *TINY, "--set", "n_ctx=40")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: --set") and "profile" not in err
    with pytest.raises(VlmeftError, match="profile override for 'coop' is invalid"):
        plan.probe("coop", tiny_vit, {"n_ctx": "40"})
