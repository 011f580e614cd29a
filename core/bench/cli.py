"""``copylens eval`` and ``copylens bench make|run``: registered through the ``copylens.commands`` entry point.

Exit codes: 0 success, 1 failure, 2 usage error. Errors are printed as one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from copylens.core.errors import CopyLensError
from copylens.core.progress import ConsoleProgress, run_job

DEFAULT_TOTALS = {"references": 1000, "queries": 300, "distractors": 300}  # bench make without --config


def _fail(prog: str, exc: BaseException | str) -> int:
    print(f"copylens {prog}: error: {exc}", file=sys.stderr)
    return 1


def cmd_eval(args) -> int:
    from copylens.core.bench.metrics import evaluate, format_table, read_ground_truth, read_predictions

    try:
        gt = read_ground_truth(args.gt)
        preds = read_predictions(args.pred)
        m = evaluate(gt, preds, threshold=args.threshold)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return _fail("eval", exc)
    print(json.dumps(m.to_dict(), indent=2, ensure_ascii=False) if args.json else format_table(m))
    return 0


def cmd_make(args) -> int:
    from copylens.core.bench.make import Source, load_config, make_benchmark

    try:
        cfg = load_config(args.config) if args.config else None
    except (OSError, ValueError) as exc:
        return _fail("bench make", exc)
    sources = (list(cfg.sources) if cfg else []) + [Source(Path(p), args.content) for p in args.sources]
    if not sources:
        print("copylens bench make: error: give SOURCE folders or --config", file=sys.stderr)
        return 2

    def total(key: str) -> int:
        given = getattr(args, key)
        if given is not None:
            return given
        return getattr(cfg, key) if cfg else DEFAULT_TOTALS[key]

    seed = args.seed if args.seed is not None else (cfg.seed if cfg else 0)
    bar = ConsoleProgress()
    try:
        s = run_job(make_benchmark(sources, args.out, total("references"), total("queries"), total("distractors"),
                                   seed=seed), bar)
    except (CopyLensError, OSError, ValueError) as exc:
        bar.close()
        return _fail("bench make", exc)
    bar.close()
    print(f"wrote {s.out_dir}: {s.references} references, {s.copies} copies, {s.distractors} distractors "
          f"({s.seconds:.0f} s)", file=sys.stderr)
    for content, counts in s.per_content.items():
        print(f"  {content}: " + ", ".join(f"{v} {k}" for k, v in counts.items()), file=sys.stderr)
    for path, reason in s.failed[:10]:
        print(f"  skipped {path}: {reason}", file=sys.stderr)
    return 0 if s.copies else 1


def cmd_run(args) -> int:
    from copylens.core.bench.run import format_report, run_benchmark
    from copylens.core.globaldesc.registry import parse_names

    bar = ConsoleProgress()
    try:
        names = parse_names(args.global_descriptors)
        r = run_job(run_benchmark(args.dir, args.index, run_dir=args.out, workers=args.workers,
                                  query_threads=args.query_threads, top_k=args.top_k,
                                  threshold=args.threshold, global_descriptors=names,
                                  build=not args.no_build), bar)
    except (CopyLensError, OSError, ValueError) as exc:
        bar.close()
        return _fail("bench run", exc)
    bar.close()
    print(json.dumps(r.to_dict(), indent=2, ensure_ascii=False) if args.json else format_report(r))
    return 0


def _positive(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return v


def register(subparsers) -> None:
    """Add ``eval`` and ``bench`` to the ``copylens`` command line."""
    e = subparsers.add_parser("eval", help="score predictions against ground truth (ISC2021 metrics)")
    e.add_argument("--gt", required=True, help="ground truth CSV: query_id,reference_id[,edit,content,...]")
    e.add_argument("--pred", required=True, help="predictions CSV: query_id,reference_id,score")
    e.add_argument("--threshold", type=float, default=None,
                   help="score from which a prediction counts for precision@1, accuracy@1 and MAP@5")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.set_defaults(func=cmd_eval)

    b = subparsers.add_parser("bench", help="make and run copy-detection benchmarks")
    bs = b.add_subparsers(dest="bench_command", metavar="SUBCOMMAND")
    bs.required = True
    m = bs.add_parser("make", help="build a benchmark folder from folders of images")
    m.add_argument("sources", nargs="*", metavar="SOURCE", help="folders of images (searched recursively)")
    m.add_argument("--out", required=True, help="benchmark folder to create (must be empty or absent)")
    m.add_argument("--config", help="benchmark definition, e.g. bench/dev.toml (its sources come first)")
    m.add_argument("--content", default="photo", choices=("photo", "graphics"),
                   help="content label of the SOURCE folders (default photo)")
    for key, what in (("references", "reference images"), ("queries", "edited copies of references"),
                      ("distractors", "edited non-reference queries")):
        m.add_argument(f"--{key}", type=_positive, default=None,
                       help=f"number of {what} (default: the config's, else {DEFAULT_TOTALS[key]})")
    m.add_argument("--seed", type=int, default=None, help="random seed (default: the config's, else 0)")
    m.set_defaults(func=cmd_make)

    r = bs.add_parser("run", help="index, query and score a benchmark folder")
    r.add_argument("dir", help="benchmark folder made by 'bench make'")
    r.add_argument("--index", default=None, help="index folder (default DIR/index; reused when complete)")
    r.add_argument("--out", default=None, help="run folder for predictions and report (default DIR/runs/<time>)")
    r.add_argument("--workers", type=int, default=None, help="index build threads (default: all cores)")
    r.add_argument("--no-build", action="store_true",
                   help="query --index as it is (it may hold more references than DIR/references); never build")
    r.add_argument("--global", dest="global_descriptors", default=None, metavar="NAME[,NAME...]",
                   help="global descriptors of a new index (default: the index default; 'none': SIFT only)")
    r.add_argument("--query-threads", type=int, default=1,
                   help="queries run at once (default 1: latency is measured as a user meets it)")
    r.add_argument("--top-k", type=int, default=10, help="matches kept per query (default 10)")
    r.add_argument("--threshold", type=float, default=0.5, help="decision threshold (default 0.5)")
    r.add_argument("--json", action="store_true", help="print JSON instead of a table")
    r.set_defaults(func=cmd_run)
