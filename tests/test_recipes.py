"""Two recipes per method (paper, embedded), Dassl's schedule and augmentation, and
``select``: declared as data, applied by ``registry.build``, recorded everywhere."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from PIL import Image

from vlmeft import registry
from vlmeft.bench.profiles import get_profile
from vlmeft.cli import main
from vlmeft.data.augment import crop_box, load_augmented_batch
from vlmeft.data.loading import Preprocess, load_batch
from vlmeft.data.types import Split
from vlmeft.engine import checkpoint, evaluate, fit
from vlmeft.engine.schedule import lr_at, lr_at_step, plan
from vlmeft.errors import VlmeftError
from vlmeft.method import MethodConfig
from vlmeft.recipes import EMBEDDED_BASE, RECIPES, Source, config_for, default_recipe, recipe_table

DATA = Path(__file__).parent / "data" / "recipes"
TINY = ["--backbone", "vlmeft-tiny-vit", "--pretrained", "none", "--no-progress"]
CLASSES = ["red circle", "blue square", "green star"]
TEMPLATES = ["a photo of a {}."]
PRECISIONS = {"fp16", "amp", "fp32"}


# ------------------------------------------------------------------ declarations
def declaration_problems(config_cls: type[MethodConfig]) -> list[str]:
    """What is wrong with a Config's recipe declaration (empty: nothing)."""
    problems = []
    own = vars(config_cls)
    if not isinstance(own.get("source"), Source):
        problems.append("no `source` of its own")
    if not isinstance(own.get("embedded"), dict):
        problems.append("no `embedded` dict of its own")
    source = own.get("source")
    if isinstance(source, Source):
        doc = config_cls.__doc__ or ""
        if source.repo and (source.path not in doc or source.repo not in doc):
            problems.append(f"docstring does not cite {source.repo} {source.path}")
        if source.repo and source.precision not in PRECISIONS:
            problems.append(f"precision {source.precision!r}")
        if not source.repo and not source.note:
            problems.append("no repository and no note saying where the values come from")
    unknown = set(own.get("embedded") or {}) - set(config_cls.field_types())
    if unknown:
        problems.append(f"embedded sets unknown fields {sorted(unknown)}")
    return problems


@pytest.mark.parametrize("name", registry.names())
def test_every_method_declares_both_recipes_and_cites_its_source(name):
    assert declaration_problems(registry.get(name).Config) == []


def test_a_config_without_a_declaration_is_caught():
    @dataclass
    class Bare(MethodConfig):
        """Nothing cited."""

        lr: float = 0.1

    @dataclass
    class Wrong(MethodConfig):
        """Says nothing about its file."""

        source: ClassVar[Source] = Source("org/repo", "configs/x.yaml", "abc", "fp64")
        embedded: ClassVar[dict[str, Any]] = {"lrr": 1.0}

    assert declaration_problems(Bare) == ["no `source` of its own", "no `embedded` dict of its own"]
    assert declaration_problems(Wrong) == ["docstring does not cite org/repo configs/x.yaml", "precision 'fp64'",
                                           "embedded sets unknown fields ['lrr']"]


def test_a_bad_embedded_declaration_fails_loudly():
    class Method:  # only what config_for reads
        @dataclass
        class Config(MethodConfig):
            embedded: ClassVar[dict[str, Any]] = {"no_such_field": 1}

    with pytest.raises(RuntimeError, match="no_such_field"):
        config_for(Method, "embedded")


# ------------------------------------------------------------------ the two recipes
@pytest.mark.parametrize("name", registry.names())
def test_the_paper_recipe_is_the_config_defaults(name):
    cls = registry.get(name)
    assert config_for(cls, "paper") == cls.Config()


# Settings whose meaning changed after the snapshot, with the value that gives the same
# training: KgCoOp's loss now follows the official W (1 - mean cos), which is half the
# squared distance the snapshot's lambda 8 weighted, so the same loss needs W = 16.
RESCALED = {"kgcoop": {"kg_weight": 16.0}}


@pytest.mark.parametrize("name", registry.names())
def test_the_embedded_recipe_is_the_calibration_the_benchmark_was_measured_with(name):
    """Every setting that existed before the recipes keeps the value the committed
    embedded benchmark was measured with (a snapshot of the defaults taken then); the new
    settings take the shared embedded base."""
    # A method added after the recipes has no snapshot: only the shared base is checked.
    before = json.loads((DATA / "embedded_configs_before_recipes.json").read_text()).get(name, {})
    before = {**before, **RESCALED.get(name, {})}
    embedded = config_for(registry.get(name), "embedded").to_dict()
    assert {k: embedded[k] for k in before} == before
    assert {k: embedded[k] for k in EMBEDDED_BASE} == EMBEDDED_BASE


# (method, {field: paper value}): each read from the cited official file.
PAPER = [
    ("coop", {"optimizer": "sgd", "lr": 0.002, "batch_size": 32, "epochs": 200, "warmup_epochs": 1,
              "schedule": "dassl", "augment": True, "crop_scale": 0.08, "select": "last", "n_ctx": 16}),
    ("cocoop", {"lr": 0.002, "batch_size": 1, "epochs": 10, "min_steps": 0, "n_ctx": 4, "select": "last"}),
    ("kgcoop", {"lr": 0.002, "batch_size": 128, "epochs": 100, "n_ctx": 4, "kg_weight": 8.0, "select": "last",
                "text_template": "first"}),
    ("vpt", {"lr": 0.0025, "batch_size": 4, "epochs": 5, "min_steps": 0, "n_tokens": 8, "select": "last"}),
    ("ivlp", {"lr": 0.0035, "batch_size": 4, "epochs": 5, "min_steps": 0, "select": "last"}),
    ("maple", {"lr": 0.0035, "batch_size": 4, "epochs": 5, "min_steps": 0, "depth": 9, "select": "last"}),
    ("mma", {"lr": 0.0015, "batch_size": 16, "epochs": 5, "warmup_epochs": 0, "min_steps": 0, "select": "last"}),
    ("clip-adapter", {"lr": 0.002, "batch_size": 32, "epochs": 200, "schedule": "dassl", "select": "last"}),
    ("clip-lora", {"optimizer": "adamw", "lr": 2e-4, "batch_size": 32, "steps_per_shot": 500,
                   "schedule": "cosine-steps", "warmup_epochs": 0, "augment": True, "select": "last"}),
    ("tip-adapter", {"beta_max": 7.0, "alpha_max": 3.0, "beta_steps": 200, "alpha_steps": 20}),
    ("tip-adapter-f", {"optimizer": "adamw", "lr": 1e-3, "batch_size": 256, "epochs": 20, "adam_eps": 1e-4,
                       "schedule": "cosine-steps", "augment": True, "crop_scale": 0.5, "select": "val"}),
    ("vp", {"lr": 40.0, "batch_size": 256, "epochs": 1000, "weight_decay": 0.0, "schedule": "cosine-steps",
            "warmup_steps": 1000, "augment": False, "init_std": 1.0, "select": "val"}),
    ("evp", {"lr": 70.0, "batch_size": 256, "epochs": 1000, "momentum": 0.0, "weight_decay": 0.0, "schedule": "dassl",
             "warmup_epochs": 0, "augment": True, "grad_norm": True}),
    ("dclip", {"epochs": 0, "label_before": "", "separator": ", ", "label_after": "", "modify": True}),
    ("waffleclip", {"epochs": 0, "count": 15, "label_before": "A photo of a ", "separator": ", ", "label_after": ".",
                    "modify": True}),
    ("cupl", {"epochs": 0, "use_templates": False}),
    ("fgvp", {"epochs": 0, "blur": 0.0, "template": "a photo of {}", "subtract_prior": False}),
]
EMBEDDED = [  # the calibrations chosen on val (module docstrings hold the evidence)
    ("cocoop", {"lr": 0.05, "min_steps": 1000, "batch_size": 4}),
    ("kgcoop", {"lr": 0.02}),
    ("clip-adapter", {"lr": 0.2}),
    ("clip-lora", {"lr": 1e-2, "epochs": 50, "steps_per_shot": 0}),
    ("vp", {"lr": 1.0, "epochs": 100, "init_std": 0.0}),
    ("tip-adapter", {"beta_max": 50.0, "alpha_max": 30.0, "alpha_steps": 100}),
    ("tip-adapter-f", {"beta_max": 50.0, "alpha_max": 30.0, "alpha_steps": 100, "schedule": "legacy"}),
    ("mma", {"lr": 7e-3, "min_steps": 100}),
    ("maple", {"min_steps": 300}),
    ("evp", {"lr": 3.0, "epochs": 100, "augment": False}),
    ("dclip", {"label_before": "a ", "modify": False}),
    ("waffleclip", {"label_before": "a "}),
    ("cupl", {"use_templates": True}),
]


@pytest.mark.parametrize(("name", "values"), PAPER)
def test_paper_values(name, values):
    config = config_for(registry.get(name), "paper")
    assert {k: getattr(config, k) for k in values} == values


@pytest.mark.parametrize(("name", "values"), EMBEDDED)
def test_embedded_values(name, values):
    config = config_for(registry.get(name), "embedded")
    assert {k: getattr(config, k) for k in values} == values


def test_recipe_table_lists_what_differs_in_field_order():
    assert recipe_table(registry.get("cocoop").Config) == [
        ("batch_size", 1, 4), ("lr", 0.002, 0.05), ("schedule", "dassl", "legacy"), ("augment", True, False),
        ("select", "last", "val"), ("min_steps", 0, 1000)]
    assert recipe_table(registry.get("zsclip").Config, ("epochs",))[0] == ("epochs", 0, 0)  # asked for: shown


def test_overrides_apply_on_top_of_a_recipe_and_bad_names_are_one_line_errors():
    cls = registry.get("cocoop")
    config = config_for(cls, "embedded", {"lr": "0.1"})
    assert (config.lr, config.min_steps, config.select) == (0.1, 1000, "val")
    with pytest.raises(VlmeftError, match="^--recipe: unknown recipe 'papr'; recipes: paper, embedded$"):
        config_for(cls, "papr")
    assert RECIPES == ("paper", "embedded")


# ------------------------------------------------------------------ default and build
def test_default_recipe_by_backbone(tiny_vit):
    class Fake:
        def __init__(self, name, weights_id):
            self.name, self.weights_id = name, weights_id

    assert default_recipe("synthclip-tiny") == "embedded"
    assert default_recipe("ViT-B-16") == "paper"
    assert default_recipe(Fake("synthclip-tiny", "synthclip:0123456789abcdef")) == "embedded"
    assert default_recipe(Fake("synthclip-tiny", "random:0")) == "paper"  # not the calibrated weights
    assert default_recipe(Fake("ViT-B-16", "tag:openai")) == "paper"
    assert default_recipe(tiny_vit) == "paper"


def test_build_applies_the_recipe(tiny_vit):
    default = registry.build("cocoop", tiny_vit, CLASSES, TEMPLATES)
    assert default.recipe == "paper" and default.config == registry.get("cocoop").Config()
    embedded = registry.build("cocoop", tiny_vit, CLASSES, TEMPLATES, {"n_ctx": "2"}, recipe="embedded")
    assert embedded.recipe == "embedded"
    assert (embedded.config.lr, embedded.config.batch_size, embedded.config.n_ctx) == (0.05, 4, 2)
    with pytest.raises(VlmeftError, match="unknown recipe"):
        registry.build("coop", tiny_vit, CLASSES, TEMPLATES, recipe="best")


# ------------------------------------------------------------------ schedules
def test_dassl_schedule_restarts_the_cosine_after_the_warm_up():
    """MaPLe's recipe, 5 epochs at lr 0.0035 after one warm-up epoch at 1e-5: Dassl trains
    at [1e-5, .0035, .00317, .00229, .00121]; the legacy schedule is one epoch ahead."""
    cls = registry.get("maple")
    paper, embedded = config_for(cls, "paper"), config_for(cls, "embedded")
    dassl = [lr_at(e, paper, 5) for e in range(5)]
    legacy = [lr_at(e, embedded, 5) for e in range(5)]
    assert dassl == pytest.approx([1e-5, 0.0035, 0.0031657, 0.0022907, 0.0012093], abs=1e-7)
    assert legacy == pytest.approx([1e-5, 0.0031657, 0.0022907, 0.0012093, 0.0003343], abs=1e-7)
    assert paper.schedule == "dassl" and embedded.schedule == "legacy"


def test_dassl_schedule_matches_dasslss_scheduler_rule():
    """The same numbers from the rule Dassl implements: torch's CosineAnnealingLR over
    MAX_EPOCH, held for the warm-up epochs and stepped once per epoch after them."""
    config = config_for(registry.get("coop"), "paper", {"epochs": "7", "warmup_epochs": "2", "lr": "0.5"})
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    expected = []
    for epoch in range(config.epochs):
        expected.append(config.warmup_lr if epoch < config.warmup_epochs else opt.param_groups[0]["lr"])
        if epoch >= config.warmup_epochs:
            opt.step()
            cosine.step()
    assert [lr_at(e, config) for e in range(config.epochs)] == pytest.approx(expected, rel=1e-9)


def test_cosine_steps_is_a_per_step_cosine_after_a_linear_warm_up():
    plain = config_for(registry.get("clip-lora"), "paper")  # no warm-up: torch's per-iteration cosine
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=plain.lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=12)
    expected = []
    for _ in range(12):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        cosine.step()
    assert [lr_at_step(s, 12, plain) for s in range(12)] == pytest.approx(expected, rel=1e-9)
    vp = config_for(registry.get("vp"), "paper", {"warmup_steps": "4"})  # VP's utils.cosine_lr
    lrs = [lr_at_step(s, 10, vp) for s in range(10)]
    assert lrs[:4] == pytest.approx([10.0, 20.0, 30.0, 40.0])
    assert lrs[4] == 40.0 and lrs[5] == pytest.approx(20 * (1 + math.cos(math.pi / 6)))


def test_steps_per_shot_fixes_the_number_of_steps(tiny_vit, tiny_task):
    config = config_for(registry.get("clip-adapter"), "embedded",
                        {"steps_per_shot": "3", "batch_size": "8", "epochs": "1"})
    shots = int(np.bincount(tiny_task.train.labels).max())
    assert plan(tiny_task.train.labels, config) == (math.ceil(3 * shots / (len(tiny_task.train) // 8)), 3 * shots)
    method = registry.build("clip-adapter", tiny_vit, tiny_task.classnames, tiny_task.templates,
                            {"steps_per_shot": "3", "batch_size": "8"}, seed=0, recipe="embedded")
    report = fit(method, tiny_task.train, None, seed=0, progress=False)
    assert report.steps == 3 * shots


# ------------------------------------------------------------------ selection
def _clip_adapter(tiny_vit, tiny_task, select):
    return registry.build("clip-adapter", tiny_vit, tiny_task.classnames, tiny_task.templates,
                          {"epochs": "4", "batch_size": "8", "select": select}, seed=0, recipe="embedded")


def test_select_last_keeps_the_final_state_and_never_reads_val(tiny_vit, tiny_task):
    with_val = _clip_adapter(tiny_vit, tiny_task, "last")
    report = fit(with_val, tiny_task.train, tiny_task.val, seed=1, progress=False)
    without_val = _clip_adapter(tiny_vit, tiny_task, "last")
    fit(without_val, tiny_task.train, None, seed=1, progress=False)
    assert report.best_epoch is None and report.best_val_accuracy is None
    assert all("val_accuracy" not in h for h in report.history)
    for a, b in zip(with_val.parameters(), without_val.parameters()):
        assert torch.equal(a, b)


def test_select_val_keeps_the_best_val_epoch(tiny_vit, tiny_task):
    method = _clip_adapter(tiny_vit, tiny_task, "val")
    report = fit(method, tiny_task.train, tiny_task.val, seed=1, progress=False)
    accs = [h["val_accuracy"] for h in report.history]
    assert report.best_epoch == max(i + 1 for i, a in enumerate(accs) if a == max(accs))  # ties: the later epoch
    assert evaluate(method, tiny_task.val) == pytest.approx(report.best_val_accuracy)


# ------------------------------------------------------------------ augmentation
def _striped(width: int = 96, height: int = 32) -> np.ndarray:
    """Red left third, green middle, blue right third: the eval transform's centre crop
    of the resized image keeps only green."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[:, : width // 3, 0] = 255
    img[:, width // 3 : 2 * width // 3, 1] = 255
    img[:, 2 * width // 3 :, 2] = 255
    return img


def _unit(batch: torch.Tensor, prep: Preprocess) -> torch.Tensor:
    return batch * torch.tensor(prep.std).view(1, -1, 1, 1) + torch.tensor(prep.mean).view(1, -1, 1, 1)


@pytest.fixture(scope="module")
def striped_splits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("striped")
    paths = []
    for i in range(4):
        Image.fromarray(_striped()).save(folder / f"{i}.png")
        paths.append(folder / f"{i}.png")
    labels = np.zeros(4, dtype=np.int64)
    return (Split(images=np.stack([_striped()] * 4), labels=labels, key="arrays"),
            Split(images=paths, labels=labels, key="paths"))


def test_augmentation_crops_the_original_image(striped_splits):
    prep = Preprocess(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    for split in striped_splits:
        plain = _unit(load_batch(split, range(4), prep), prep)
        assert plain[:, 0].max() < 0.1  # the centre crop of the resized image holds no red
        gen = torch.Generator().manual_seed(0)
        crops = torch.cat([_unit(load_augmented_batch(split, range(4), prep, gen, 0.08), prep) for _ in range(5)])
        assert crops.shape == (20, 3, 32, 32)
        assert crops[:, 0].amax(dim=(1, 2)).max() > 0.9  # some crop reaches the red third of the original


def test_augmentation_is_seeded_locally(striped_splits):
    split = striped_splits[1]
    prep = Preprocess(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    torch.manual_seed(7)
    state = torch.get_rng_state().clone()
    a = load_augmented_batch(split, range(4), prep, torch.Generator().manual_seed(1))
    b = load_augmented_batch(split, range(4), prep, torch.Generator().manual_seed(1))
    c = load_augmented_batch(split, range(4), prep, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is never drawn from


@pytest.mark.parametrize("low", [0.08, 0.5])
def test_crop_area_follows_the_scale(low):
    gen = torch.Generator().manual_seed(0)
    fractions = []
    for _ in range(400):
        top, left, h, w = crop_box(224, 224, gen, (low, 1.0))
        assert 0 <= top and top + h <= 224 and 0 <= left and left + w <= 224
        fractions.append(h * w / 224**2)
    assert min(fractions) >= low * 0.97 and max(fractions) <= 1.0  # rounding of the sides
    assert min(fractions) < low + 0.05 and max(fractions) > 0.9  # the whole range is used


def test_crop_falls_back_to_a_central_crop_when_nothing_fits():
    gen = torch.Generator().manual_seed(0)
    top, left, h, w = crop_box(4, 400, gen, (0.9, 1.0))  # ratio 100: no crop of 90% area fits 4:3
    assert (top, h) == (0, 4) and w == round(4 * 4 / 3) and left == (400 - w) // 2


def test_augmented_training_skips_the_cache_and_is_reproducible(tiny_vit, tiny_task):
    def trained():
        method = registry.build("clip-adapter", tiny_vit, tiny_task.classnames, tiny_task.templates,
                                {"epochs": "2", "batch_size": "8", "augment": "true"}, seed=0, recipe="embedded")
        return method, fit(method, tiny_task.train, None, seed=3, progress=False)

    (a, ra), (b, _) = trained(), trained()
    assert not ra.used_feature_cache
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


# ------------------------------------------------------------------ recorded everywhere
def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_prints_and_returns_the_recipe_and_saves_it_in_the_checkpoint(capsys, tmp_path):
    ckpt = tmp_path / "ckpt"
    code, out, err = _run(capsys, "run", "coop", "--task", "shapes", "--shots", "1", "--json", "--save", str(ckpt),
                          "--set", "epochs=1", "--set", "n_ctx=2", *TINY)
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert (result["recipe"], result["select"]) == ("paper", "last")  # a random-init tiny backbone: paper
    assert out.splitlines()[0].endswith("recipe paper (the default on vlmeft-tiny-vit)")
    assert json.loads((ckpt / "config.json").read_text())["recipe"] == "paper"

    code, out, err = _run(capsys, "eval", "coop", "--checkpoint", str(ckpt), "--task", "shapes", "--json")
    assert code == 0, err
    assert "recipe paper" in out and json.loads(out.strip().splitlines()[-1])["recipe"] == "paper"
    code, out, err = _run(capsys, "eval", "coop", "--checkpoint", str(ckpt), "--task", "shapes", "--recipe", "embedded")
    assert code == 2 and "trained with the paper recipe, not embedded" in err and len(err.strip().splitlines()) == 1


def test_run_recipe_and_select_flags(capsys):
    args = ("run", "coop", "--task", "shapes", "--shots", "1", "--json", "--set", "epochs=2", "--set", "n_ctx=2", *TINY)
    code, out, err = _run(capsys, *args, "--recipe", "embedded")
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert (result["recipe"], result["select"]) == ("embedded", "val") and result["best_epoch"] is not None
    assert out.splitlines()[0].endswith("recipe embedded")
    code, out, err = _run(capsys, *args, "--recipe", "embedded", "--select", "last")
    result = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and (result["select"], result["best_epoch"]) == ("last", None)
    code, _, err = _run(capsys, *args, "--select", "val", "--set", "select=last")
    assert code == 2 and "--select val contradicts --set select=last" in err
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--recipe", "fancy"])
    assert exit_.value.code == 2 and "invalid choice: 'fancy'" in capsys.readouterr().err


def test_a_checkpoint_from_before_recipes_loads_with_the_embedded_settings(tiny_vit, tmp_path):
    method = registry.build("coop", tiny_vit, CLASSES, TEMPLATES, {"n_ctx": "2"}, recipe="paper")
    checkpoint.save(method, tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    del meta["recipe"]
    for key in ("select", "schedule", "augment", "crop_scale", "warmup_steps", "steps_per_shot"):
        del meta["config"][key]
    (tmp_path / "config.json").write_text(json.dumps(meta))
    loaded = checkpoint.load(tmp_path, tiny_vit, method="coop")
    assert loaded.recipe is None
    assert (loaded.config.select, loaded.config.schedule, loaded.config.augment) == ("val", "legacy", False)
    meta["recipe"] = "best"
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(VlmeftError, match="field 'recipe' must be one of paper, embedded or null"):
        checkpoint.load(tmp_path, tiny_vit, method="coop")


def test_bench_rows_carry_the_recipe_and_only_a_non_embedded_recipe_renames_the_file(capsys, tmp_path):
    from dataclasses import replace

    full = get_profile("full")
    assert full.config_hash() == "8f8ebf94c51e"  # the committed results file's name
    assert replace(full, recipe="embedded").config_hash() == "8f8ebf94c51e"
    assert replace(full, recipe="paper").config_hash() != "8f8ebf94c51e"
    last = replace(full, overrides={**full.overrides, "*": {"select": "last"}})  # what --select last does
    assert last.config_hash() != full.config_hash()

    argv = ["bench", "--profile", "test", "--methods", "coop", "--tasks", "digits", "--shots", "1", "--seeds", "1",
            "--backbone", "vlmeft-tiny-vit", "--pretrained", "none", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "default")]) == 0
    assert main([*argv, "--out", str(tmp_path / "embedded"), "--recipe", "embedded", "--select", "last"]) == 0
    err = capsys.readouterr().err
    assert "recipe paper" in err and "recipe embedded" in err  # the start line names it
    (default_file,) = (tmp_path / "default").glob("*.json")
    (embedded_file,) = (tmp_path / "embedded").glob("*.json")
    default_rows = json.loads(default_file.read_text())["rows"]
    embedded_rows = json.loads(embedded_file.read_text())["rows"]
    assert {r["recipe"] for r in default_rows} == {"paper"}  # a tiny random backbone: the paper recipe
    assert {r["recipe"] for r in embedded_rows} == {"embedded"}
    assert [r["best_epoch"] for r in embedded_rows if r["method"] == "coop"] == [None]  # --select last
    assert json.loads(embedded_file.read_text())["config"]["overrides"]["*"] == {"select": "last"}


def test_the_report_never_averages_the_two_recipes():
    from vlmeft.bench.report import report_markdown

    def row(seed, accuracy, **extra):
        return {"schema": 1, "method": "coop", "task": "digits", "protocol": "few-shot", "shots": 4, "seed": seed,
                "backbone": "b", "backbone_weights": "w", "train_seconds": 0.0, "trainable_params": 0,
                "accuracy": accuracy, **extra}

    text = report_markdown([row(1, 0.5), row(2, 0.7, recipe="embedded"), row(1, 0.9, recipe="paper")])
    assert "# Backbone b (weights w)" in text and "# Backbone b (weights w (paper recipe))" in text
    assert "| coop | 60.0 ± 10.0 |" in text and "| coop | 90.0 |" in text  # old rows count as embedded
