"""Would a lower global recall floor find lost copies? Each query's nearest references for one global
descriptor (as the engine's global recall sees them: whitened, background-normalised, rescaled), against
a benchmark run's predictions: per floor, the copies whose reference was missing from the run's returned
matches and would be recalled (among a descriptor's best ``global_candidates``), and the extra candidates
per query that floor costs; and the same for the engine's own rule (``recalled_rows``: the floor, or a
distinct nearest reference below it) against the floor alone.

    .venv/bin/python bench/global_floor.py BENCH INDEX RUN [--descriptor copylens-sscd18g]

RUN is the ``copylens bench run`` folder whose predictions.csv was made with INDEX.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

from copylens.core.bench.make import read_benchmark_query
from copylens.core.bench.metrics import read_ground_truth, read_predictions
from copylens.core.engine import Engine, recalled_rows

LOWER = (0.25, 0.2, 0.15, 0.1)  # floors tried below the engine's (QueryConfig.global_recall_floor)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", type=Path)
    ap.add_argument("index", type=Path)
    ap.add_argument("run", type=Path)
    ap.add_argument("--descriptor", default="copylens-sscd18g")
    a = ap.parse_args()
    gt = read_ground_truth(a.bench / "ground_truth.csv")
    returned = defaultdict(set)
    for p in read_predictions(a.run / "predictions.csv"):
        returned[p.query_id].add(p.reference_id)
    recalled: dict[float, Counter] = defaultdict(Counter)
    extra: Counter = Counter()
    wrong = 0  # queries the rule gave an extra candidate that is not their reference
    lost = Counter()
    with Engine.open(a.index) as eng:
        branch = next((b for b in eng.globals if b.name == a.descriptor), None)
        if branch is None:
            raise SystemExit(f"{a.index} has no global descriptor {a.descriptor!r}")
        keep = eng.config.global_candidates
        floors = (dict(eng.config.global_recall_floor)[branch.descriptor.metric], *LOWER)
        row_of = dict(eng.store.rows_by_id())
        for g in gt:
            # the engine's own pixels (decoded at its query_max_side), as global_alone.py reads them
            image = read_benchmark_query(a.bench, g.query_id, eng.config.query_max_side)
            ranked = sorted(branch.search(branch.query(image.pixels), 20).items(), key=lambda kv: -kv[1])
            at_default = len([r for r, s in ranked if s >= floors[0]][:keep])
            missing = bool(g.reference_id) and g.reference_id not in returned[g.query_id]
            lost[g.content] += missing
            for f in floors:
                rows = [r for r, s in ranked if s >= f][:keep]
                extra[f] += len(rows) - at_default
                if missing and row_of[g.reference_id] in rows:
                    recalled[f][g.content] += 1
            rows = recalled_rows(dict(ranked), branch.descriptor.metric, eng.config)
            extra["rule"] += len(rows) - at_default
            wrong += len(rows) > at_default and (not g.reference_id or row_of[g.reference_id] not in rows)
            if missing and row_of[g.reference_id] in rows:
                recalled["rule"][g.content] += 1
    print(f"{len(gt)} queries; copies whose reference the run did not return, by kind: {dict(lost)}")
    for f in floors:
        print(f"floor {f:.2f}: {extra[f] / len(gt):.2f} more global candidates per query; of those copies it "
              f"recalls {sum(recalled[f].values())} {dict(recalled[f])}")
    c = eng.config
    print(f"the engine's rule (floor, or a distinct nearest reference at or above "
          f"{dict(c.global_recall_distinct).get(branch.descriptor.metric)} and {c.global_recall_ratio:g} x the "
          f"next): {extra['rule'] / len(gt):.3f} more global candidates per query, {wrong} of them not "
          f"the query's reference; of those copies it recalls {sum(recalled['rule'].values())} "
          f"{dict(recalled['rule'])}")


if __name__ == "__main__":
    main()
