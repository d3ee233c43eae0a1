"""`vlmeft predict` and `vlmeft export`: using a trained method after `vlmeft run --save`."""

from __future__ import annotations

import argparse
from pathlib import Path

from vlmeft.cli import runtime_args
from vlmeft.errors import VlmeftError


# ----------------------------------------------------------------- predict
class _IntermixedParser(argparse.ArgumentParser):
    """Positionals may follow options, as in ``predict ID --checkpoint DIR a.png b.png``
    (plain argparse takes every positional at the first run of them)."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201 (argparse's signature)
        if self._inside:
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def _image_paths(args: argparse.Namespace) -> list[Path]:
    """The images to classify: the IMAGE arguments, or the images of ``--folder``; each
    opened (header only) so that a file that is not an image fails before any work."""
    from PIL import Image, UnidentifiedImageError

    from vlmeft.data.imagefolder import IMAGE_SUFFIXES

    if bool(args.images) == bool(args.folder):
        raise VlmeftError("give image files or --folder DIR (one of the two)", where="predict")
    if args.folder:
        folder = Path(args.folder)
        if not folder.is_dir():
            raise VlmeftError("folder does not exist", where=str(folder))
        paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise VlmeftError(f"no images here (looked for {', '.join(sorted(IMAGE_SUFFIXES))})", where=str(folder))
    else:
        paths = [Path(p) for p in args.images]
    for path in paths:
        if not path.is_file():
            raise VlmeftError("image file does not exist", where=str(path))
        try:
            with Image.open(path) as img:
                img.size  # noqa: B018 (opening reads the header; this touches it)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise VlmeftError("not an image (PIL cannot read it)", where=str(path)) from None
    return paths


def _cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from vlmeft.cli.run_commands import _emit_json, _method_class, load_checkpoint
    from vlmeft.data.imagefolder import fingerprint
    from vlmeft.data.types import Split
    from vlmeft.engine import FeatureCache, predict

    _method_class(args.method)
    if args.top_k < 1:
        raise VlmeftError(f"must be positive, got {args.top_k}", where="--top-k")
    paths = _image_paths(args)
    method, backbone, _ = load_checkpoint(args)
    split = Split(images=paths, labels=np.zeros(len(paths), dtype=np.int64), key=f"predict:{fingerprint(paths)}")
    probs = predict(method, split, cache=FeatureCache(disk=False)).softmax(dim=-1)
    k = min(args.top_k, probs.shape[1])
    top_p, top_i = probs.topk(k, dim=-1)
    predictions = []
    for path, ps, idx in zip(paths, top_p.tolist(), top_i.tolist()):
        top = [{"class": method.classnames[i], "index": i, "probability": p} for p, i in zip(ps, idx)]
        predictions.append({"image": str(path), "top": top})
        print(f"{path}: " + ", ".join(f"{t['class']} {100 * t['probability']:.1f}%" for t in top))
    if args.json:
        _emit_json({"method": args.method, "checkpoint": str(args.checkpoint), "backbone": backbone.name,
                    "device": str(backbone.device), "warnings": list(backbone.warnings),
                    "predictions": predictions})
    return 0


# ------------------------------------------------------------------ export
def _cmd_export(args: argparse.Namespace) -> int:
    from vlmeft.engine.export import export

    files = export(args.checkpoint, args.out, method=args.method, force=args.force,
                   device=runtime_args.device(args))
    for path in files:
        print(f"wrote {path}")
    return 0


def register(sub) -> None:  # noqa: ANN001 (argparse's private subparsers type)
    pr = sub.add_parser("predict", help="classify images with a trained checkpoint (top-k classes)")
    pr.__class__ = _IntermixedParser  # subparsers share one parser class; only this one needs it
    pr.add_argument("method", help="registry id the checkpoint was trained for")
    pr.add_argument("images", nargs="*", metavar="IMAGE", help="image files")
    pr.add_argument("--checkpoint", required=True, metavar="DIR", help="a `vlmeft run --save` folder")
    pr.add_argument("--folder", metavar="DIR", help="classify every image in DIR instead")
    pr.add_argument("--top-k", type=int, default=3, metavar="K", help="classes shown per image (default 3)")
    pr.add_argument("--backbone", default=None, help="default: the checkpoint's backbone")
    pr.add_argument("--pretrained", default=None, help="default: the checkpoint's weights")
    pr.add_argument("--json", action="store_true", help="end with one JSON line of predictions")
    runtime_args.add_device_args(pr, precision=True, workers=True)
    pr.set_defaults(func=_cmd_predict)

    ex = sub.add_parser("export", help="export a trained checkpoint: merged open_clip weights (CLIP-LoRA) or "
                                       "its tensors, with a model card")
    ex.add_argument("method", help="registry id the checkpoint was trained for")
    ex.add_argument("--checkpoint", required=True, metavar="DIR", help="a `vlmeft run --save` folder")
    ex.add_argument("--out", required=True, metavar="DIR", help="folder to write (created if needed)")
    ex.add_argument("--force", action="store_true", help="overwrite files already in --out")
    runtime_args.add_device_args(ex, default="cpu")
    ex.set_defaults(func=_cmd_export)
