"""The demo: reference images from scikit-image's bundled samples, a few edited queries, an index built
once into the user data dir (resumed if interrupted), and the window opened with the queries queued."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# bundled with scikit-image (no download); name -> file name in the demo reference folder
REFERENCES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "clock", "coins", "colorwheel",
              "hubble_deep_field", "immunohistochemistry", "moon", "page", "text", "logo", "brick", "grass")
# (query file, reference it copies or None, edit of copylens.core.edits)
QUERIES = (("astronaut_crop.jpg", "astronaut", "crop"), ("coffee_meme.jpg", "coffee", "meme"),
           ("chelsea_paste.jpg", "chelsea", "paste"), ("rocket_mirror.jpg", "rocket", "mirror_jpeg"),
           ("camera_rotate.jpg", "camera", "rotate"), ("hubble_text.jpg", "hubble_deep_field", "text"),
           ("unrelated.jpg", None, None))
DEMO_SEED = 2021
COMPLETE_MARK = ".copylens_demo_complete"  # written in the demo dir once the index is fully built


def demo_paths(data_dir: Path) -> dict[str, Path]:
    root = Path(data_dir) / "demo"
    return {"root": root, "references": root / "references", "queries": root / "queries",
            "index": root / "demo-index", "mark": root / COMPLETE_MARK}


def _sample(name: str) -> np.ndarray:
    import skimage.data

    a = np.asarray(getattr(skimage.data, name)())
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.shape[2] == 4:  # composite on white like the decoder does
        alpha = a[:, :, 3:4].astype(np.float32) / 255
        a = (a[:, :, :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(a[:, :, :3])


def _fallback_edit(a: np.ndarray, edit: str, rng: np.random.Generator) -> np.ndarray:
    """Simple Pillow edits, used only if the benchmark edit library is unavailable."""
    img = Image.fromarray(a)
    w, h = img.size
    if edit == "mirror_jpeg":
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    elif edit == "rotate":
        img = img.rotate(float(rng.uniform(10, 30)), expand=True, fillcolor=(255, 255, 255))
    else:
        img = img.crop((w // 8, h // 8, w - w // 6, h - h // 5))
        ImageDraw.Draw(img).text((10, 10), "COPY?", fill=(255, 255, 0))
    return np.asarray(img)


def _edit(a: np.ndarray, edit: str, rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    try:
        from copylens.core.edits import apply_edit
    except ImportError:
        return _fallback_edit(a, edit, rng)
    return apply_edit(edit, a, rng, background).pixels


def prepare_demo_files(data_dir: Path) -> dict[str, Path]:
    """Write the reference PNGs and the edited query JPEGs (skipped when already there)."""
    p = demo_paths(data_dir)
    p["references"].mkdir(parents=True, exist_ok=True)
    p["queries"].mkdir(parents=True, exist_ok=True)
    for name in REFERENCES:
        out = p["references"] / f"{name}.png"
        if not out.exists():
            Image.fromarray(_sample(name)).save(out)
    rng = np.random.default_rng(DEMO_SEED)
    background = _sample("gravel")
    for fname, ref, edit in QUERIES:
        out = p["queries"] / fname
        if out.exists():
            continue
        if ref is None:  # a photo-like image that is not in the index: shows "no match"
            pixels = _sample("retina")[::2, ::2]
        else:
            pixels = _edit(_sample(ref), edit, rng, background)
        Image.fromarray(np.ascontiguousarray(pixels)).save(out, quality=88)
    return p


def query_files(data_dir: Path) -> list[Path]:
    q = demo_paths(data_dir)["queries"]
    return [q / fname for fname, _, _ in QUERIES if (q / fname).exists()]


def is_built(data_dir: Path) -> bool:
    """The demo index is there, complete, and calibrated with the running library releases (after an
    upgrade it is built again, which recalibrates it, rather than opened with a warning)."""
    from copylens.core.errors import CopyLensError
    from copylens.core.index.layout import read_manifest
    from copylens.core.releases import calibrated_with, changed

    p = demo_paths(data_dir)
    if not (p["mark"].exists() and p["index"].is_dir()):
        return False
    try:
        manifest = read_manifest(p["index"])
    except (OSError, CopyLensError):
        return False
    return not changed(calibrated_with(manifest))


def mark_built(data_dir: Path) -> None:
    demo_paths(data_dir)["mark"].write_text("built\n", encoding="utf-8")
