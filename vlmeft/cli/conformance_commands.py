"""`vlmeft conformance`: run the executable taxonomy (signatures + generic checks).

Exit status: 0 when no cell fails, 1 when some cell fails, 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub) -> None:  # noqa: ANN001 (argparse's private subparsers type)
    from vlmeft.cli.runtime_args import add_device_args

    p = sub.add_parser(
        "conformance",
        help="check every implemented method against its category's behavioural signature",
        description="Run the conformance matrix: each record with its own implementation, on tiny real "
                    "backbones, against its taxonomy leaf's signature and the generic checks.",
    )
    p.add_argument("--format", choices=("table", "json", "markdown"), default="table", help="output format (default table)")
    p.add_argument("--backbone", action="append", metavar="NAME",
                   help="backbone to run on (repeatable; default: synthclip-tiny, vlmeft-tiny-vit, vlmeft-tiny-rn, "
                        "and synthcoca-tiny, vlmeft-tiny-coca for VQA and captioning methods)")
    p.add_argument("--method", action="append", metavar="ID",
                   help="only this record or registered method (repeatable); ID:VARIANT for one declared variant")
    p.add_argument("--write", metavar="DIR", help="also write DIR/conformance.json and DIR/conformance.md")
    p.add_argument("--kb", metavar="DIR", help="taxonomy folder to read (default: the shipped one)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch CPU threads (default 1: the probes run many tiny models, where threads cost more "
                        "than they give, most of all on a busy machine)")
    add_device_args(p, default="cpu")  # the committed matrix was computed on the CPU
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from vlmeft.conformance import report
    from vlmeft.conformance.matrix import DEFAULT_BACKBONES, run_matrix, shared_records, variants
    from vlmeft.kb.load import load_kb

    if args.threads < 1:
        from vlmeft.errors import VlmeftError

        raise VlmeftError(f"must be at least 1, got {args.threads}", where="--threads")
    from vlmeft.cli.runtime_args import device

    dev = str(device(args))
    kb = load_kb(args.kb)
    backbones = tuple(dict.fromkeys(args.backbone)) if args.backbone else None  # None: each kind's default
    methods = list(dict.fromkeys(args.method)) if args.method else None
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        cells, notes = run_matrix(kb, backbones, methods, device=dev)
    finally:
        torch.set_num_threads(threads)
    backbones = backbones or DEFAULT_BACKBONES  # how the report names the default matrix
    shared = shared_records(kb)
    doc = report.to_json(cells, notes, shared, variants(kb, methods),
                         fingerprint=report.fingerprint(kb, backbones, methods),
                         selection={"backbones": list(backbones), "methods": methods})
    if args.write:
        for path in report.write(args.write, cells, notes, shared, doc):
            print(f"wrote {path}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(doc, indent=1, ensure_ascii=False))
    elif args.format == "markdown":
        print(report.to_markdown(cells, notes, shared))
    else:
        print(report.to_table(cells))
    return 1 if any(c.status == "fail" for c in cells) else 0
