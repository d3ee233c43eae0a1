"""`vlmeft backbone ...`: pretrain, evaluate and describe the embedded backbones (synthclip-tiny,
the default CLIP, and synthcoca-tiny, the embedded captioner)."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from vlmeft.errors import VlmeftError

# Each embedded backbone is one package: recipe (torch-free), pretrain, weights, evaluate.
MODELS = {"synthclip-tiny": "vlmeft.backbone.synthclip", "synthcoca-tiny": "vlmeft.backbone.synthcoca"}
# Recipe fields settable from the command line (the others are fixed by the model's recipe).
_FLAGS = ("steps", "batch_size", "seed", "lr", "warmup", "pool_size", "threads", "checkpoint_every", "qa_fraction")


def _part(model: str, name: str):  # noqa: ANN202
    return importlib.import_module(f"{MODELS[model]}.{name}")


def register(sub) -> None:  # noqa: ANN001 (argparse's private subparsers type)
    p = sub.add_parser("backbone", help="pretrain, evaluate or describe the embedded backbones "
                                        "(synthclip-tiny, synthcoca-tiny)")
    bsub = p.add_subparsers(dest="backbone_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    from vlmeft.backbone.synthclip.recipe import Recipe  # torch-free: building the parser stays fast
    from vlmeft.cli.runtime_args import add_device_args

    d = Recipe()
    model_help = "which embedded backbone (default synthclip-tiny)"
    pt = bsub.add_parser("pretrain", help="pretraining on the procedural world (resumable); synthclip-tiny: "
                                          "contrastive; synthcoca-tiny: contrastive + captioning + questions")
    pt.add_argument("--model", choices=tuple(MODELS), default="synthclip-tiny", help=model_help)
    pt.add_argument("--steps", type=int, default=None, help=f"default: the model's recipe ({d.steps} for synthclip-tiny)")
    pt.add_argument("--batch-size", type=int, default=None, help="default: the model's recipe")
    pt.add_argument("--seed", type=int, default=None)
    pt.add_argument("--lr", type=float, default=None)
    pt.add_argument("--warmup", type=int, default=None)
    pt.add_argument("--pool-size", type=int, default=None, help="world samples drawn from (rendered lazily)")
    pt.add_argument("--qa-fraction", type=float, default=None,
                    help="synthcoca-tiny: share of batch rows holding a question about the image's facts")
    pt.add_argument("--threads", type=int, default=None)
    pt.add_argument("--checkpoint-every", type=int, default=None)
    pt.add_argument("--out", type=Path, default=None, help="default: runs/MODEL")
    pt.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                    help="continue from OUT/checkpoint.pt when present (default: yes)")
    pt.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)  # simulates an interruption
    pt.add_argument("--no-progress", action="store_true")
    add_device_args(pt, default="cpu")  # the shipped weights were trained on the CPU
    pt.set_defaults(func=_pretrain)

    ev = bsub.add_parser("evaluate", help="the quality bar: zero-shot against a trivial baseline and against "
                                          "adaptation, on the embedded tasks")
    ev.add_argument("--model", choices=tuple(MODELS), default="synthclip-tiny", help=model_help)
    ev.add_argument("--weights", type=Path, default=None,
                    help="a folder with weights.json + safetensors (default: the shipped weights)")
    ev.add_argument("--tasks", default=None, help="comma-separated task names (default: all of the model's)")
    ev.add_argument("--json", action="store_true", help="print the results as JSON")
    ev.add_argument("--record", action="store_true",
                    help="also store the results under 'eval' in the weights folder's weights.json")
    add_device_args(ev, default="cpu")
    ev.set_defaults(func=_evaluate)

    ins = bsub.add_parser("install", help="copy a pretraining run's exported weights into the package")
    ins.add_argument("run", type=Path, help="the --out folder of a finished pretraining run")
    ins.add_argument("--model", choices=tuple(MODELS), default="synthclip-tiny", help=model_help)
    ins.set_defaults(func=_install)

    info = bsub.add_parser("info", help="config, parameter count and checksum of the shipped weights")
    info.add_argument("--model", choices=tuple(MODELS), default="synthclip-tiny", help=model_help)
    info.add_argument("--weights", type=Path, default=None)
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=_info)


def _positive(name: str, value: int) -> None:
    if value is not None and value <= 0:
        raise VlmeftError(f"must be a positive integer, got {value}", where=f"--{name}")


def _pretrain(args) -> int:  # noqa: ANN001
    from dataclasses import fields, replace

    recipe_cls = _part(args.model, "recipe").Recipe
    known = {f.name for f in fields(recipe_cls)}
    given = {k: getattr(args, k) for k in _FLAGS if getattr(args, k) is not None}
    for k in given:
        if k not in known:
            raise VlmeftError(f"{args.model} has no such setting", where=f"--{k.replace('_', '-')}")
    recipe = replace(recipe_cls(), **given)
    for name in ("steps", "batch_size", "pool_size", "threads", "checkpoint_every"):
        _positive(name.replace("_", "-"), getattr(recipe, name))
    _positive("stop-after", args.stop_after)
    if recipe.lr <= 0:
        raise VlmeftError(f"must be positive, got {recipe.lr}", where="--lr")
    if recipe.warmup < 0:
        raise VlmeftError(f"must be >= 0, got {recipe.warmup}", where="--warmup")
    if not 0.0 <= getattr(recipe, "qa_fraction", 0.0) <= 1.0:
        raise VlmeftError(f"must lie in [0, 1], got {recipe.qa_fraction}", where="--qa-fraction")
    out = args.out or Path("runs") / args.model
    from vlmeft.cli.runtime_args import device

    result = _part(args.model, "pretrain").pretrain(recipe, out, resume=args.resume, stop_after=args.stop_after,
                                                    progress=not args.no_progress, log=lambda m: print(m, flush=True),
                                                    device=device(args))
    if result["exported"]:
        print(f"wrote {out / result['file']} ({result['bytes']} bytes, sha256 {result['sha256']})")
    else:
        print(f"stopped at step {result['step']} of {recipe.steps}; rerun to resume")
    return 0


def _evaluate(args) -> int:  # noqa: ANN001
    evaluate = _part(args.model, "evaluate")
    names = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    from vlmeft.cli.runtime_args import device

    results = evaluate.evaluate_backbone(args.weights, names, device=device(args))
    print(json.dumps(results, indent=2) if args.json else evaluate.format_report(results))
    if args.record:
        print(f"recorded in {_part(args.model, 'weights').record_eval(args.weights, results)}")
    return 0


def _install(args) -> int:  # noqa: ANN001
    dest = _part(args.model, "weights").install(args.run)
    print(f"installed {dest}")
    return 0


def _info(args) -> int:  # noqa: ANN001
    info = _part(args.model, "weights").shipped_info(args.weights)
    out = {"model": info.get("model"), "config": _part(args.model, "paths").model_config(), "params": info.get("params"),
           "file": info["file"], "bytes": info.get("bytes"), "sha256": info["sha256"]}
    out.update({k: v for k, v in info.items() if k.startswith(("stored_token", "untrained")) or k in
                ("preprocess_cfg", "recipe", "train", "eval")})
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            if v is not None:
                print(f"{k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}")
    return 0
