"""Low-level rendering: backgrounds, shape masks and digit masks.

Everything is drawn at ``SUPER`` times the final size and box-filtered down, which
anti-aliases edges cheaply. Masks are float32 in [0, 1]; composition is plain numpy.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from vlmeft.world.vocab import IMAGE_SIZE

SUPER = 2
CANVAS = IMAGE_SIZE * SUPER


def _to_final(mask: Image.Image) -> np.ndarray:
    """Box-downsample a super-sampled L-mode mask to IMAGE_SIZE, as float in [0, 1]."""
    small = mask.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


# ---------------------------------------------------------------- backgrounds
def muted_color(rng: np.random.Generator, light: bool | None = None) -> np.ndarray:
    """A low-saturation background tone, dark or light."""
    if light is None:
        light = bool(rng.random() < 0.5)
    base = rng.uniform(170, 235) if light else rng.uniform(15, 85)
    tint = rng.normal(0, 12, size=3)
    return np.clip(base + tint, 0, 255).astype(np.float32)


def background(kind: str, rng: np.random.Generator, light: bool | None = None) -> np.ndarray:
    """A float32 [H, W, 3] background of the given texture kind."""
    n = IMAGE_SIZE
    c0 = muted_color(rng, light)
    if kind == "plain":
        return np.broadcast_to(c0, (n, n, 3)).copy()
    if kind == "noisy":
        sigma = rng.uniform(18, 40)
        return np.clip(c0 + rng.normal(0, sigma, size=(n, n, 3)), 0, 255).astype(np.float32)
    # Two-tone textures: the second tone contrasts in lightness with the first.
    c1 = muted_color(rng, light=not (c0.mean() > 127)) if rng.random() < 0.5 else muted_color(rng)
    c1 = 0.55 * c1 + 0.45 * c0  # keep textures softer than objects
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    if kind == "striped":
        period = rng.uniform(3.5, 8.0)
        angle = rng.choice([0.0, math.pi / 2, math.pi / 4, -math.pi / 4])
        phase = rng.uniform(0, period)
        t = (xx * math.cos(angle) + yy * math.sin(angle) + phase) % period < period / 2
        w = t.astype(np.float32)[..., None]
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(angle) + yy * math.sin(angle)
        w = ((t - t.min()) / (t.max() - t.min() + 1e-6))[..., None]
        c1 = muted_color(rng, light=not (c0.mean() > 127))
    elif kind == "checkered":
        cell = int(rng.integers(3, 7))
        w = (((xx // cell) + (yy // cell)) % 2).astype(np.float32)[..., None]
    else:
        raise ValueError(f"unknown background kind {kind!r}")
    return (c0 * (1 - w) + c1 * w).astype(np.float32)


def composite(bg: np.ndarray, mask: np.ndarray, color: np.ndarray) -> np.ndarray:
    """Paint ``color`` over ``bg`` with alpha ``mask`` (in place on a float image)."""
    a = mask[..., None]
    return bg * (1 - a) + color[None, None, :] * a


def finish(img: np.ndarray, rng: np.random.Generator, noise: float = 0.0) -> np.ndarray:
    """Add pixel noise and quantise to uint8."""
    if noise > 0:
        img = img + rng.normal(0, noise, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- shapes
def _regular(k: int, r: float, start: float = -math.pi / 2) -> list[tuple[float, float]]:
    return [(r * math.cos(start + 2 * math.pi * i / k), r * math.sin(start + 2 * math.pi * i / k)) for i in range(k)]


def _star() -> list[tuple[float, float]]:
    pts = []
    for i in range(10):
        r = 1.0 if i % 2 == 0 else 0.42
        a = -math.pi / 2 + math.pi * i / 5
        pts.append((r * math.cos(a), r * math.sin(a)))
    return pts


_W = 0.34
POLYGONS: dict[str, list[tuple[float, float]]] = {
    "square": [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
    "triangle": [(0.0, -1.0), (0.95, 0.75), (-0.95, 0.75)],
    "star": _star(),
    "cross": [(-_W, -1), (_W, -1), (_W, -_W), (1, -_W), (1, _W), (_W, _W), (_W, 1), (-_W, 1),
              (-_W, _W), (-1, _W), (-1, -_W), (-_W, -_W)],
    "diamond": [(0.0, -1.0), (0.68, 0.0), (0.0, 1.0), (-0.68, 0.0)],
    "hexagon": _regular(6, 0.95, 0.0),
}


def shape_mask(shape: str, cx: float, cy: float, r: float, angle: float = 0.0) -> np.ndarray:
    """Alpha mask of one shape centred at (cx, cy) with radius r (pixels at IMAGE_SIZE)."""
    s = SUPER
    if shape == "ring":  # a thick outline: 34% of the radius, at least 2 canvas pixels
        return ellipse_outline(cx, cy, r, r, width=max(2, int(round(r * s * 0.34))) / s)
    im = Image.new("L", (CANVAS, CANVAS), 0)
    d = ImageDraw.Draw(im)
    if shape == "circle":
        d.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=255)
    else:
        ca, sa = math.cos(angle), math.sin(angle)
        pts = [((cx + r * (x * ca - y * sa)) * s, (cy + r * (x * sa + y * ca)) * s) for x, y in POLYGONS[shape]]
        d.polygon(pts, fill=255)
    return _to_final(im)


def ellipse_outline(cx: float, cy: float, rx: float, ry: float, width: float) -> np.ndarray:
    """Alpha mask of an ellipse outline (the ring shape, a hand-drawn marker), centre,
    semi-axes and width in pixels at IMAGE_SIZE; anti-aliased like the shapes."""
    im = Image.new("L", (CANVAS, CANVAS), 0)
    s = SUPER
    ImageDraw.Draw(im).ellipse([(cx - rx) * s, (cy - ry) * s, (cx + rx) * s, (cy + ry) * s], outline=255,
                               width=max(1, int(round(width * s))))
    return _to_final(im)


# ---------------------------------------------------------------- digits
@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 10) -> list[tuple[float, float]]:
    """Points on an ellipse arc; angles in degrees, 0 = right, 90 = down (image coordinates)."""
    return [(cx + rx * math.cos(math.radians(a0 + (a1 - a0) * i / (n - 1))),
             cy + ry * math.sin(math.radians(a0 + (a1 - a0) * i / (n - 1)))) for i in range(n)]


# Single-stroke skeletons, in a unit box (x right, y down): a crude "handwriting" model.
def _skeleton(digit: int, rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    v = rng.random()
    if digit == 0:
        return [_arc(0.5, 0.5, 0.3, 0.42, -90, 270, 18)]
    if digit == 1:
        strokes = [[(0.52, 0.08), (0.5, 0.92)]]
        if v < 0.6:
            strokes.append([(0.3, 0.3), (0.52, 0.08)])
        if v < 0.25:
            strokes.append([(0.3, 0.92), (0.72, 0.92)])
        return strokes
    if digit == 2:
        return [_arc(0.5, 0.32, 0.26, 0.22, 190, 360, 8) + [(0.7, 0.48), (0.25, 0.9), (0.8, 0.9)]]
    if digit == 3:
        return [_arc(0.48, 0.3, 0.26, 0.2, 200, 450, 10) + _arc(0.48, 0.7, 0.28, 0.21, 270, 500, 10)[1:]]
    if digit == 4:
        if v < 0.5:
            return [[(0.65, 0.92), (0.65, 0.08), (0.18, 0.65), (0.85, 0.65)]]
        return [[(0.3, 0.08), (0.24, 0.58), (0.85, 0.58)], [(0.66, 0.3), (0.66, 0.92)]]
    if digit == 5:
        return [[(0.78, 0.1), (0.32, 0.1), (0.28, 0.45)] + _arc(0.5, 0.64, 0.28, 0.25, 230, 480, 12)]
    if digit == 6:
        return [[(0.72, 0.1), (0.45, 0.3)] + _arc(0.5, 0.66, 0.24, 0.24, 200, 560, 18)]
    if digit == 7:
        strokes = [[(0.18, 0.1), (0.82, 0.1), (0.42, 0.92)]]
        if v < 0.25:
            strokes.append([(0.4, 0.5), (0.76, 0.5)])
        return strokes
    if digit == 8:
        return [_arc(0.5, 0.29, 0.21, 0.2, 90, 450, 14), _arc(0.5, 0.71, 0.26, 0.22, -90, 270, 16)]
    if digit == 9:
        return [_arc(0.5, 0.32, 0.24, 0.23, 0, 360, 16) + [(0.74, 0.32), (0.66, 0.92)]]
    raise ValueError(digit)


def _affine(points, rng, cx, cy, h, angle, shear, aspect, jitter):
    """Map unit-box skeleton points into canvas pixels with a random affine and jitter."""
    ca, sa = math.cos(angle), math.sin(angle)
    out = []
    for x, y in points:
        x = (x - 0.5) * aspect + rng.normal(0, jitter)
        y = (y - 0.5) + rng.normal(0, jitter)
        x = x + shear * y
        out.append((cx + h * (x * ca - y * sa), cy + h * (x * sa + y * ca)))
    return out


def digit_mask(digit: int, rng: np.random.Generator, *, height: float, cx: float, cy: float,
               style: str = "mixed", thickness: float | None = None) -> np.ndarray:
    """Alpha mask of a digit of the given height (pixels at IMAGE_SIZE), font or hand-drawn strokes."""
    s = SUPER
    if style == "mixed":
        style = "font" if rng.random() < 0.4 else "stroke"
    angle = math.radians(rng.normal(0, 8))
    shear = rng.normal(0, 0.15)
    if thickness is None:
        thickness = rng.uniform(0.08, 0.2) * height
    if style == "font":
        # Render the glyph large, then warp it with the same affine family as the strokes.
        big = 4 * CANVAS
        im = Image.new("L", (big, big), 0)
        d = ImageDraw.Draw(im)
        fsize = int(big * 0.8)
        stroke = int(max(0, thickness - 0.1 * height) / height * fsize * 0.5)
        d.text((big / 2, big / 2), str(digit), fill=255, font=_font(fsize), anchor="mm",
               stroke_width=stroke, stroke_fill=255)
        bbox = im.getbbox() or (0, 0, big, big)
        glyph = im.crop(bbox)
        gh = bbox[3] - bbox[1]
        scale = height * s / max(gh, 1)
        gw = max(1, int((bbox[2] - bbox[0]) * scale * rng.uniform(0.8, 1.15)))
        glyph = glyph.resize((gw, max(1, int(gh * scale))), Image.Resampling.BILINEAR)
        glyph = glyph.rotate(math.degrees(-angle), resample=Image.Resampling.BILINEAR, expand=True)
        out = Image.new("L", (CANVAS, CANVAS), 0)
        out.paste(glyph, (int(cx * s - glyph.width / 2), int(cy * s - glyph.height / 2)))
        return _to_final(out)
    im = Image.new("L", (CANVAS, CANVAS), 0)
    d = ImageDraw.Draw(im)
    aspect = rng.uniform(0.75, 1.1)
    jitter = rng.uniform(0.0, 0.035)
    for stroke in _skeleton(digit, rng):
        pts = _affine(stroke, rng, cx * s, cy * s, height * s, angle, shear, aspect, jitter)
        d.line(pts, fill=255, width=max(1, int(round(thickness * s))), joint="curve")
        rad = thickness * s / 2
        for x, y in (pts[0], pts[-1]):  # round caps
            d.ellipse([x - rad, y - rad, x + rad, y + rad], fill=255)
    if rng.random() < 0.3:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    return _to_final(im)


def uci_like(gray: np.ndarray) -> np.ndarray:
    """Pass a float grey image [H, W] in [0, 255] through the UCI digits' acquisition:
    block-average to 8x8, quantise to 17 levels, then upsample bilinearly back to IMAGE_SIZE."""
    n = IMAGE_SIZE
    k = n // 8
    blocks = gray.reshape(8, k, 8, k).mean(axis=(1, 3))
    return upsample_grid(np.rint(blocks / 255.0 * 16.0) / 16.0 * 255.0)


def upsample_grid(grid: np.ndarray) -> np.ndarray:
    """Bilinearly upsample a small float grey grid (values in [0, 255]) to IMAGE_SIZE."""
    im = Image.fromarray(np.ascontiguousarray(grid, dtype=np.float32))
    return np.asarray(im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR), dtype=np.float32)
