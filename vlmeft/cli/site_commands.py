"""`vlmeft site build` and `vlmeft site serve`: the offline docs site."""

from __future__ import annotations

import argparse
from pathlib import Path


def _build(args: argparse.Namespace) -> int:
    from vlmeft.sitegen.build import build_site

    out = build_site(taxonomy=args.taxonomy, out=args.out, results_dir=args.results)
    print(f"built {out} (open it with: vlmeft site serve --dir {out})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from vlmeft.sitegen.build import REPO_ROOT, build_site, serve_forever

    site_dir = args.dir or REPO_ROOT / "build" / "site"
    if args.build:
        build_site(out=site_dir)
    serve_forever(site_dir, args.port)
    return 0


def register(sub) -> None:  # noqa: ANN001
    site = sub.add_parser("site", help="build or serve the offline documentation site")
    site_sub = site.add_subparsers(dest="site_command", metavar="SUBCOMMAND")
    site.set_defaults(func=lambda _args: site.print_help() or 2)

    build = site_sub.add_parser("build", help="generate pages from the KB and results, then mkdocs build --strict")
    build.add_argument("--out", type=Path, default=None, help="output folder (default: build/site)")
    build.add_argument("--taxonomy", type=Path, default=None, help="taxonomy folder (default: the shipped KB)")
    build.add_argument("--results", type=Path, default=None, help="results folder (default: results/)")
    build.set_defaults(func=_build)

    serve = site_sub.add_parser("serve", help="serve the built site on 127.0.0.1")
    serve.add_argument("--dir", type=Path, default=None, help="built site folder (default: build/site)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    serve.add_argument("--build", action="store_true", help="build the site first")
    serve.set_defaults(func=_serve)
