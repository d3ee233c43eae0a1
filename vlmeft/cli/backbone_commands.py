"""`vlmeft backbone ...`: pretrain, evaluate and describe the embedded synthclip-tiny backbone."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlmeft.errors import VlmeftError


def register(sub) -> None:  # noqa: ANN001 (argparse's private subparsers type)
    p = sub.add_parser("backbone", help="pretrain, evaluate or describe the embedded synthclip-tiny backbone")
    bsub = p.add_subparsers(dest="backbone_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    from vlmeft.backbone.synthclip.recipe import Recipe  # torch-free: building the parser stays fast
    from vlmeft.cli.runtime_args import add_device_args

    d = Recipe()
    pt = bsub.add_parser("pretrain", help="contrastive pretraining on the procedural world (resumable)")
    pt.add_argument("--steps", type=int, default=d.steps)
    pt.add_argument("--batch-size", type=int, default=d.batch_size)
    pt.add_argument("--seed", type=int, default=d.seed)
    pt.add_argument("--lr", type=float, default=d.lr)
    pt.add_argument("--warmup", type=int, default=d.warmup)
    pt.add_argument("--pool-size", type=int, default=d.pool_size, help="images rendered once and sampled from")
    pt.add_argument("--threads", type=int, default=d.threads)
    pt.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    pt.add_argument("--out", type=Path, default=Path("runs/synthclip-tiny"))
    pt.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                    help="continue from OUT/checkpoint.pt when present (default: yes)")
    pt.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)  # simulates an interruption
    pt.add_argument("--no-progress", action="store_true")
    add_device_args(pt, default="cpu")  # the shipped weights were trained on the CPU
    pt.set_defaults(func=_pretrain)

    ev = bsub.add_parser("evaluate", help="zero-shot and linear-probe quality of the backbone on the named tasks")
    ev.add_argument("--weights", type=Path, default=None,
                    help="a folder with weights.json + safetensors (default: the shipped weights)")
    ev.add_argument("--tasks", default=None, help="comma-separated task names (default: all)")
    ev.add_argument("--json", action="store_true", help="print the results as JSON")
    ev.add_argument("--record", action="store_true",
                    help="also store the results under 'eval' in the weights folder's weights.json")
    add_device_args(ev, default="cpu")
    ev.set_defaults(func=_evaluate)

    ins = bsub.add_parser("install", help="copy a pretraining run's exported weights into the package")
    ins.add_argument("run", type=Path, help="the --out folder of a finished pretraining run")
    ins.set_defaults(func=_install)

    info = bsub.add_parser("info", help="config, parameter count and checksum of the shipped weights")
    info.add_argument("--weights", type=Path, default=None)
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=_info)


def _positive(name: str, value: int) -> None:
    if value is not None and value <= 0:
        raise VlmeftError(f"must be a positive integer, got {value}", where=f"--{name}")


def _pretrain(args) -> int:  # noqa: ANN001
    from vlmeft.backbone.synthclip.pretrain import Recipe, pretrain

    for name in ("steps", "batch_size", "pool_size", "threads", "checkpoint_every", "stop_after"):
        _positive(name.replace("_", "-"), getattr(args, name))
    if args.lr <= 0:
        raise VlmeftError(f"must be positive, got {args.lr}", where="--lr")
    if args.warmup < 0:
        raise VlmeftError(f"must be >= 0, got {args.warmup}", where="--warmup")
    recipe = Recipe(steps=args.steps, batch_size=args.batch_size, seed=args.seed, lr=args.lr, warmup=args.warmup,
                    pool_size=args.pool_size, threads=args.threads, checkpoint_every=args.checkpoint_every)
    from vlmeft.cli.runtime_args import device

    result = pretrain(recipe, args.out, resume=args.resume, stop_after=args.stop_after,
                      progress=not args.no_progress, log=lambda m: print(m, flush=True), device=device(args))
    if result["exported"]:
        print(f"wrote {args.out / result['file']} ({result['bytes']} bytes, sha256 {result['sha256']})")
    else:
        print(f"stopped at step {result['step']} of {recipe.steps}; rerun to resume")
    return 0


def _evaluate(args) -> int:  # noqa: ANN001
    from vlmeft.backbone.synthclip.evaluate import evaluate_backbone, format_report

    names = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    from vlmeft.cli.runtime_args import device

    results = evaluate_backbone(args.weights, names, device=device(args))
    print(json.dumps(results, indent=2) if args.json else format_report(results))
    if args.record:
        from vlmeft.backbone.synthclip.weights import record_eval

        print(f"recorded in {record_eval(args.weights, results)}")
    return 0


def _install(args) -> int:  # noqa: ANN001
    from vlmeft.backbone.synthclip.weights import install

    dest = install(args.run)
    print(f"installed {dest}")
    return 0


def _info(args) -> int:  # noqa: ANN001
    from vlmeft.backbone.synthclip import model_config, shipped_info

    info = shipped_info(args.weights)
    out = {"model": info.get("model"), "config": model_config(), "params": info.get("params"),
           "file": info["file"], "bytes": info.get("bytes"), "sha256": info["sha256"],
           "stored_token_rows": info.get("stored_token_rows"), "preprocess_cfg": info.get("preprocess_cfg"),
           "recipe": info.get("recipe"), "train": info.get("train"), "eval": info.get("eval")}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            if v is not None:
                print(f"{k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}")
    return 0
