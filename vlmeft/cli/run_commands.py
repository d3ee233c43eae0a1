"""`vlmeft run`, `vlmeft eval`, `vlmeft params`, `vlmeft methods`: train and evaluate methods.

`run` measures one benchmark cell under one protocol of a task kind (:mod:`vlmeft.kinds`):
for the training protocols K shots per class for training, ``min(K, 4)`` for
validation (selection only), the full test split for the reported number, next to
zero-shot CLIP (``zsclip``) on the same test split (:mod:`vlmeft.data.protocol`). It
trains under a recipe (:mod:`vlmeft.recipes`): ``--recipe paper`` (the official
repository's) or ``embedded`` (synthclip-tiny's calibrations), by default the backbone's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from vlmeft.cli import runtime_args
from vlmeft.errors import VlmeftError

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


def _tasks_of(data: str) -> list[str]:
    """The embedded tasks of one data form (vlmeft.data.tasks.task_kind)."""
    from vlmeft.data.tasks import task_kind, task_names

    return [t for t in task_names() if task_kind(t) == data]


def methods_doing(purposes: str | tuple[str, ...]) -> list[str]:
    """Registered ids whose declared tasks include one of ``purposes`` (read off the classes)."""
    from vlmeft import registry

    wanted = {purposes} if isinstance(purposes, str) else set(purposes)
    return [n for n in registry.names() if wanted & set(registry.get(n).tasks)]


def _method_class(name: str, purpose: str | tuple[str, ...] = "classification"):  # noqa: ANN202
    from vlmeft import kinds, registry
    from vlmeft.data.tasks import DATA_NOUNS

    cls = registry.get(name)  # unknown ids raise with a suggestion
    purposes = (purpose,) if isinstance(purpose, str) else tuple(purpose)
    if not set(purposes) & set(cls.tasks):
        data = kinds.of_method(cls).data
        raise VlmeftError(
            f"method '{name}' does {', '.join(cls.tasks)} only, not {' or '.join(purposes)} (methods that do: "
            f"{', '.join(methods_doing(purposes))}); run it on a {DATA_NOUNS.get(data, data)}: "
            f"vlmeft run {name} --task {_tasks_of(data)[0]}"
        )
    return cls


def _check_task_name(name: str) -> None:
    """Unknown task names raise with the nearest known ones."""
    import difflib

    from vlmeft.data.tasks import is_task_name, task_names

    if name.startswith(("vqa-json:", "captions-json:")):
        if not is_task_name(name):
            raise VlmeftError(f"expected {name.split(':', 1)[0]}:PATH", where="--task")
        return
    if name.startswith(("imagefolder:", "coop:")):
        if not is_task_name(name):
            from vlmeft.data import coop

            if name.startswith("coop:"):
                coop.reader(name[5:])  # unknown: raises with the nearest ids
            raise VlmeftError("expected imagefolder:PATH", where="--task")
        return
    known = task_names()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise VlmeftError(f"unknown task '{name}'{hint}; tasks: {', '.join(known)}, imagefolder:PATH, coop:DATASET, "
                          "vqa-json:PATH, captions-json:PATH", where="--task")


def load_task(name: str):  # noqa: ANN201
    """A classification task by name (``imagefolder:PATH`` and ``coop:DATASET`` included);
    unknown names raise with the nearest known ones."""
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


@contextlib.contextmanager
def data_root(path: str | None) -> Iterator[None]:
    """``--data-root``: the CoOp datasets' root for this command (``VLMEFT_DATA`` while it
    runs, so worker processes inherit it); without it, ``VLMEFT_DATA`` as set."""
    if path is None:
        yield
        return
    from vlmeft.data.coop import ENV

    before = os.environ.get(ENV)
    os.environ[ENV] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


# --------------------------------------------------------------------- run
def _optimistic(cls):  # noqa: ANN001, ANN202
    """What a method class could do in principle (before building it): for the kinds'
    first, cheap fit check."""
    from vlmeft.bench.plan import Capabilities

    return Capabilities(tuple(cls.tasks), builds=True, uses_data=False, new_classes=True)


def _choose_protocol(cls, name: str, task: str, protocol: str | None):  # noqa: ANN001, ANN202
    """The task kind and protocol to run; the protocol's task and method checks, each a
    one-line error."""
    from vlmeft import kinds
    from vlmeft.data.tasks import DATA_NOUNS, task_kind

    data = task_kind(task)
    caps = _optimistic(cls)
    able = [k for k in kinds.all_kinds() if k.data == data
            and any(k.method_fits(caps, name, p.name) for p in k.protocols)]
    if not able:  # no protocol on this kind of task can ever take this kind of method
        purposes = tuple(k.name for k in kinds.all_kinds() if k.data == data)
        _method_class(name, purposes)
        raise VlmeftError(f"method '{name}' does {', '.join(cls.tasks)} only, not {' or '.join(purposes)} "
                          f"(methods that do: {', '.join(methods_doing(purposes))})", where="--task")
    if protocol is None:
        own = [kinds.get(t) for t in cls.tasks if t in {k.name for k in able}]
        if not own:
            default = kinds.of_method(cls)
            options = " or ".join(f"--protocol {p.name}" for k in able for p in k.protocols
                                  if k.method_fits(caps, name, p.name))
            raise VlmeftError(f"task '{task}' is a {DATA_NOUNS.get(data, data)}, not {default.title}: pass {options}",
                              where="--task")
        return own[0], own[0].protocols[0].name
    kind = kinds.for_protocol(protocol)
    if kind.data != data:
        examples = ", ".join(_tasks_of(kind.data))
        raise VlmeftError(f"protocol {protocol} runs on a {DATA_NOUNS.get(kind.data, kind.data)} ({examples}), "
                          f"not '{task}'", where="--task")
    return kind, protocol


def _check_fits(kind, name: str, protocol: str, backbone, overrides: dict[str, str]) -> None:  # noqa: ANN001
    """The method, built on this backbone, must fit the protocol (else: which methods do)."""
    from vlmeft import registry
    from vlmeft.bench import plan

    caps = plan.probe(name, backbone, overrides, from_profile=False)  # overrides: the user's --set
    if kind.method_fits(caps, name, protocol):
        return
    able = [m for m in registry.names() if kind.method_fits(plan.probe(m, backbone, {}), m, protocol)]
    why = f" ({caps.reason})" if caps.reason else ""
    raise VlmeftError(f"method '{name}' does not do {protocol} here{why}; methods that do: {', '.join(able)}")


def _tasks_for_run(args: argparse.Namespace, kind, protocol: str):  # noqa: ANN001, ANN202
    """``(cell task, task loader)``. A test-only task (ImageNet-A: ``source`` set) is
    measured by training on its source and testing on it alone."""
    from dataclasses import replace

    from vlmeft.data.tasks import get_task

    task = load_task(args.task) if args.task.startswith("imagefolder:") else get_task(args.task)  # uncached
    source_name = getattr(task, "source", "")
    if not source_name:
        if not kind.task_fits(lambda: task, protocol):
            raise VlmeftError(f"task '{args.task}' {kind.unfit_reason(task, protocol)}", where="--task")
        return args.task, (lambda name: task if name == args.task else get_task(name))
    source = load_task(source_name)
    fits = [p for p, names in source.targets.items() if args.task in names]
    if protocol not in fits:
        raise VlmeftError(f"'{args.task}' is a test-only dataset (the papers train on {source_name}); run it with "
                          f"{' or '.join(f'--protocol {p}' for p in fits)}", where="--protocol")
    alone = replace(source, targets={protocol: (args.task,)})
    return source_name, (lambda name: alone if name == source_name else task if name == args.task else get_task(name))


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
    with data_root(args.data_root):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """One benchmark cell, measured by the benchmark's own code and printed for a person."""
    from vlmeft import registry
    from vlmeft.bench.cells import CellRunner
    from vlmeft.bench.plan import Cell
    from vlmeft.engine import checkpoint

    args.method, args.stand_in = resolve_record(args.method)  # unknown ids raise with a suggestion
    if args.stand_in:
        print(args.stand_in["note"], flush=True)
    cls = registry.get(args.method)
    _check_task_name(args.task)
    overrides = _method_overrides(args)
    configured = cls.Config().apply_overrides(overrides)  # reject bad --set before any work
    device = runtime_args.device(args)
    overrides.update(runtime_args.precision_overrides(args, configured.precision, device, overrides))
    runtime_args.apply_workers(args)
    if args.save:
        checkpoint.refuse_overwrite(args.save, args.force)
    if args.protocol is None:  # a test-only task has its own default (the protocol that tests on it)
        source = _test_only_source(args.task)
        if source:
            args.protocol = next(p for p, names in load_task(source).targets.items() if args.task in names)
    kind, args.protocol = _choose_protocol(cls, args.method, args.task, args.protocol)
    trains = kind.protocol(args.protocol).trains
    if trains and args.shots <= 0:
        raise VlmeftError(f"shots must be positive, got {args.shots}", where="--shots")
    cell_task, loader = _tasks_for_run(args, kind, args.protocol)
    args.backbone = args.backbone or kind.backbone or DEFAULT_BACKBONE  # captioning and VQA: synthcoca-tiny
    backbone = runtime_args.load_backbone(args.backbone, args.pretrained, args)
    _check_fits(kind, args.method, args.protocol, backbone, overrides)

    runner = CellRunner(
        backbone,
        lambda name: overrides if name == args.method else {},  # --set is for the method under test
        task_loader=loader,
        progress=not args.no_progress,
        on_trained=(lambda method: checkpoint.save(method, args.save)) if args.save and trains else None,
        recipe=args.recipe,
        on_bad_image=args.on_bad_image,
    )
    cell = Cell(args.method, cell_task, args.protocol, args.shots if trains else 0, args.seed, backbone.name,
                backbone.weights_id)
    metrics, method, report = runner.measure(cell)
    lines, fields = kind.run_summary(runner, cell, metrics)
    result: dict[str, Any] = {"method": args.method, "task": args.task, "seed": args.seed, "backbone": backbone.name,
                              "pretrained": backbone.pretrained, "protocol": args.protocol, "recipe": runner.recipe,
                              "trainable_params": method.num_trainable(), "device": str(backbone.device),
                              "precision": method.config.precision, "warnings": list(backbone.warnings)}
    if args.stand_in:
        result["stand_in"] = args.stand_in
    if cell_task != args.task:
        result["source"] = cell_task
    if trains:
        result.update(shots=args.shots, select=method.config.select, train_seconds=round(report.train_seconds, 3), epochs=report.epochs,
                      steps=report.steps, best_epoch=report.best_epoch, best_val_accuracy=report.best_val_accuracy,
                      selected=report.selected, feature_cache=report.used_feature_cache)
        trained_on = f" (trained on {cell_task})" if cell_task != args.task else ""
        shots = "full data" if args.shots >= _full() else f"{args.shots} shots"
        head = [f"{args.method} on {args.task}{trained_on}: {shots}, seed {args.seed}, "
                f"backbone {backbone.name}, protocol {args.protocol}, "
                f"{_recipe_line(runner.recipe, args.recipe is not None, backbone.name)}"]
        kept = (f"; best val epoch {report.best_epoch}" if report.best_epoch
                else ("; last epoch kept" if report.steps else ""))
        tail = [f"trainable parameters: {result['trainable_params']:,}; train time {report.train_seconds:.1f} s{kept}"]
        if args.save:
            checkpoint.record_metrics(args.save, {k: v for k, v in {**result, **fields}.items() if k in _METRIC_KEYS})
            tail.append(f"saved checkpoint to {args.save}")
    else:
        head = [f"{args.method} on {args.task}: protocol {args.protocol}, backbone {backbone.name} (nothing trained)"]
        tail = []
    result.update(fields)
    if runner._skipped:
        result["skipped_images"] = sorted(runner._skipped)
        tail.append(f"skipped {len(runner._skipped)} unreadable image(s): {', '.join(sorted(runner._skipped))}")
    print("\n".join(head + lines + tail))
    if args.json:
        _emit_json(result)
    return 0


def _full() -> int:
    """The shots that mean "every training example" (``--shots full``; VQA and captioning)."""
    from vlmeft.kinds._generative import FULL

    return FULL


# What a checkpoint written by `run --save` records of its own measurement (model cards quote it).
_METRIC_KEYS = ("task", "protocol", "shots", "seed", "accuracy", "zero_shot_accuracy", "base_accuracy",
                "novel_accuracy", "hm", "shifted_mean")


def _test_only_source(name: str) -> str:
    """The source task of a test-only task (``coop:imagenet_a`` -> ``coop:imagenet``), else ''."""
    if not name.startswith("coop:"):
        return ""
    from vlmeft.data import coop

    return coop.source_of(name)


# -------------------------------------------------------------------- eval
def _cmd_eval(args: argparse.Namespace) -> int:
    with data_root(args.data_root):
        return _eval(args)


def _eval(args: argparse.Namespace) -> int:
    from vlmeft import kinds
    from vlmeft.data import protocol
    from vlmeft.data.tasks import task_kind
    from vlmeft.engine import evaluate

    data = task_kind(args.task)
    kind = next((k for k in kinds.generative_kinds() if k.data == data), None)
    if kind is not None:  # VQA and captioning
        _method_class(args.method, tuple(k.name for k in kinds.generative_kinds()))
        return _eval_generative(args, kind)
    _method_class(args.method)
    task = load_task(args.task)
    if args.subset != "all":
        base, novel = protocol.base_novel(task)
        task = base if args.subset == "base" else novel
    method, backbone, recipe = load_checkpoint(args, task.classnames, task.templates)
    split = task.test if args.domain is None else task.shifted.get(args.domain)
    if split is None:
        raise VlmeftError(f"task '{args.task}' has no domain '{args.domain}'; domains: "
                          f"{', '.join(sorted(task.shifted)) or 'none'}", where="--domain")
    acc = evaluate(method, split)
    print(f"{args.method} from {args.checkpoint} on {task.name} ({len(task.classnames)} classes, "
          f"{len(split)} images): accuracy {_pct(acc)}; recipe {recipe or 'not recorded'}")
    if args.json:
        _emit_json({"method": args.method, "task": args.task, "subset": args.subset, "domain": args.domain,
                    "checkpoint": str(args.checkpoint), "backbone": backbone.name, "recipe": recipe, "accuracy": acc,
                    "device": str(backbone.device), "precision": method.config.precision,
                    "warnings": list(backbone.warnings)})
    return 0


def _eval_generative(args: argparse.Namespace, kind: Any) -> int:
    """A VQA / captioning checkpoint scored on a generative task's test split (or a shifted one)."""
    from vlmeft.data.tasks import get_task

    _check_task_name(args.task)
    task = get_task(args.task)
    method, backbone, recipe = load_checkpoint(args)
    kind.check_task(task, backbone)
    split = task.test if args.domain is None else task.shifted.get(args.domain)
    if split is None:
        raise VlmeftError(f"task '{args.task}' has no domain '{args.domain}'; domains: "
                          f"{', '.join(sorted(task.shifted)) or 'none'}", where="--domain")
    method.check_generation([e.prompt for e in split.examples], kind.max_new(method.config),
                            where=f"--set {kind.length_setting()}")
    scores = {k: v for k, v in kind.score(method, split).items() if isinstance(v, float)}
    shown = "  ".join(f"{label} {kind.fmt(scores[key])}" for key, label in kind.metrics_shown())
    print(f"{args.method} from {args.checkpoint} on {args.task} ({len(split)} examples): {shown}; "
          f"recipe {recipe or 'not recorded'}")
    if args.json:
        _emit_json({"method": args.method, "task": args.task, "domain": args.domain, "checkpoint": str(args.checkpoint),
                    "backbone": backbone.name, "recipe": recipe, **scores, "device": str(backbone.device),
                    "precision": method.config.precision, "warnings": list(backbone.warnings)})
    return 0


def load_checkpoint(args: argparse.Namespace, classnames: list[str] | None = None,
                    templates: list[str] | None = None):  # noqa: ANN201
    """``(method, backbone, recipe)`` of ``--checkpoint`` for method ``args.method``, on the
    checkpoint's backbone unless ``--backbone`` / ``--pretrained`` say otherwise, on
    ``--device``, at ``--precision`` (eval and predict share this). ``--recipe``, where the
    command has it, states the recipe the caller expects: a checkpoint trained under the
    other one is refused."""
    import dataclasses

    from vlmeft.engine import checkpoint

    meta = checkpoint.read_config(args.checkpoint)
    where = f"{args.checkpoint}/{checkpoint.CONFIG_FILE}"
    if meta["method"] != args.method:
        raise VlmeftError(f"this checkpoint is for method '{meta['method']}', not '{args.method}'", where=where)
    recipe = meta.get("recipe")
    wanted = getattr(args, "recipe", None)
    if wanted is not None and recipe is not None and wanted != recipe:
        raise VlmeftError(f"this checkpoint was trained with the {recipe} recipe, not {wanted}", where=where)
    device = runtime_args.device(args)
    configured = str(meta["config"].get("precision", "fp32"))
    precision = runtime_args.precision_overrides(args, configured, device).get("precision")
    runtime_args.apply_workers(args)
    saved = meta["backbone"]
    name = args.backbone or saved.get("name")
    pretrained = args.pretrained if args.pretrained is not None else (saved.get("pretrained") or None)
    backbone = runtime_args.load_backbone(name, pretrained, args)
    method = checkpoint.load(args.checkpoint, backbone, classnames, templates, method=args.method)
    if precision is not None:  # evaluation at another precision than training: the tensors are the same
        method.config = dataclasses.replace(method.config, precision=precision)
    return method, backbone, recipe


# ------------------------------------------------------------------ params
def count_parameters(method_name: str, backbone_name: str, overrides: dict[str, str] | None = None,
                     num_classes: int = 10, shots: int = 16, device: str = "cpu") -> int:
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
    backbone = load_backbone(backbone_name, pretrained=None, device=device)
    classnames = [f"class {i}" for i in range(num_classes)]
    method = registry.build(method_name, backbone, classnames, ["a photo of a {}."], overrides, seed=0)
    if type(method).fit_cache is not Method.fit_cache:
        gen = torch.Generator().manual_seed(0)
        feats = F.normalize(torch.randn(shots * num_classes, backbone.embed_dim, generator=gen), dim=-1)
        labels = torch.arange(num_classes).repeat_interleave(shots)
        method.fit_cache(feats.to(backbone.device), labels.to(backbone.device))
    return method.num_trainable()


def _cmd_params(args: argparse.Namespace) -> int:
    from vlmeft import registry

    cls = registry.get(args.method)  # unknown ids raise with a suggestion
    n = count_parameters(args.method, args.backbone, _parse_sets(args.set), args.num_classes, args.shots,
                         device=runtime_args.device(args))
    setting = "" if "classification" not in cls.tasks else f" ({args.num_classes} classes, {args.shots} shots)"
    print(f"{args.method} on {args.backbone}{setting}: {n:,} trainable parameters")
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


def _shots(text: str) -> int:
    """``--shots``: a count, or ``full`` (every training example: VQA and captioning)."""
    if text.strip().lower() == "full":
        return _full()
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'full', got {text!r}") from None


# ---------------------------------------------------------------- register
def register(sub) -> None:  # noqa: ANN001 (argparse's private subparsers type)
    from vlmeft import kinds
    from vlmeft.recipes import RECIPES

    run = sub.add_parser("run", help="train a method on a few-shot task and evaluate it against zero-shot CLIP "
                                        "(or run retrieval / grounding on a scene task)")
    run.add_argument("method", help="registry id, e.g. coop (see `vlmeft methods`), or any record id (a record "
                                    "without code of its own runs its category's reference)")
    run.add_argument("--task", required=True,
                     help="task name (digits, shapes, ...), imagefolder:PATH or coop:DATASET (e.g. coop:oxford_pets)")
    run.add_argument("--shots", type=_shots, default=16,
                     help="training images per class (default 16); VQA and captioning: examples per question "
                          "type or image group, 'full' for the whole training split")
    run.add_argument("--seed", type=int, default=1, help="few-shot sampling and training seed (default 1)")
    run.add_argument("--backbone", default=None,
                     help=f"open_clip model name (default {DEFAULT_BACKBONE}; synthcoca-tiny for VQA and captioning)")
    run.add_argument("--pretrained", default="default",
                     help="weights: default (the embedded backbone's), an open_clip tag, a file (gelu:FILE for "
                          "GELU-trained weights), hf-hub:ORG/NAME, a transformers CLIP folder, or none (random)")
    run.add_argument("--save", metavar="DIR", help="write the trained adapter checkpoint here")
    run.add_argument("--force", action="store_true", help="overwrite a checkpoint already in --save DIR")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    run.add_argument("--recipe", choices=RECIPES, default=None,
                     help="training recipe: paper (the official repository's) or embedded (synthclip-tiny's "
                          "calibrations); default: embedded on synthclip-tiny, paper on any other backbone")
    run.add_argument("--select", choices=("last", "val"), default=None,
                     help="keep the last epoch (the papers') or the best on val (default: the recipe's)")
    run.add_argument("--protocol", choices=kinds.protocols(), default=None,
                     help="; ".join(f"{k.title}: {', '.join(p.name for p in k.protocols)}" for k in kinds.all_kinds())
                     + " (default: the first protocol of the method's own task kind that fits the task)")
    run.add_argument("--data-root", metavar="DIR", default=None,
                     help="where the CoOp datasets are (coop:DATASET tasks; default: $VLMEFT_DATA)")
    run.add_argument("--on-bad-image", choices=("error", "skip"), default="error",
                     help="an unreadable image ends the run naming its file (error, default) or is left out and "
                          "listed in the result (skip)")
    run.add_argument("--json", action="store_true", help="end with one JSON line of results")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    runtime_args.add_device_args(run, precision=True, workers=True)
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
    ev.add_argument("--data-root", metavar="DIR", default=None, help="where the CoOp datasets are (coop:DATASET)")
    ev.add_argument("--json", action="store_true")
    runtime_args.add_device_args(ev, precision=True, workers=True)
    ev.set_defaults(func=_cmd_eval)

    params = sub.add_parser("params", help="count a method's trainable parameters (random init, no weights)")
    params.add_argument("method")
    params.add_argument("--backbone", default=DEFAULT_BACKBONE)
    params.add_argument("--set", action="append", metavar="KEY=VALUE")
    params.add_argument("--num-classes", type=int, default=10)
    params.add_argument("--shots", type=int, default=16, help="cache size per class for cache-based methods")
    runtime_args.add_device_args(params, default="cpu")
    params.set_defaults(func=_cmd_params)

    methods = sub.add_parser("methods", help="list registered method ids")
    methods.add_argument("--json", action="store_true")
    methods.set_defaults(func=_cmd_methods)
