"""`vlmeft run`, `vlmeft eval`, `vlmeft params`, `vlmeft methods`: train and evaluate methods.

`run` follows the protocol of :mod:`vlmeft.data.protocol`: K shots per class for
training, ``min(K, 4)`` for validation (selection only), the full test split for the
reported number, next to zero-shot CLIP (``zsclip``) on the same test split. It trains
under a recipe (:mod:`vlmeft.recipes`): ``--recipe paper`` (the official repository's)
or ``embedded`` (synthclip-tiny's calibrations), by default the backbone's.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from vlmeft.errors import VlmeftError

PROTOCOLS = ("few-shot", "base-to-novel", "cross-domain", "retrieval", "grounding")
SCENE_PROTOCOLS = ("retrieval", "grounding")  # on a scene task; nothing is trained
# Spelled out (== vlmeft.backbone.DEFAULT_BACKBONE) so building the parser never imports torch.
DEFAULT_BACKBONE = "synthclip-tiny"


# ----------------------------------------------------------------- helpers
def _parse_sets(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise VlmeftError(f"expected key=value, got '{item}'", where="--set")
        out[key.strip()] = value.strip()
    return out


def _scene_tasks() -> list[str]:
    from vlmeft.data.tasks import task_kind, task_names

    return [t for t in task_names() if task_kind(t) == "scenes"]


def _method_class(name: str, purpose: str = "classification"):  # noqa: ANN202
    from vlmeft import registry

    cls = registry.get(name)  # unknown ids raise with a suggestion
    if purpose not in cls.tasks:
        raise VlmeftError(
            f"method '{name}' does {', '.join(cls.tasks)} only, not {purpose}; "
            f"run it on a scene task: vlmeft run {name} --task {_scene_tasks()[0]}"
        )
    return cls


def _check_task_name(name: str) -> None:
    """Unknown embedded task names raise with the nearest known ones."""
    import difflib

    from vlmeft.data.tasks import task_names

    known = task_names()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise VlmeftError(f"unknown task '{name}'{hint}; tasks: {', '.join(known)}, imagefolder:PATH", where="--task")


def load_task(name: str):  # noqa: ANN201
    """A classification task by name (``imagefolder:PATH`` included); unknown names
    raise with the nearest known ones."""
    from vlmeft.data.types import ClassificationTask

    if name.startswith("imagefolder:"):
        from vlmeft.data.imagefolder import load_imagefolder_task

        return load_imagefolder_task(name.split(":", 1)[1])
    from vlmeft.data.tasks import get_task

    _check_task_name(name)
    task = get_task(name)
    if not isinstance(task, ClassificationTask):
        raise VlmeftError(f"task '{name}' is a scene task, not image classification: pass --protocol retrieval "
                          "or --protocol grounding", where="--task")
    return task


def _method_overrides(args: argparse.Namespace) -> dict[str, str]:
    """``--set`` plus ``--select`` (which is ``--set select=...``; the two must agree)."""
    overrides = _parse_sets(args.set)
    select = getattr(args, "select", None)
    if select is not None:
        if overrides.get("select", select) != select:
            raise VlmeftError(f"--select {select} contradicts --set select={overrides['select']}", where="--select")
        overrides["select"] = select
    return overrides


def _recipe_line(recipe: str, chosen: bool, backbone: str) -> str:
    return f"recipe {recipe}" + ("" if chosen else f" (the default on {backbone})")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _emit_json(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, sort_keys=True))


# --------------------------------------------------------------------- run
def resolve_record(name: str) -> tuple[str, dict[str, str] | None]:
    """The implementation that runs for id ``name``: a registered id runs itself; a
    knowledge-base record runs the implementation it links to. Returns the registry id
    and, when another implementation stands in, what stands in and why (None otherwise)."""
    from vlmeft import registry

    if registry.is_registered(name):
        return name, None
    from vlmeft.kb.load import load_kb

    rec = load_kb().methods.get(name)
    if rec is None:
        registry.get(name)  # unknown everywhere: the registry's error, with its suggestions
    impl = rec.implementation
    if impl is None:
        raise VlmeftError(f"'{name}' is a {rec.paradigm} record with no implementation to run")
    if impl.fidelity == "category-reference":
        why = (f"{name} has no implementation of its own; running its category's reference, "
               f"{impl.id} ({rec.category})")
    else:
        why = f"{name} runs the implementation {impl.id} (fidelity {impl.fidelity})"
    return impl.id, {"record": name, "implementation": impl.id, "category": rec.category or "baseline",
                     "fidelity": impl.fidelity, "note": why}


def _cmd_run(args: argparse.Namespace) -> int:
    """One benchmark cell, measured by the benchmark's own code and printed for a person."""
    from vlmeft import registry
    from vlmeft.backbone import load_backbone
    from vlmeft.bench.cells import CellRunner
    from vlmeft.bench.plan import Cell
    from vlmeft.engine import checkpoint

    args.method, args.stand_in = resolve_record(args.method)  # unknown ids raise with a suggestion
    if args.stand_in:
        print(args.stand_in["note"], flush=True)
    cls = registry.get(args.method)
    if args.protocol is None:  # a grounding-only method has one protocol
        args.protocol = "grounding" if "classification" not in cls.tasks and "grounding" in cls.tasks else "few-shot"
    overrides = _method_overrides(args)
    cls.Config().apply_overrides(overrides)  # reject bad --set before any work
    if args.protocol in SCENE_PROTOCOLS:
        return _run_scene(args, overrides)
    _method_class(args.method)
    if args.shots <= 0:
        raise VlmeftError(f"shots must be positive, got {args.shots}", where="--shots")
    task = load_task(args.task)
    backbone = load_backbone(args.backbone, args.pretrained)
    if args.protocol == "cross-domain" and not task.shifted:
        raise VlmeftError(f"task '{args.task}' has no shifted test domains for cross-domain evaluation", where="--task")

    runner = CellRunner(
        backbone,
        lambda name: overrides if name == args.method else {},  # --set is for the method under test
        task_loader=lambda name: task,
        progress=not args.no_progress,
        on_trained=(lambda method: checkpoint.save(method, args.save)) if args.save else None,
        recipe=args.recipe,
    )
    cell = Cell(args.method, args.task, args.protocol, args.shots, args.seed, backbone.name, backbone.weights_id)
    metrics, method, report = runner.measure(cell)

    result: dict[str, Any] = {
        "method": args.method,
        "task": args.task,
        "shots": args.shots,
        "seed": args.seed,
        "backbone": backbone.name,
        "pretrained": backbone.pretrained,
        "protocol": args.protocol,
        "recipe": runner.recipe,
        "select": method.config.select,
        "trainable_params": method.num_trainable(),
        "train_seconds": round(report.train_seconds, 3),
        "epochs": report.epochs,
        "steps": report.steps,
        "best_epoch": report.best_epoch,
        "best_val_accuracy": report.best_val_accuracy,
        "selected": report.selected,
        "feature_cache": report.used_feature_cache,
    }
    if args.stand_in:
        result["stand_in"] = args.stand_in
    lines = [f"{args.method} on {args.task}: {args.shots} shots, seed {args.seed}, backbone {backbone.name}, "
             f"protocol {args.protocol}, {_recipe_line(runner.recipe, args.recipe is not None, backbone.name)}"]
    if args.protocol == "base-to-novel":
        m = metrics
        result.update(accuracy=m["hm"], zero_shot_accuracy=m["zero_shot_hm"], base_accuracy=m["base"],
                      novel_accuracy=m["novel"], hm=m["hm"], zero_shot_base_accuracy=m["zero_shot_base"],
                      zero_shot_novel_accuracy=m["zero_shot_novel"], zero_shot_hm=m["zero_shot_hm"])
        lines += [f"zero-shot: base {_pct(m['zero_shot_base'])}  novel {_pct(m['zero_shot_novel'])}  "
                  f"HM {_pct(m['zero_shot_hm'])}",
                  f"adapted:   base {_pct(m['base'])}  novel {_pct(m['novel'])}  HM {_pct(m['hm'])}"]
    else:
        result.update(accuracy=metrics["accuracy"], zero_shot_accuracy=metrics["zero_shot_accuracy"])
        lines += [f"zero-shot accuracy: {_pct(metrics['zero_shot_accuracy'])}",
                  f"adapted accuracy:   {_pct(metrics['accuracy'])}"]
        if args.protocol == "cross-domain":
            domains, zs_domains = metrics["domains"], metrics["zero_shot_domains"]
            for dom in sorted(domains):
                lines.append(f"  {dom}: zero-shot {_pct(zs_domains[dom])}  adapted {_pct(domains[dom])}")
            result.update(domain_accuracy=domains, zero_shot_domain_accuracy=zs_domains,
                          shifted_mean=metrics["shifted_mean"])
    kept = f"; best val epoch {report.best_epoch}" if report.best_epoch else ("; last epoch kept" if report.steps else "")
    lines.append(f"trainable parameters: {result['trainable_params']:,}; train time {report.train_seconds:.1f} s{kept}")
    if args.save:
        lines.append(f"saved checkpoint to {args.save}")
    print("\n".join(lines))
    if args.json:
        _emit_json(result)
    return 0


def _run_scene(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    """Retrieval or grounding on a scene task: nothing trains, so shots do not apply."""
    from vlmeft import registry
    from vlmeft.backbone import load_backbone
    from vlmeft.bench import plan
    from vlmeft.bench.cells import CellRunner
    from vlmeft.bench.plan import Cell
    from vlmeft.data.tasks import get_task

    scenes = _scene_tasks()
    if args.task not in scenes:
        if not args.task.startswith("imagefolder:"):
            _check_task_name(args.task)
        _method_class(args.method)  # a grounding-only method says so first
        raise VlmeftError(f"protocol {args.protocol} runs on a scene task ({', '.join(scenes)}), not '{args.task}'",
                          where="--task")
    backbone = load_backbone(args.backbone, args.pretrained)
    caps = plan.probe(args.method, backbone, overrides)
    if not plan.method_fits(caps, args.method, args.protocol):
        able = [m for m in registry.names() if plan.method_fits(plan.probe(m, backbone, {}), m, args.protocol)]
        why = f" ({caps.reason})" if caps.reason else ""
        raise VlmeftError(f"method '{args.method}' does not do {args.protocol} here{why}; methods that do: "
                          f"{', '.join(able)}")
    runner = CellRunner(backbone, lambda name: overrides if name == args.method else {}, progress=not args.no_progress,
                        recipe=args.recipe)
    cell = Cell(args.method, args.task, args.protocol, 0, args.seed, backbone.name, backbone.weights_id)
    metrics, method, _ = runner.measure(cell)
    result: dict[str, Any] = {"method": args.method, "task": args.task, "seed": args.seed, "backbone": backbone.name,
                              "pretrained": backbone.pretrained, "protocol": args.protocol, "recipe": runner.recipe,
                              "trainable_params": method.num_trainable(), **metrics}
    if args.stand_in:
        result["stand_in"] = args.stand_in
    lines = [f"{args.method} on {args.task}: protocol {args.protocol}, backbone {backbone.name} (nothing trained)"]
    if args.protocol == "grounding":
        n = len(get_task(args.task).grounding)
        lines.append(f"grounding accuracy: {_pct(metrics['accuracy'])} of {n} referring expressions "
                     f"(a random box: {_pct(metrics['chance'])})")
        if args.method != "zsclip":  # the zero-shot reference: crop each box and compare
            zs, _, _ = runner.measure(Cell("zsclip", args.task, "grounding", 0, args.seed, backbone.name,
                                           backbone.weights_id))
            result["zero_shot_accuracy"] = zs["accuracy"]
            lines.append(f"zero-shot CLIP, crop and compare: {_pct(zs['accuracy'])}")
    else:
        lines += [f"image->text R@1 {_pct(metrics['i2t_r1'])}  R@5 {_pct(metrics['i2t_r5'])}",
                  f"text->image R@1 {_pct(metrics['t2i_r1'])}  R@5 {_pct(metrics['t2i_r5'])}"]
    print("\n".join(lines))
    if args.json:
        _emit_json(result)
    return 0


# -------------------------------------------------------------------- eval
def _cmd_eval(args: argparse.Namespace) -> int:
    from vlmeft.backbone import load_backbone
    from vlmeft.data import protocol
    from vlmeft.engine import checkpoint, evaluate

    _method_class(args.method)
    meta = checkpoint.read_config(args.checkpoint)
    where = f"{args.checkpoint}/{checkpoint.CONFIG_FILE}"
    if meta["method"] != args.method:
        raise VlmeftError(f"this checkpoint is for method '{meta['method']}', not '{args.method}'", where=where)
    # A checkpoint's tensors were trained under one recipe: --recipe states what the
    # caller expects, and a checkpoint of the other recipe is refused.
    recipe = meta.get("recipe")
    if args.recipe is not None and recipe is not None and args.recipe != recipe:
        raise VlmeftError(f"this checkpoint was trained with the {recipe} recipe, not {args.recipe}", where=where)
    task = load_task(args.task)
    if args.subset != "all":
        base, novel = protocol.base_novel(task)
        task = base if args.subset == "base" else novel
    saved = meta["backbone"]
    name = args.backbone or saved.get("name")
    pretrained = args.pretrained if args.pretrained is not None else (saved.get("pretrained") or None)
    backbone = load_backbone(name, pretrained)
    method = checkpoint.load(args.checkpoint, backbone, task.classnames, task.templates, method=args.method)
    split = task.test if args.domain is None else task.shifted.get(args.domain)
    if split is None:
        raise VlmeftError(f"task '{args.task}' has no domain '{args.domain}'; domains: "
                          f"{', '.join(sorted(task.shifted)) or 'none'}", where="--domain")
    acc = evaluate(method, split)
    print(f"{args.method} from {args.checkpoint} on {task.name} ({len(task.classnames)} classes, "
          f"{len(split)} images): accuracy {_pct(acc)}; recipe {recipe or 'not recorded'}")
    if args.json:
        _emit_json({"method": args.method, "task": args.task, "subset": args.subset, "domain": args.domain,
                    "checkpoint": str(args.checkpoint), "backbone": backbone.name, "recipe": recipe, "accuracy": acc})
    return 0


# ------------------------------------------------------------------ params
def count_parameters(method_name: str, backbone_name: str, overrides: dict[str, str] | None = None,
                     num_classes: int = 10, shots: int = 16) -> int:
    """Trainable parameters of ``method_name`` on a random-init ``backbone_name``.
    Cache-based methods first get a cache of random features (``shots x classes``)."""
    import torch
    import torch.nn.functional as F

    from vlmeft import registry
    from vlmeft.backbone import load_backbone
    from vlmeft.method import Method

    cls = registry.get(method_name)
    cls.Config().apply_overrides(overrides or {})
    if num_classes < 1 or shots < 1:
        raise VlmeftError("--num-classes and --shots must be positive")
    backbone = load_backbone(backbone_name, pretrained=None)
    classnames = [f"class {i}" for i in range(num_classes)]
    method = registry.build(method_name, backbone, classnames, ["a photo of a {}."], overrides, seed=0)
    if type(method).fit_cache is not Method.fit_cache:
        gen = torch.Generator().manual_seed(0)
        feats = F.normalize(torch.randn(shots * num_classes, backbone.embed_dim, generator=gen), dim=-1)
        labels = torch.arange(num_classes).repeat_interleave(shots)
        method.fit_cache(feats.to(backbone.device), labels.to(backbone.device))
    return method.num_trainable()


def _cmd_params(args: argparse.Namespace) -> int:
    _method_class(args.method)
    n = count_parameters(args.method, args.backbone, _parse_sets(args.set), args.num_classes, args.shots)
    print(f"{args.method} on {args.backbone} ({args.num_classes} classes, {args.shots} shots): "
          f"{n:,} trainable parameters")
    print(n)
    return 0


# ----------------------------------------------------------------- methods
FLAGS = ("training_free", "frozen_image_path", "requires_vision_tokens")


def _cmd_methods(args: argparse.Namespace) -> int:
    """Every registered id, built-in or installed through the ``vlmeft.methods`` entry
    points. Each is imported: one that does not import is listed as broken (exit 1)."""
    from vlmeft import registry

    rows = []
    for name in registry.names():
        entry = registry.entry(name)
        try:
            cls = registry.get(name)
        except Exception as err:  # noqa: BLE001 (reported per method, and the exit status says so)
            rows.append((name, entry.category or "-", entry.origin, f"broken: {type(err).__name__}: {err}", []))
            continue
        rows.append((name, cls.category, entry.origin, "ok", sorted(f for f in FLAGS if getattr(cls, f))))
    problems = registry.problems()
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if args.json:
        _emit_json({n: {"category": c, "origin": o, "status": s, "flags": f} for n, c, o, s, f in rows})
    else:
        width = max(len(r[0]) for r in rows)
        for name, category, origin, status, _ in rows:
            print(f"{name:<{width}}  {category:<28}  {origin}" + ("" if status == "ok" else f"  {status}"))
    return 1 if problems or any(r[3] != "ok" for r in rows) else 0


# ---------------------------------------------------------------- register
def register(sub) -> None:  # noqa: ANN001 (argparse's private subparsers type)
    from vlmeft.recipes import RECIPES

    run = sub.add_parser("run", help="train a method on a few-shot task and evaluate it against zero-shot CLIP "
                                        "(or run retrieval / grounding on a scene task)")
    run.add_argument("method", help="registry id, e.g. coop (see `vlmeft methods`), or any record id (a record "
                                    "without code of its own runs its category's reference)")
    run.add_argument("--task", required=True, help="task name (digits, shapes, ...) or imagefolder:PATH")
    run.add_argument("--shots", type=int, default=16, help="training images per class (default 16)")
    run.add_argument("--seed", type=int, default=1, help="few-shot sampling and training seed (default 1)")
    run.add_argument("--backbone", default=DEFAULT_BACKBONE, help=f"open_clip model name (default {DEFAULT_BACKBONE})")
    run.add_argument("--pretrained", default="default", help="weights: default, none, an open_clip tag or a file path")
    run.add_argument("--save", metavar="DIR", help="write the trained adapter checkpoint here")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    run.add_argument("--recipe", choices=RECIPES, default=None,
                     help="training recipe: paper (the official repository's) or embedded (synthclip-tiny's "
                          "calibrations); default: embedded on synthclip-tiny, paper on any other backbone")
    run.add_argument("--select", choices=("last", "val"), default=None,
                     help="keep the last epoch (the papers') or the best on val (default: the recipe's)")
    run.add_argument("--protocol", choices=PROTOCOLS, default=None,
                     help="few-shot (default), base-to-novel or cross-domain on a classification task; retrieval "
                          "or grounding on a scene task (default for grounding-only methods)")
    run.add_argument("--json", action="store_true", help="end with one JSON line of results")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.set_defaults(func=_cmd_run)

    ev = sub.add_parser("eval", help="evaluate a saved checkpoint on a task (any class list)")
    ev.add_argument("method")
    ev.add_argument("--checkpoint", required=True, metavar="DIR")
    ev.add_argument("--task", required=True)
    ev.add_argument("--subset", choices=("all", "base", "novel"), default="all", help="classes of the task to use")
    ev.add_argument("--domain", default=None, help="a shifted test domain of the task instead of its test split")
    ev.add_argument("--backbone", default=None, help="default: the checkpoint's backbone")
    ev.add_argument("--pretrained", default=None, help="default: the checkpoint's weights")
    ev.add_argument("--recipe", choices=RECIPES, default=None,
                    help="the recipe the checkpoint must have been trained with (refused otherwise)")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=_cmd_eval)

    params = sub.add_parser("params", help="count a method's trainable parameters (random init, no weights)")
    params.add_argument("method")
    params.add_argument("--backbone", default=DEFAULT_BACKBONE)
    params.add_argument("--set", action="append", metavar="KEY=VALUE")
    params.add_argument("--num-classes", type=int, default=10)
    params.add_argument("--shots", type=int, default=16, help="cache size per class for cache-based methods")
    params.set_defaults(func=_cmd_params)

    methods = sub.add_parser("methods", help="list registered method ids")
    methods.add_argument("--json", action="store_true")
    methods.set_defaults(func=_cmd_methods)
