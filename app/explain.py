"""Evidence in words: what the window says beside a confidence, and what it calls a region.

Everything here reads a :class:`~copylens.core.results.Match` (its signals and evidence) and returns
text; no widget code, so the tooltip, the side caption and the reports say the same thing.
"""

from __future__ import annotations

from copylens.core.calibrate import FRAME
from copylens.core.results import Match, Region

# proposal kinds (core/regions) in the words a moderator uses
REGION_WORDS = {
    "full": "whole image",
    "border": "picture inside a border or padding",
    "caption": "picture inside a meme or caption frame",
    "edges": "pasted region",
    "quad": "picture seen at an angle (searched upright)",
    "denoised": "whole image with salt-and-pepper noise removed",
    "fixed": "central part",
}

# the same kinds, short, for the tag drawn on the picture (its tooltip has the words above)
REGION_TAGS = {
    "border": "in a border",
    "caption": "in a caption frame",
    "edges": "pasted",
    "quad": "seen at an angle",
    "denoised": "denoised",
    "fixed": "central part",
}

VARIANT_WORDS = {
    "direct": "",
    "mirror": "mirrored",
    "invert": "colour-inverted",
    "invert_mirror": "mirrored and colour-inverted",
}


def region_label(region: Region) -> str:
    """``"pasted region (82%)"``: the kind in words and how sure the proposal was."""
    words = REGION_WORDS.get(region.kind, region.kind)
    return words if region.kind == "full" else f"{words} ({region.score:.0%})"


def region_tag(region: Region) -> str:
    """``"pasted 82%"``: :func:`region_label` short enough to sit on the picture."""
    return f"{REGION_TAGS.get(region.kind, region.kind)} {region.score:.0%}"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def explain(match: Match, copy_threshold: float, possible_threshold: float) -> list[str]:
    """The evidence behind ``match.score`` as short sentences, strongest first."""
    s, ev = match.signals, match.evidence
    verdict = ("a copy" if match.score >= copy_threshold else
               "possibly a copy" if match.score >= possible_threshold else "not a match")
    lines = [f"Confidence {match.score:.0%}: {verdict} (copy from {_pct(copy_threshold)}, possible from "
             f"{_pct(possible_threshold)}). The confidence is the calibrated probability of a copy."]
    inl, found = ev.num_inliers, int(s.get("matches", 0))
    if inl:
        of = f" of {found} descriptor matches ({_pct(inl / found)})" if found >= inl > 0 else ""
        lines.append(f"{inl} local features agree on one geometric transformation{of}.")
        if "reference_spread" in s and "query_spread" in s:
            lines.append(f"They cover {_pct(s['reference_spread'])} of the reference and "
                         f"{_pct(s['query_spread'])} of the query.")
        if "mean_similarity" in s:
            lines.append(f"Mean descriptor similarity of those features: {s['mean_similarity']:.2f} (1 = identical).")
    else:
        lines.append("No local features agree on a geometric transformation.")
    if ev.outline is not None:
        lines.append("The reference's border maps to a plausible quadrilateral in the query (drawn as the outline).")
    elif inl:
        lines.append("The matched features do not map the reference to a plausible shape: no outline is drawn.")
    lines += _edge_lines(s, match.sibling)
    variant = VARIANT_WORDS.get(ev.variant, ev.variant)
    if variant:
        lines.append(f"The copy is {variant}.")
    if ev.region is not None and ev.region.kind != "full":
        lines.append(f"Found in a region of the query: {region_label(ev.region)}.")
    for name, value in sorted(s.items()):
        if name.startswith("global:"):
            lines.append(f"Global similarity ({name[7:]}): {value:.2f} (1 = identical, 0 = unrelated).")
    if FRAME in s:
        lines.append(f"The matched part of the query, warped back into the reference's frame, has a global "
                     f"similarity of {s[FRAME]:.2f} to it (whatever surrounds the copy is left out).")
    return lines


def _edge_lines(s: dict[str, float], sibling: str = "") -> list[str]:
    """The dense edge comparison under the transformation (core/agreement.py), in words."""
    out = []
    if "edge_recall" in s:
        explained = (f"; the reference explains {_pct(s['edge_precision'])} of the query's edges there"
                     if "edge_precision" in s else "")
        out.append(f"Aligned by that transformation, the query shows {_pct(s['edge_recall'])} of the "
                   f"reference's edges{explained}.")
    if "sibling_likeness" in s and "distinct_edges" in s:
        d = s["distinct_edges"]
        shared = _pct(s["sibling_likeness"])
        if d >= 0.3:
            what = "the query shows the parts that tell this reference apart from it"
        elif d <= -0.3:
            what = "the query shows that reference's own parts rather than this one's"
        else:
            what = "the query shows neither one's distinct parts: it may be another variant of the same picture"
        named = f" ({sibling})" if sibling else ""
        out.append(f"A near-identical indexed reference{named} was verified too ({shared} of edges shared): "
                   f"{what} (distinctness {d:+.2f}, from -1 to +1).")
    return out


def reference_tooltip(reference_id: str, details: dict) -> str:
    """A reference as a thing: its name, where its file is, and the index's metadata about it."""
    lines = [reference_id]
    if details.get("near_identical"):
        lines.append(f"near-identical references exist: {details['near_identical']} (check the evidence "
                     "tells them apart)")
    for key, value in details.items():
        if key not in ("path", "size", "near_identical"):
            lines.append(f"{key.replace('_', ' ')}: {value}")
    if details.get("size"):
        lines.append(f"size: {details['size']} px")
    if details.get("path"):
        lines.append(f"file: {details['path']}")
    return "\n".join(lines)
