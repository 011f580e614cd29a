"""The Python and library releases this process runs with, and what changed since an index was calibrated.

A confidence is calibrated on the scores of one set of releases. A new OpenCV, Pillow, torch or FAISS can
change decoding, keypoints, descriptors or search slightly: the same engine code and benchmark, rebuilt in
a session that had installed its libraries anew, gave per-kind ECE up to 0.007 apart, and with no record
of the releases the cause could not be told (README, issue 11). So the calibration records the releases
it was fitted with, and an index calibrated with others says so.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from importlib import metadata

# the distributions whose releases change what the engine computes (decoding, features, search, networks)
LIBRARIES = ("copylens", "numpy", "opencv-contrib-python-headless", "Pillow", "pillow-heif", "faiss-gpu",
             "faiss-cpu", "torch", "timm", "pdqhash", "scikit-image")
# of those, the ones whose release moves an index's scores (scikit-image only makes demo and test images;
# copylens's own version does not follow its code)
MOVE_SCORES = ("numpy", "opencv-contrib-python-headless", "Pillow", "pillow-heif", "faiss-gpu", "faiss-cpu",
               "torch", "timm", "pdqhash")


# what to do about it, after "calibrated with other library releases (...): "
RELEASES_ADVICE = ("its confidences may be a little off (the scores moved, the calibration did not); build "
                   "the index anew to recalibrate it (copylens index build REF_DIR --out NEW_INDEX)")


def releases() -> dict[str, str]:
    """Python's version, the machine and the installed release of each of :data:`LIBRARIES`."""
    out = {"python": platform.python_version(), "machine": platform.machine()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def calibrated_with(manifest: Mapping) -> dict[str, str] | None:
    """The releases an index manifest's calibration was fitted with (None: not recorded, as for indexes
    calibrated before 2026-12-05, an uncalibrated index or a default model)."""
    calibration = manifest.get("calibration")
    found = calibration.get("releases") if isinstance(calibration, Mapping) else None
    return dict(found) if isinstance(found, Mapping) else None


def changed(recorded: Mapping[str, str] | None, now: Mapping[str, str] | None = None) -> list[str]:
    """``"name recorded -> now"`` for each library of :data:`MOVE_SCORES` whose release differs from the
    recorded one (a library on only one side is not compared); empty when nothing was recorded."""
    if not recorded:
        return []
    now = releases() if now is None else now
    return [f"{name} {recorded[name]} -> {now[name]}" for name in MOVE_SCORES
            if isinstance(recorded.get(name), str) and name in now and recorded[name] != now[name]]
