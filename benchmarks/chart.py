"""A small grouped bar chart as PNG: one group per workload, one bar per series, a log-scale axis.

Pixels are drawn into a numpy array; text uses pyemu's 8x16 VGA font (emu/devices/vgafont.py) and
the PNG is written by emu/screendump.encode_png (zlib from the standard library).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emu.devices.vgafont import FONT8X16  # noqa: E402
from emu.screendump import encode_png  # noqa: E402

COLOURS = ((0x2E, 0x6F, 0xB7), (0xE0, 0x7B, 0x22), (0x3A, 0x9A, 0x4A), (0xB0, 0x3A, 0x8F))
BLACK, GREY, LIGHT, WHITE = (0, 0, 0), (0x88, 0x88, 0x88), (0xDD, 0xDD, 0xDD), (0xFF, 0xFF, 0xFF)


def _text(img: np.ndarray, x: int, y: int, s: str, colour=BLACK, vertical: bool = False) -> None:
    for n, ch in enumerate(s):
        code = ord(ch) if ord(ch) < 256 else ord("?")
        glyph = FONT8X16[code * 16:code * 16 + 16]
        for row, bits in enumerate(glyph):
            for col in range(8):
                if bits & (0x80 >> col):
                    px, py = (x + row, y - n * 8 - col) if vertical else (x + n * 8 + col, y + row)
                    if 0 <= py < img.shape[0] and 0 <= px < img.shape[1]:
                        img[py, px] = colour


def _rect(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, colour) -> None:
    x0, x1 = sorted((max(0, x0), min(img.shape[1], x1)))
    y0, y1 = sorted((max(0, y0), min(img.shape[0], y1)))
    img[y0:y1, x0:x1] = colour


def bar_chart(title: str, groups: list[str], series: dict[str, list[float | None]], ylabel: str) -> bytes:
    """PNG bytes: for each group a bar per series (None: no bar); log-scale y with a line at 1."""
    values = [v for vs in series.values() for v in vs if v is not None and v > 0]
    lo = min(values + [1.0]) / 1.5
    hi = max(values + [1.0]) * 1.5
    lo_e, hi_e = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    nser = max(1, len(series))
    bar_w, gap = 18, 24
    left, right, top = 80, 20, 60
    bottom = 24 + 8 * max((len(g) for g in groups), default=0)
    plot_w = len(groups) * (nser * bar_w + gap) + gap
    legend_w = sum(16 + 8 * len(label) + 20 for label in series)
    width = max(left + plot_w + right, left + 8 * len(title) + right, left + legend_w)
    height = top + 320 + bottom
    plot_h = height - top - bottom
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = WHITE

    def ypix(v: float) -> int:
        return top + int(round(plot_h * (hi_e - math.log10(v)) / (hi_e - lo_e)))

    for e in range(lo_e, hi_e + 1):
        for m in (1, 2, 5):
            v = m * 10.0**e
            if 10.0**lo_e <= v <= 10.0**hi_e:
                y = ypix(v)
                _rect(img, left, y, left + plot_w, y + 1, LIGHT if m != 1 else GREY)
                label = f"{v:g}"
                _text(img, left - 6 - 8 * len(label), y - 8, label)
    y1 = ypix(1.0)
    _rect(img, left, y1 - 1, left + plot_w, y1 + 1, BLACK)
    _rect(img, left - 1, top, left, top + plot_h, BLACK)
    for g, name in enumerate(groups):
        gx = left + gap + g * (nser * bar_w + gap)
        for s, (_, vals) in enumerate(series.items()):
            v = vals[g]
            if v is None or v <= 0:
                continue
            x = gx + s * bar_w
            _rect(img, x, min(ypix(v), y1), x + bar_w - 2, max(ypix(v), y1), COLOURS[s % len(COLOURS)])
        _text(img, gx + (nser * bar_w - 16) // 2, top + plot_h + 6 + 8 * len(name), name, vertical=True)
    _text(img, left, 10, title)
    lx = left
    for s, label in enumerate(series):
        _rect(img, lx, 34, lx + 12, 46, COLOURS[s % len(COLOURS)])
        _text(img, lx + 16, 32, label)
        lx += 16 + 8 * len(label) + 20
    _text(img, 4, top + plot_h // 2 + 8 * len(ylabel) // 2, ylabel, vertical=True)
    return encode_png(img)


def line_chart(title: str, xs: list[float], ys: list[float], xlabel: str, ylabel: str,
               bands: tuple[tuple[float, str], ...] = ()) -> bytes:
    """PNG bytes: ys against xs on linear axes from 0, with labelled horizontal lines at `bands`."""
    width, height = 720, 400
    left, right, top, bottom = 80, 90, 50, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    x_hi = max(xs + [1e-9])
    y_hi = max(ys + [b[0] for b in bands] + [1e-9]) * 1.1
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = WHITE

    def px(x: float) -> int:
        return left + int(round(plot_w * x / x_hi))

    def py(y: float) -> int:
        return top + plot_h - int(round(plot_h * y / y_hi))

    step = 10.0 ** math.floor(math.log10(y_hi / 2))
    for k in range(0, int(y_hi / step) + 1):
        y = k * step
        _rect(img, left, py(y), left + plot_w, py(y) + 1, LIGHT)
        _text(img, left - 6 - 8 * len(f"{y:g}"), py(y) - 8, f"{y:g}")
    xstep = 10.0 ** math.floor(math.log10(max(x_hi, 1e-9)))
    for k in range(0, int(x_hi / xstep) + 1):
        x = k * xstep
        _rect(img, px(x), top + plot_h, px(x) + 1, top + plot_h + 4, BLACK)
        _text(img, px(x) - 4 * len(f"{x:g}"), top + plot_h + 6, f"{x:g}")
    _rect(img, left - 1, top, left, top + plot_h, BLACK)
    _rect(img, left, top + plot_h, left + plot_w, top + plot_h + 1, BLACK)
    for value, label in bands:
        _rect(img, left, py(value), left + plot_w, py(value) + 1, GREY)
        _text(img, left + plot_w + 4, py(value) - 8, label)
    points = list(zip(xs, ys, strict=True))
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        n = max(abs(px(x1) - px(x0)), abs(py(y1) - py(y0)), 1)
        for i in range(n + 1):
            x = px(x0) + (px(x1) - px(x0)) * i // n
            y = py(y0) + (py(y1) - py(y0)) * i // n
            _rect(img, x - 1, y - 1, x + 2, y + 2, COLOURS[0])
    _text(img, left, 14, title)
    _text(img, left + (plot_w - 8 * len(xlabel)) // 2, height - 22, xlabel)
    _text(img, 4, top + plot_h // 2 + 8 * len(ylabel) // 2, ylabel, vertical=True)
    return encode_png(img)
