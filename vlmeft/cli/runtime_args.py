"""The flags every command that builds a backbone shares, added in one place.

``add_device_args(parser)`` adds ``--device`` (and, where a command trains or predicts,
``--precision`` and ``--workers``); the handler then calls :func:`load_backbone`, which
resolves the device, loads the weights and prints how they resolved: a ``note:`` line
when a name changed (``ViT-B-16`` -> ``ViT-B-16-quickgelu``), a ``warning:`` line for
random weights. Building the parser imports no torch.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vlmeft.errors import VlmeftError

PRECISIONS = ("fp32", "bf16", "fp16")  # == vlmeft.engine.device.PRECISIONS, spelled out to stay torch-free


def add_device_args(parser: argparse.ArgumentParser, *, default: str = "auto", precision: bool = False,
                    workers: bool = False) -> None:
    parser.add_argument("--device", default=default,
                        help=f"auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps (default {default})")
    if precision:
        parser.add_argument("--precision", choices=PRECISIONS, default=None,
                            help="autocast precision: fp32, bf16 or fp16 (GPU only; with a loss scaler); "
                                 "default: the method's config")
    if workers:
        parser.add_argument("--workers", type=int, default=0, metavar="N",
                            help="processes decoding image files (default 0: in this process); in-memory "
                                 "tasks need none")


def device(args: argparse.Namespace) -> Any:
    """The ``torch.device`` of ``--device`` (bad input: one-line error)."""
    from vlmeft.engine.device import resolve_device

    return resolve_device(getattr(args, "device", "cpu"))


def apply_workers(args: argparse.Namespace) -> None:
    """Make ``--workers`` the process default of the data loader."""
    from vlmeft.engine.loader import check_workers, set_default_workers

    set_default_workers(check_workers(getattr(args, "workers", 0)))


def precision_overrides(args: argparse.Namespace, configured: str, dev: Any,
                        overrides: dict[str, str] | None = None) -> dict[str, str]:
    """``{"precision": ...}`` to add to a method's overrides, or ``{}``: ``--precision`` if
    given (checked against the device), else the config's own, unless it cannot run here
    (a recipe's fp16 on the CPU runs fp32, and a note says so)."""
    from vlmeft.engine.device import choose_precision

    requested = getattr(args, "precision", None)
    if requested is not None and overrides and overrides.get("precision", requested) != requested:
        raise VlmeftError(f"--precision {requested} contradicts --set precision={overrides['precision']}",
                          where="--precision")
    chosen, note = choose_precision(requested, configured, dev)
    if note:
        print(note, file=sys.stderr)
    return {"precision": chosen} if chosen != configured or requested is not None else {}


def load_backbone(name: str, pretrained: str | None, args: argparse.Namespace) -> Any:
    """The backbone on ``--device``, with its notes and warnings printed (stderr)."""
    from vlmeft.backbone import load_backbone as load

    backbone = load(name, pretrained, device=device(args))
    for line in (*backbone.notes, *backbone.warnings):
        print(line, file=sys.stderr)
    return backbone
