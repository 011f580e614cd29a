"""Benchmark figures drawn with Pillow (no plotting library needed): reliability diagrams."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from .metrics import Calibration

SIZE = 360  # plot square, pixels
PAD = 44


def reliability_diagram(cal: Calibration, title: str, path: str | Path) -> Path:
    """Accuracy against confidence per bin (bars), the diagonal of perfect calibration, the bin counts,
    and the ECE in the title; saved as PNG."""
    w, h = SIZE + 2 * PAD, SIZE + 2 * PAD
    img = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(img)

    def xy(conf: float, acc: float) -> tuple[float, float]:
        return PAD + conf * SIZE, PAD + (1 - acc) * SIZE

    d.rectangle([PAD, PAD, PAD + SIZE, PAD + SIZE], outline=(0, 0, 0))
    for t in (0.25, 0.5, 0.75):
        d.line([xy(t, 0), xy(t, 1)], fill=(225, 225, 225))
        d.line([xy(0, t), xy(1, t)], fill=(225, 225, 225))
    for b in cal.bins:
        if b.count == 0:
            continue
        x0, y0 = xy(b.lo, b.accuracy)
        x1, y1 = xy(b.hi, 0)
        d.rectangle([x0 + 2, y0, x1 - 2, y1], fill=(70, 130, 200), outline=(40, 80, 150))
        gx, gy = xy(b.mean_score, b.accuracy)  # where the bin's mean confidence actually sits
        d.ellipse([gx - 3, gy - 3, gx + 3, gy + 3], fill=(220, 60, 40))
        d.text((x0 + 3, PAD + SIZE + 4), str(b.count), fill=(90, 90, 90))
    d.line([xy(0, 0), xy(1, 1)], fill=(120, 120, 120), width=1)
    d.text((PAD, 8), f"{title}: ECE {cal.ece:.3f} ({cal.num_predictions} top-1 scores)", fill=(0, 0, 0))
    d.text((PAD, PAD + SIZE + 20), "confidence (top-1 score); numbers: top-1s per bin", fill=(0, 0, 0))
    d.text((4, PAD - 14), "accuracy", fill=(0, 0, 0))
    out = Path(path)
    img.save(out)
    return out


def reliability_diagrams(cals: dict[str, Calibration], out_dir: str | Path, unseen: Sequence[str] = ()) -> list[Path]:
    """One PNG per entry (``overall`` and each content kind) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [reliability_diagram(c, name + (" (unseen)" if name in unseen else ""), out / f"reliability_{name}.png")
            for name, c in cals.items()]
