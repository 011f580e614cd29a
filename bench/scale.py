"""Scale benchmark (issue 12): the dev benchmark's queries against its references plus N distractors.

    .venv/bin/python bench/scale.py make --out /tmp/scale-distractors --n 100000          # ~15 min, 2 workers
    .venv/bin/python bench/scale.py check --distractors /tmp/scale-distractors --work /tmp/scale-check
    .venv/bin/python bench/scale.py run --bench /tmp/copylens-dev2 --distractors /tmp/scale-distractors \\
        --sizes 0,10000,30000,100000 --work /tmp/scale-work --out bench/results/scale.json
    .venv/bin/python bench/scale.py report --results bench/results/scale.json --plot resources/scale.png

``make`` chooses the source images the dev benchmark (``--bench``, made by ``copylens bench make --config
bench/dev_v2.toml``) uses in no role: not a reference, not the source of a distractor query, not a
paste/combo background of a query (replayed with :func:`copylens.core.bench.make.planned_backgrounds`, exact
because the benchmark records no failed image). It also drops the mirror twin of a used file (tuxpaint's
``X_mirror.png``) and any file within PDQ distance 31 (any of the 16 dihedral/inverted query variants) of a
used file or of an earlier kept one: byte- or pixel-identical files and resized copies. The kept files go to
:func:`copylens.core.bench.distractors.make_distractors` (the composition and how images are made are in its
module docstring).

``check``: (1) distinctness: an index of a random sample of distractors, queried with distractors from the
sample and from outside it; a match >= 0.5 with a *different* distractor means two are copies to CopyLens;
(2) leaks: source-derived distractors (all within the first ``--leak-n``) and a sample of procedural ones
queried against the dev references' index; a match >= 0.5 is dev content (or a false match) to look at.

``run``: per N (0 = the dev references alone) a fresh index of the dev references plus the first N
distractors (a folder of hard links: a build reads through symlinks but names a reference by its resolved
path, so symlinked references would lose their folder in their ids), built in its own process (build
images/s for every step including self-calibration, peak RSS, CPU seconds); the RAM of the loaded FAISS
indexes in another; then ``copylens bench run --no-build`` in a third (the dev benchmark's 2,052 queries
one at a time: latency, peak RSS, μAP / recall@1 by content kind). Results are written atomically after
every N and every step's JSON is kept in WORK/nN, so finished N and steps are skipped on a rerun. Children
run with the interpreter and environment of this process (set PYTHONPATH to run a pinned copy of the code).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from copylens.core.fileio import write_json_atomic
from copylens.core.progress import ConsoleProgress, run_job

ROOT = Path(__file__).resolve().parents[1]
PDQ_NEAR = 31  # PDQ bits: at or below, two files are the same picture (Meta's match threshold)
DISTRACTOR_DIR = "scale"  # distractor references are DIR/references/scale/images/...: ids "scale/..."
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale_measure import build_child, collect_run, ram_child, report_main  # noqa: E402

# ------------------------------------------------------------------------------------------ make

def select_sources(bench: Path) -> tuple[list[str], list[tuple[str, str]], dict]:
    """Files of the benchmark's source folders it uses in no role, and (path, reason) of those dropped."""
    from copylens.core.bench.make import Source, list_images, planned_backgrounds, split_benchmark
    from copylens.core.globaldesc.pdq import PdqDescriptor
    from copylens.core.imageio import load_image, scan_images

    meta = json.loads((bench / "benchmark.json").read_text(encoding="utf-8"))
    if meta["summary"]["failed"]:
        raise SystemExit(f"{bench}: the benchmark skipped images, so its backgrounds cannot be replayed exactly")
    srcs = [Source(Path(s["path"]), s["content"], s["references"], s["copies"], s["distractors"])
            for s in meta["sources"]]
    totals = [sum(s[k] for s in meta["sources"]) for k in ("references", "copies", "distractors")]
    split = split_benchmark(srcs, *totals, seed=meta["seed"])
    ids = {(Path(ss.name) / p.relative_to(s.path)).with_suffix("").as_posix()
           for s, ss in zip(srcs, split.splits, strict=True) for p in ss.references}
    on_disk = {p.relative_to(bench / "references").with_suffix("").as_posix() for p in scan_images(bench / "references")}
    if ids != on_disk:
        raise SystemExit(f"{bench}: the replayed split does not give its references ({len(ids ^ on_disk)} differ)")
    backgrounds = {b for b in planned_backgrounds(split, meta["seed"], meta["edits"]) if b is not None}
    used = set(backgrounds)
    for ss in split.splits:
        used |= set(ss.references) | set(ss.distractors)
    every = [p for s in srcs for p in list_images(s.path)]
    dropped: list[tuple[str, str]] = []
    stems = {(p.parent, p.stem.removesuffix("_mirror")) for p in used}
    cands = []
    for p in every:
        if p in used:
            continue
        if (p.parent, p.stem.removesuffix("_mirror")) in stems:
            dropped.append((str(p), "mirror twin of a file the benchmark uses"))
        else:
            cands.append(p)
    pdq = PdqDescriptor()

    def bits(p: Path, query: bool) -> np.ndarray:
        px = load_image(p, max_side=512).pixels
        v = pdq.extract_query(px).vectors if query else pdq.extract([px]).vectors
        return np.unpackbits(v, axis=1).astype(np.float32)

    used_bits = np.concatenate([bits(p, False) for p in sorted(used)])
    kept, kept_bits = [], np.zeros((0, 256), np.float32)
    for p in cands:
        q = bits(p, True)  # 16 variants
        d_used = (q.sum(1)[:, None] + used_bits.sum(1)[None] - 2 * q @ used_bits.T).min()
        d_kept = (q.sum(1)[:, None] + kept_bits.sum(1)[None] - 2 * q @ kept_bits.T).min() if len(kept) else 256
        if d_used <= PDQ_NEAR:
            dropped.append((str(p), f"PDQ distance {int(d_used)} to a file the benchmark uses"))
        elif d_kept <= PDQ_NEAR:
            dropped.append((str(p), f"PDQ distance {int(d_kept)} to another kept file"))
        else:
            kept.append(str(p))
            kept_bits = np.concatenate([kept_bits, q[:1]])
    stats = {"files": len(every), "used": len(used), "references": len(ids), "backgrounds": len(backgrounds),
             "kept": len(kept), "dropped": dict(Counter(r.split(" to ")[0].split(" ")[0] for _, r in dropped))}
    return kept, dropped, stats


def cmd_make(args) -> None:
    from copylens.core.bench.distractors import make_distractors

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sel = out / "sources.json"
    if sel.exists():
        kept = json.loads(sel.read_text(encoding="utf-8"))["kept"]
    else:
        t = time.monotonic()
        kept, dropped, stats = select_sources(Path(args.bench))
        write_json_atomic(sel, {"bench": str(args.bench), "kept": kept, "dropped": dropped, "stats": stats,
                                "seconds": time.monotonic() - t})
        print(f"sources: {json.dumps(stats)} ({time.monotonic() - t:.0f} s)", file=sys.stderr)
    bar = ConsoleProgress()
    s = run_job(make_distractors(kept, out, args.n, seed=args.seed, workers=args.workers), bar)
    bar.close()
    print(f"{s.written} images drawn in {s.seconds:.0f} s ({s.written / max(s.seconds, 1e-9):.1f}/s), "
          f"{len(s.failed)} failed; composition of {s.n}: {json.dumps(s.composition)}")
    for i, err in s.failed[:10]:
        print(f"  failed {i}: {err}", file=sys.stderr)


# ------------------------------------------------------------------------------------------ run

def provenance(distractors: Path) -> list[dict]:
    return json.loads((distractors / "provenance.json").read_text(encoding="utf-8"))["items"]


def hard_link(src: Path, dest: Path) -> None:
    """``dest`` as a hard link to ``src`` (a copy across file systems); kept when it already exists."""
    if dest.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def link_references(bench: Path, items: list[dict], distractors: Path, ref_dir: Path) -> int:
    """``ref_dir``: hard links to the benchmark's references and to ``items``' images; returns the count."""
    from copylens.core.imageio import scan_images

    n = 0
    pairs = [(p, ref_dir / p.relative_to(bench / "references")) for p in scan_images(bench / "references")]
    pairs += [(distractors / it["file"], ref_dir / DISTRACTOR_DIR / it["file"]) for it in items]
    for src, dest in pairs:
        if not src.exists():
            raise SystemExit(f"{src}: missing (run make first)")
        hard_link(src, dest)
        n += 1
    return n


def child(args: list[str], log: Path, saved: Path) -> dict:
    """Run this script (or copylens) in a child process; its stdout ends with JSON, kept in ``saved`` (a rerun
    returns that instead of running the step again). Adds the child's wall and CPU seconds and the load
    average before and after (the machine may be shared: CPU seconds are the figure contention changes least)."""
    if saved.exists():
        return json.loads(saved.read_text(encoding="utf-8"))
    t, load0, ru0 = time.monotonic(), os.getloadavg(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "w", encoding="utf-8") as err:
        res = subprocess.run([sys.executable, *args], stdout=subprocess.PIPE, stderr=err, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed ({res.returncode}); see {log}")
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = json.loads(res.stdout if res.stdout.lstrip().startswith("{") else res.stdout.strip().splitlines()[-1])
    out["_wall_seconds"] = time.monotonic() - t
    out["_cpu_seconds"] = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    out["_loadavg_before_after"] = [load0, os.getloadavg()]
    write_json_atomic(saved, out)
    return out


def cmd_run(args) -> None:
    bench, dis, work, out = Path(args.bench), Path(args.distractors), Path(args.work), Path(args.out)
    items = provenance(dis)
    results = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {"rows": {}}
    import copylens.core

    results["code"] = str(Path(copylens.core.__file__).parent)
    for n in (int(v) for v in args.sizes.split(",")):
        if str(n) in results["rows"] and not args.redo:
            print(f"N={n}: done, skipped", file=sys.stderr)
            continue
        if n > len(items):
            raise SystemExit(f"only {len(items)} distractors in {dis}; make more first")
        wd = work / f"n{n}"
        ref_dir, index, run_dir = wd / "references", wd / "index", wd / "run"
        wd.mkdir(parents=True, exist_ok=True)
        num_refs = link_references(bench, items[:n], dis, ref_dir)
        print(f"N={n}: {num_refs} references; building {index}", file=sys.stderr)
        if index.exists() and not (wd / "build.json").exists():
            shutil.rmtree(index)  # a build this script did not finish measuring: measure a fresh one
        build = child([__file__, "_build", str(ref_dir), str(index)], wd / "build.log", wd / "build.json")
        ram = child([__file__, "_ram", str(index)], wd / "ram.log", wd / "ram.json")
        print(f"N={n}: built ({build['images_per_s']:.1f} images/s); querying", file=sys.stderr)
        if run_dir.exists() and not (wd / "query.json").exists():
            shutil.rmtree(run_dir)
        report = child(["-m", "copylens.core", "bench", "run", str(bench), "--index", str(index), "--no-build",
                        "--out", str(run_dir), "--json"], wd / "query.log", wd / "query.json")
        results["rows"][str(n)] = collect_run(n, num_refs, build, ram, report, items[:n], run_dir)
        results["rows"][str(n)]["code"] = results["code"]  # rows of one file may come from different runs
        results["rows"] = dict(sorted(results["rows"].items(), key=lambda kv: int(kv[0])))
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out, results)
        print(f"N={n}: written to {out}", file=sys.stderr)


def cmd_ram(args) -> None:
    """Measure the RAM of each N's index again with this code (the index files as run built them) and update
    its row: for an index format change that leaves the search answers unchanged."""
    import copylens.core

    out, work = Path(args.out), Path(args.work)
    results = json.loads(out.read_text(encoding="utf-8"))
    for n in (int(v) for v in args.sizes.split(",")):
        row, wd = results["rows"].get(str(n)), work / f"n{n}"
        if row is None or not (wd / "index").exists():
            raise SystemExit(f"N={n}: no row in {out} or no index in {wd}")
        saved = wd / "ram-again.json"
        saved.unlink(missing_ok=True)
        ram = child([__file__, "_ram", str(wd / "index")], wd / "ram-again.log", saved)
        row["ram_first"] = row["ram"]
        row["ram"] = ram
        row["ram_kb_per_reference"] = ram.get("ram_bytes", ram["faiss_bytes"]) / row["references"] / 1024
        row["ram_code"] = str(Path(copylens.core.__file__).parent)
        write_json_atomic(out, results)
        print(f"N={n}: {row['ram_kb_per_reference']:.1f} KB per reference (was "
              f"{row['ram_first']['faiss_bytes'] / row['references'] / 1024:.1f} from the files)", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="draw the distractors")
    m.add_argument("--out", required=True)
    m.add_argument("--n", type=int, default=100_000)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--bench", default="/tmp/copylens-dev2", help="the dev benchmark whose content to avoid")
    m.add_argument("--workers", type=int, default=2)
    c = sub.add_parser("check", help="distinctness and leak checks")
    c.add_argument("--distractors", required=True)
    c.add_argument("--work", required=True)
    c.add_argument("--dev-index", default="/tmp/dev2-final", help="an index of the dev references")
    c.add_argument("--index-n", type=int, default=2000, help="distractors indexed for the distinctness check")
    c.add_argument("--queries", type=int, default=300, help="distractors queried against them (half indexed)")
    c.add_argument("--leak-n", type=int, default=30000, help="source-derived distractors among the first N")
    c.add_argument("--leak-procedural", type=int, default=300, help="procedural distractors against dev")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default=None, help="JSON of the findings (default WORK/check.json)")
    c.add_argument("--combined-index", default=None,
                   help="an index run built (dev references + first N distractors): both checks, nothing built")
    r = sub.add_parser("run", help="build, measure and query at each N")
    r.add_argument("--bench", default="/tmp/copylens-dev2")
    r.add_argument("--distractors", required=True)
    r.add_argument("--sizes", default="0,10000,30000,100000")
    r.add_argument("--work", required=True)
    r.add_argument("--out", default="bench/results/scale.json")
    r.add_argument("--redo", action="store_true", help="measure N again even when the results hold it")
    a2 = sub.add_parser("ram", help="measure the RAM of built indexes again with this code")
    a2.add_argument("--work", required=True)
    a2.add_argument("--sizes", required=True)
    a2.add_argument("--out", default="bench/results/scale.json")
    p = sub.add_parser("report", help="Markdown table and a PNG of every figure against N")
    p.add_argument("--results", default="bench/results/scale.json")
    p.add_argument("--plot", default="resources/scale.png")
    b = sub.add_parser("_build")  # internal: one index build in this process
    b.add_argument("ref_dir")
    b.add_argument("index")
    a = sub.add_parser("_ram")  # internal: the loaded FAISS indexes' size
    a.add_argument("index")
    args = ap.parse_args(argv)
    if args.cmd == "make":
        cmd_make(args)
    elif args.cmd == "check":
        from scale_check import check_main
        check_main(args)
    elif args.cmd == "run":
        cmd_run(args)
    elif args.cmd == "report":
        report_main(args)
    elif args.cmd == "ram":
        cmd_ram(args)
    elif args.cmd == "_build":
        print(json.dumps(build_child(args.ref_dir, args.index)))
    elif args.cmd == "_ram":
        print(json.dumps(ram_child(args.index)))


if __name__ == "__main__":
    main()
