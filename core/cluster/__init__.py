"""CopyLens on a Ray cluster (the optional extra ``pip install 'copylens[cluster]'``).

Two things run on Ray, both behind interfaces the single-machine code already has:

* **Extraction** of a build (:func:`.extract.ray_extract`, an ``ExtractFn`` for :func:`copylens.core.index.build._build_index`):
  extraction actors, one per CPU of the cluster, each load the feature settings and global descriptors
  once (CUDA where their node has a GPU) and turn chunks of reference files into stored references; the
  driver commits them in order, so ids, rows and resumption are those of a local build. This process
  alone writes the index.
* **Queries** of a sharded index (:class:`.shards.RayShards`, a :class:`~copylens.core.index.shards.ShardSet`): one actor per
  shard holds the shard's database and FAISS indexes in its memory (:class:`~copylens.core.index.shards.Shard`,
  FAISS GPU indexes where its node has a GPU); the engine in this process fans every search out to all
  actors at once and merges the answers.

Workers read the reference files and shard folders by the paths this process gives them: on a real cluster
the folders must be on storage every node mounts at the same path (NFS, a cluster file system).

A shard actor that dies is restarted once by Ray and the call retried on it (``max_restarts``,
``max_task_retries``); a shard that still cannot answer raises :class:`ShardUnavailableError`, so a
ranking is never silently missing a shard. Ray carries arguments and answers between the cluster's
processes with its own serialisation; CopyLens sends only arrays, numbers, strings and its dataclasses of
them, and never reads pickled data from files.
"""

from __future__ import annotations

from ..errors import CopyLensError

try:
    import ray
except ImportError:  # pragma: no cover - the extra is installed in CI
    ray = None

RESTARTS = 1  # times Ray restarts a dead actor (and retries the call that was running on it)
INSTALL = "Ray is not installed: pip install 'copylens[cluster]'"


class ShardUnavailableError(CopyLensError):
    """A shard's Ray actor died and could not be restarted: the query had no complete answer."""


def require_ray() -> None:
    if ray is None:
        raise CopyLensError(INSTALL)


def connect(address: str = "auto", num_cpus: int | None = None) -> None:
    """Join the Ray cluster at ``address``, or with ``"auto"`` the one this machine belongs to (``ray
    start``, or ``RAY_ADDRESS``), else a new local instance. A process already connected stays so."""
    require_ray()
    if ray.is_initialized():
        return
    quiet = {"log_to_driver": False, "configure_logging": False}
    if address != "auto":
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise CopyLensError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
        return
    try:
        ray.init(address="auto", **quiet)
    except (ConnectionError, ValueError, RuntimeError):
        ray.init(num_cpus=num_cpus, include_dashboard=False, **quiet)


def gpu_share(actors: int, device: str | None) -> dict:
    """Ray options giving each of ``actors`` actors an equal share of the cluster's GPUs, when it has any
    and ``device`` is not "cpu": Ray then shows the actor its GPU, so FAISS GPU indexes
    (:mod:`copylens.core.index.local`, :mod:`~copylens.core.index.globalindex`) and CUDA descriptors
    are used there as they are in a single process with a GPU."""
    gpus = float(ray.cluster_resources().get("GPU", 0)) if device != "cpu" else 0.0
    if gpus <= 0:
        return {}
    return {"num_gpus": min(1.0, gpus / max(1, actors))}  # pragma: no cover - no GPU on CI

