"""Build extraction on Ray: actors that extract chunks of reference files (see the package documentation)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import CopyLensError
from ..features import FeatureConfig
from ..globaldesc import GlobalDescriptor, create_descriptor
from ..index.build import BATCH, extract_chunk
from ..index.store import ReferenceStore, StoredReference
from ..progress import Job, Progress
from . import RESTARTS, gpu_share, ray, require_ray


def _device(device: str | None) -> dict:
    return {"device": device} if device not in (None, "auto") else {}


class _Extractor:
    """Feature settings and global descriptors loaded once per worker; extracts chunks of files."""

    def __init__(self, config: dict, descriptors: list[tuple[str, bool]], device: str | None) -> None:
        """``descriptors``: (registry name, neural) pairs; neural ones run on ``device`` (default: CUDA
        when the worker's node has a GPU)."""
        self.cfg = FeatureConfig.from_dict(config)
        kw = _device(device)
        self.descs = [create_descriptor(n, **(kw if neural else {})) for n, neural in descriptors]

    def extract(self, items: list[tuple[str, str]]) -> list[StoredReference | tuple[str, str]]:
        return extract_chunk(items, self.cfg, self.descs)


def ray_extract(actors: int | None = None, device: str | None = None):
    """An extraction function for builds that runs on the connected Ray cluster (:func:`connect` first):
    ``actors`` extraction actors (default: one per CPU of the cluster)."""
    require_ray()

    def run(store: ReferenceStore, items: list[tuple[Path, str]], cfg: FeatureConfig, workers: int,
            descs: Sequence[GlobalDescriptor]) -> Job[tuple[int, int, list[tuple[str, str]]]]:
        if not items:
            return 0, 0, []
        n = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        cls = ray.remote(_Extractor).options(num_cpus=1, max_restarts=RESTARTS, max_task_retries=RESTARTS,
                                             **gpu_share(n, device))
        pool_actors = [cls.remote(cfg.to_dict(), [(d.name, d.metric == "ip") for d in descs], device) for _ in range(n)]
        chunks = [[(str(p), rid) for p, rid in items[i:i + BATCH]] for i in range(0, len(items), BATCH)]
        added = dups = done = 0
        failures: list[tuple[str, str]] = []
        try:
            results = ray.util.ActorPool(pool_actors).map(lambda a, c: a.extract.remote(c), chunks)
            for chunk in results:  # in submission order: rows follow the scan, as in a local build
                refs = [r for r in chunk if isinstance(r, StoredReference)]
                fails = [r for r in chunk if not isinstance(r, StoredReference)]
                rows, d = store.insert_batch(refs, fails)
                added, dups, done = added + len(rows), dups + d, done + len(chunk)
                failures += fails
                yield Progress("extract", done, len(items), f"{n} Ray workers")
        except ray.exceptions.RayActorError as exc:
            raise CopyLensError(f"a Ray extraction worker died twice ({type(exc).__name__}); rerun the build: "
                                "it resumes after the references already committed") from None
        finally:
            for a in pool_actors:
                ray.kill(a)
        return added, dups, failures

    return run
