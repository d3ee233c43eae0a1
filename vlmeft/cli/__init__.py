"""The `vlmeft` command line.

Each group of subcommands lives in its own module and exposes
``register(subparsers) -> None``; every parser it adds sets ``func=handler`` where
``handler(args) -> int``. Handlers raise :class:`vlmeft.errors.VlmeftError` for bad
input; ``main`` prints it as one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vlmeft import __version__
from vlmeft.errors import VlmeftError

# The command modules, in help order. A fixed list: nothing registers itself on import.
COMMAND_MODULES = (
    "vlmeft.cli.kb_commands",  # list, show, cite, tree, validate, schema
    "vlmeft.cli.kb_release_commands",  # stats, changelog
    "vlmeft.cli.run_commands",  # run, eval, params, methods
    "vlmeft.cli.use_commands",  # predict, export
    "vlmeft.cli.backbone_commands",  # backbone pretrain / info / evaluate
    "vlmeft.cli.conformance_commands",  # conformance
    "vlmeft.cli.bench_commands",  # bench
    "vlmeft.cli.site_commands",  # site build / serve
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlmeft",
        description="Efficient fine-tuning of vision-language models: browse, cite and run.",
    )
    parser.add_argument("--version", action="version", version=f"vlmeft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except VlmeftError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
