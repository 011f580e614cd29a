"""The ``copylens`` command line: index building, queries, and the subcommands plugins register.

Subcommands from other modules (the benchmark toolkit, the desktop app) come through the entry-point group
``copylens.commands``: each entry point is ``register(subparsers)``. Exit codes: 0 success, 1 failure,
2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from collections import Counter
from importlib.metadata import entry_points
from pathlib import Path

from .errors import CopyLensError, ImageLoadError
from .imageio import scan_images
from .progress import ConsoleProgress, run_job

_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)] if c not in (0x09,)}


def safe(text: object) -> str:
    """``text`` with control characters shown as ``\\xNN``: a file name holding terminal escape sequences
    cannot recolour, retitle or rewrite the user's terminal."""
    return str(text).translate(_CONTROL)


def _progress(args) -> ConsoleProgress | None:
    return None if getattr(args, "quiet", False) else ConsoleProgress()


def _print_summary(s, stream=None) -> None:
    stream = stream if stream is not None else sys.stderr
    print(f"added {s.added}, skipped {s.skipped} already indexed, {s.duplicates} duplicate(s), "
          f"{len(s.failed)} failed; {s.total_references} references in the index ({s.seconds:.1f} s)", file=stream)
    for path, reason in s.failed:
        print(safe(f"  failed: {path}: {reason}"), file=stream)
    for path, rid in getattr(s, "renamed", []):
        print(safe(f"  note: {path} shares its name with another file: indexed as {rid!r}"), file=stream)
    for note in getattr(s, "notes", []):
        print(safe(f"  note: {note}"), file=stream)


def cmd_index_build(args) -> int:
    from .globaldesc.registry import parse_names
    from .index.build import DEFAULT_GLOBAL, build_index

    bar = _progress(args)
    names = parse_names(args.global_descriptors)
    names = DEFAULT_GLOBAL if names is None else names
    if args.ray is not None and args.shards is None:
        raise CopyLensError("--ray needs --shards K: a cluster builds a sharded index")
    if args.shards is None:
        job = build_index(args.ref_dir, args.out, workers=args.workers, calibrate=not args.no_calibrate,
                          global_descriptors=names, metadata=args.metadata)
    else:
        from .index.shardbuild import build_sharded

        extract = None
        if args.ray is not None:
            from .cluster import connect
            from .cluster.extract import ray_extract

            connect(args.ray)
            extract = ray_extract()
        job = build_sharded(args.ref_dir, args.out, args.shards, workers=args.workers,
                            calibrate=not args.no_calibrate, global_descriptors=names, metadata=args.metadata,
                            extract=extract)
    s = run_job(job, bar)
    if bar:
        bar.close()
    _print_summary(s)
    return 0 if s.total_references > 0 else 1


def cmd_index_add(args) -> int:
    from .index.build import add_to_index
    from .index.shardbuild import add_to_sharded
    from .index.shards import is_sharded

    bar = _progress(args)
    add = add_to_sharded if is_sharded(args.index) else add_to_index
    s = run_job(add(args.index, args.paths, workers=args.workers), bar)
    if bar:
        bar.close()
    _print_summary(s)
    return 0 if s.added or s.duplicates or not s.failed else 1


def cmd_index_remove(args) -> int:
    from .index.build import remove_from_index
    from .index.shardbuild import remove_from_sharded
    from .index.shards import is_sharded

    n = (remove_from_sharded if is_sharded(args.index) else remove_from_index)(args.index, args.reference_ids)
    missing = len(set(args.reference_ids)) - n
    print(f"removed {n} reference(s)" + (f"; {missing} id(s) not in the index" if missing else ""), file=sys.stderr)
    return 0 if n else 1


def cmd_index_info(args) -> int:
    from .engine import Engine
    from .index.hashlists import hash_lists
    from .releases import RELEASES_ADVICE

    with Engine.open(args.index) as eng:
        info = eng.info
        m = eng.manifest
        lists = [] if m.get("shards") else hash_lists(eng.store)
        data = {
            "name": info.name, "path": info.path, "references": info.num_references,
            "descriptors": info.descriptors, "size_bytes": info.size_bytes, "format_version": info.format_version,
            "created": info.created, "updated": m.get("updated"), "reference_root": m.get("reference_root"),
            "features": m["features"], "local_index": m["local_index"], "counts": m["counts"],
            "calibration": info.calibration, "calibrated_copy_share": info.copy_share,
            "calibrated_with": eng.calibrated_with, "releases_changed": list(info.releases_changed),
            "shards": m.get("shards", 0),
            "hash_lists": [{"name": h.name, "entries": h.entries, "format": h.format, "source": h.source,
                            "imported": h.imported} for h in lists]}
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        for k, v in data.items():
            print(safe(f"{k:>15}: {v}"))
    if info.releases_changed:
        print(safe(f"warning: calibrated with other library releases ({'; '.join(info.releases_changed)}): "
                   f"{RELEASES_ADVICE}"), file=sys.stderr)
    return 0


def cmd_index_add_hashes(args) -> int:
    from .index.hashlists import add_hash_list

    s = add_hash_list(args.index, args.list, args.name)
    print(safe(f"hash list {s.name!r} ({s.format}): {s.added} entries imported, {len(s.problems)} line(s) "
               f"skipped; {s.total_entries} hash-list entries in the index"), file=sys.stderr)
    for line, problem in s.problems[:50]:
        print(safe(f"  line {line}: {problem}"), file=sys.stderr)
    if len(s.problems) > 50:
        print(f"  ... and {len(s.problems) - 50} more", file=sys.stderr)
    return 0


def cmd_index_remove_list(args) -> int:
    from .index.hashlists import remove_hash_list

    n = remove_hash_list(args.index, args.name)
    print(safe(f"removed hash list {args.name!r} ({n} entries)"), file=sys.stderr)
    return 0


def cmd_index_export_hashes(args) -> int:
    from .index.hashlists import export_hashes

    n = export_hashes(args.index, args.out, args.format)
    print(safe(f"wrote {n} reference PDQ hashes to {args.out} ({args.format})"), file=sys.stderr)
    return 0


def cmd_index_verify(args) -> int:
    from .index.verify import verify_index

    bar = _progress(args)
    report = run_job(verify_index(args.index), bar)
    if bar:
        bar.close()
    if args.json:
        print(json.dumps({"index": str(report.index_dir), "ok": report.ok,
                          "checks": [{"subject": c.subject, "status": c.status, "message": c.message}
                                     for c in report.checks]}, indent=2))
    else:
        for c in report.checks:
            print(safe(f"{c.status:>9}  {c.subject}" + (f": {c.message}" if c.message else "")))
        print(safe(f"{report.index_dir}: " + ("sound" if report.ok else f"{len(report.problems)} problem(s) found")),
              file=sys.stderr)
    return 0 if report.ok else 1


def _query_files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    unsupported: list[tuple[str, str]] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(scan_images(p, unsupported))
        else:
            out.append(p)
    for path, reason in unsupported:
        print(safe(f"copylens query: {path}: {reason}"), file=sys.stderr)
    return out


def _evidence_json(m) -> dict:
    ev = m.evidence
    return {
        "reference_id": m.reference_id, "score": round(m.score, 6), "inliers": ev.num_inliers,
        "mirrored": ev.mirrored,
        "homography": None if ev.homography is None else ev.homography.round(6).tolist(),
        "outline": None if ev.outline is None else ev.outline.round(2).tolist(),
        "query_points": ev.query_points.round(2).tolist(),
        "reference_points": ev.reference_points.round(2).tolist(),
        "signals": {k: round(v, 6) for k, v in m.signals.items()},
        **({"sibling": m.sibling} if m.sibling else {}),
    }


def _hash_json(h) -> dict:
    return {"list": h.list_name, "entry_id": h.entry_id, "tags": list(h.tags), "distance": h.distance,
            "quality": h.quality, "entry_quality": h.entry_quality, "confidence": round(h.confidence, 6),
            "transform": h.transform, "box": None if h.box is None else [round(v, 1) for v in h.box],
            "evidence": "PDQ hash only (the list holds no image)"}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def unique_query_ids(files: list[Path]) -> dict[Path, str]:
    """Query ids for the CSV/JSON output: the file stem, or the file name with its extension when two
    files share a stem (``a.jpg`` and ``a.png``), or the full path when even that repeats."""
    stems = Counter(f.stem for f in files)
    names = Counter(f.name for f in files)
    return {f: f.stem if stems[f.stem] == 1 else f.name if names[f.name] == 1 else str(f) for f in files}


def _copy_share(text: str) -> float | str:
    """``--copy-share``: "auto", a share such as 0.1, or a percentage such as 10%."""
    from .prior import check_share

    t = text.strip()
    if t.lower() == "auto":
        return "auto"
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto', a share such as 0.1 or a percentage such as 10%, "
                                         f"got {text!r}") from None
    try:
        return check_share(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _write_result(r, f: Path, writer, results: list, tty: bool) -> None:
    """One query's result as CSV rows (``writer``) or as an entry of ``results`` (JSON)."""
    if writer:
        rows = [[r.query_id, m.reference_id, f"{m.score:.6f}"] for m in r.matches]
        rows += [[r.query_id, f"hashlist:{h.list_name}:{h.entry_id}", f"{h.confidence:.6f}"]
                 for h in r.hash_matches]
        for row in rows:
            writer.writerow([safe(c) for c in row] if tty else row)
    else:
        results.append({"query_id": r.query_id, "path": str(f), "image_size": list(r.image_size),
                        "copy_share": r.copy_share, "timings_ms": {k: round(v, 2) for k, v in r.timings_ms.items()},
                        "regions": [{"box": list(g.box), "score": g.score, "kind": g.kind,
                                     **({"quad": list(g.quad)} if g.quad is not None else {})}
                                    for g in r.regions],
                        "matches": [_evidence_json(m) for m in r.matches],
                        "hash_matches": [_hash_json(h) for h in r.hash_matches]})


def cmd_query(args) -> int:
    from .engine import Engine, QueryConfig
    from .prior import estimate_share, shift_result

    files = _query_files(args.paths)
    if not files:
        print("copylens query: no image files given", file=sys.stderr)
        return 1
    qids = unique_query_ids(files)
    auto = args.copy_share == "auto"
    config = QueryConfig(copy_share=None if auto or args.copy_share is None else args.copy_share)
    try:
        out = open(args.out, "w", newline="", encoding="utf-8") if args.out else sys.stdout
    except OSError as exc:
        print(safe(f"copylens query: cannot write {args.out}: {exc.strerror or exc}"), file=sys.stderr)
        return 2
    ok = failed = 0
    interrupted = False
    results: list[dict] = []
    held = []  # with --copy-share auto: every result, written once the queries' share is known
    try:
        with Engine.open(args.index, config, ray=args.ray) as eng:
            calibrated = eng.require_calibrated_share() if auto else None
            if eng.hashlists is not None and args.hash_max_distance is not None:
                eng.hashlists.config = dataclasses.replace(eng.hashlists.config, max_distance=args.hash_max_distance)
            writer = csv.writer(out) if args.format == "csv" else None
            tty = out.isatty()  # to a terminal, ids are shown safely; to a file or a pipe, exactly
            if writer:
                writer.writerow(["query_id", "reference_id", "score"])
            try:
                for i, f in enumerate(files):
                    try:
                        r = run_job(eng.search(f, query_id=qids[f], top_k=args.top_k))
                    except ImageLoadError as exc:
                        print(safe(f"copylens query: skipped {exc.path}: {exc.reason}"), file=sys.stderr)
                        failed += 1
                        continue
                    ok += 1
                    if auto:
                        held.append((r, f))
                    else:
                        _write_result(r, f, writer, results, tty)
                    if not args.quiet and len(files) > 1:
                        print(f"\rquery {i + 1}/{len(files)}", end="", file=sys.stderr)
            except KeyboardInterrupt:  # the queries done so far are still written (and re-raised below)
                interrupted = True
            if not args.quiet and len(files) > 1:
                print(file=sys.stderr)
            if auto:
                share = calibrated
                try:
                    est = estimate_share([r.best.score if r.best else 0.0 for r, _ in held], calibrated)
                    share = est.share
                    print(f"copylens query: copies estimated at {share:.0%} of these {est.queries} queries "
                          f"(the index's confidence assumes {calibrated:.0%}); scores are for {share:.0%}",
                          file=sys.stderr)
                except ValueError as exc:
                    print(f"copylens query: {exc}; scores are for the index's {calibrated:.0%}", file=sys.stderr)
                for r, f in held:
                    _write_result(shift_result(r, share), f, writer, results, tty)
        if args.format == "json":
            json.dump(results, out, indent=1)
            out.write("\n")
    finally:
        if args.out:
            out.close()
    if interrupted:
        print(f"copylens query: interrupted after {ok + failed} of {len(files)} queries; their results are written",
              file=sys.stderr)
        raise KeyboardInterrupt
    if failed:
        print(f"copylens query: {ok} processed, {failed} skipped", file=sys.stderr)
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="copylens", description="CopyLens: find which known image a query "
                                "is a modified copy of, and show the evidence.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    ix = sub.add_parser("index", help="build and maintain reference indexes")
    ixs = ix.add_subparsers(dest="index_command", metavar="SUBCOMMAND")
    ixs.required = True
    b = ixs.add_parser("build", help="build (or resume building) an index from a folder of references")
    b.add_argument("ref_dir", help="folder of reference images (searched recursively)")
    b.add_argument("--out", required=True, help="index directory to create or resume")
    b.add_argument("--workers", type=int, default=None, help="extraction threads (default: all cores)")
    b.add_argument("--metadata", metavar="FILE.csv",
                   help="CSV sidecar: a reference_id (or file) column and any of title, artist, "
                        "inventory_number, source_url, licence, ... shown beside each reference")
    b.add_argument("--global", dest="global_descriptors", default=None, metavar="NAME[,NAME...]",
                   help="global descriptors for dual retrieval: pdq, timm:<model>[:<weights>], "
                        "torchscript:<path>, copylens-<name>, or none for SIFT only (default: pdq,copylens-sscd18g; "
                        "pdq alone builds twice as fast)")
    b.add_argument("--no-calibrate", action="store_true", help="skip fitting the confidence model")
    b.add_argument("--shards", type=_positive_int, default=None, metavar="K",
                   help="write a sharded index of K self-contained parts (queries search them all)")
    b.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                   help="with --shards: extract on a Ray cluster (auto: the cluster this machine joined, else "
                        "a local Ray instance); needs the cluster extra")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_index_build)
    a = ixs.add_parser("add", help="add images or folders to an index")
    a.add_argument("index")
    a.add_argument("paths", nargs="+", metavar="PATH")
    a.add_argument("--workers", type=int, default=None)
    a.add_argument("-q", "--quiet", action="store_true")
    a.set_defaults(func=cmd_index_add)
    r = ixs.add_parser("remove", help="remove references by id")
    r.add_argument("index")
    r.add_argument("reference_ids", nargs="+", metavar="REFERENCE_ID")
    r.set_defaults(func=cmd_index_remove)
    i = ixs.add_parser("info", help="describe an index")
    i.add_argument("index")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_index_info)
    ah = ixs.add_parser("add-hashes", help="import a PDQ hash list (CSV/TSV, ThreatExchange signal file or JSON)")
    ah.add_argument("index")
    ah.add_argument("list", metavar="LIST", help="the hash list file")
    ah.add_argument("--name", required=True, help="the list's name, shown with its matches")
    ah.set_defaults(func=cmd_index_add_hashes)
    rl = ixs.add_parser("remove-list", help="remove an imported hash list")
    rl.add_argument("index")
    rl.add_argument("name", metavar="LISTNAME")
    rl.set_defaults(func=cmd_index_remove_list)
    eh = ixs.add_parser("export-hashes", help="write the references' PDQ hashes as a hash list to share")
    eh.add_argument("index")
    eh.add_argument("--out", required=True, metavar="LIST")
    eh.add_argument("--format", choices=("csv", "threatexchange"), default="csv",
                    help="csv: pdq,id,quality with a header; threatexchange: 'pdq <hex>' lines (no ids)")
    eh.set_defaults(func=cmd_index_export_hashes)
    v = ixs.add_parser("verify", help="check every file of an index against the checksums its manifest recorded")
    v.add_argument("index")
    v.add_argument("--json", action="store_true")
    v.add_argument("-q", "--quiet", action="store_true")
    v.set_defaults(func=cmd_index_verify)

    q = sub.add_parser("query", help="find the references that query images are copies of")
    q.add_argument("index")
    q.add_argument("paths", nargs="+", metavar="PATH", help="query images or folders of them")
    q.add_argument("--top-k", type=_positive_int, default=10, help="matches reported per query (default 10)")
    q.add_argument("--out", help="write results here instead of standard output")
    q.add_argument("--format", choices=("csv", "json"), default="csv",
                   help="csv: query_id,reference_id,score (ISC2021); json: with the evidence")
    q.add_argument("--hash-max-distance", type=int, default=None, metavar="BITS",
                   help="PDQ distance up to which a hash-list entry matches (default 31, Meta's guidance)")
    q.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                   help="a sharded index's shards are held by Ray actors on this cluster (default: in this process)")
    q.add_argument("--copy-share", type=_copy_share, default=None, metavar="auto|SHARE",
                   help="the share of copies among these queries, such as 10%% or 0.1 (default: the share the "
                        "index was calibrated for, shown by 'copylens index info'); 'auto' estimates it from "
                        "the queries' own scores (20 or more) and writes every result at the end. Scores move "
                        "by Bayes' rule; rankings never change")
    q.add_argument("-q", "--quiet", action="store_true")
    q.set_defaults(func=cmd_query)

    for ep in sorted(entry_points(group="copylens.commands"), key=lambda e: e.name):
        try:
            ep.load()(sub)
        except ImportError as exc:  # e.g. the GUI without Qt installed: the rest still works
            print(f"copylens: the {ep.name!r} commands are unavailable ({exc})", file=sys.stderr)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\ncopylens: interrupted (everything committed so far is kept)", file=sys.stderr)
        return 130
    except CopyLensError as exc:
        print(safe(f"copylens: error: {exc}"), file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
