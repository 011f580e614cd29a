"""A sharded index's shards held by Ray actors, one each (see the package documentation)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..index.shards import Shard
from . import RESTARTS, ShardUnavailableError, gpu_share, ray, require_ray


class _ShardActor:
    """A shard held in a Ray actor's memory (see :class:`~copylens.core.index.shards.Shard`)."""

    def __init__(self, shard_dir: str) -> None:
        self.shard = Shard(shard_dir)

    def call(self, method: str, *args):
        if method.startswith("_") or method == "close":
            raise ValueError(f"not a shard call: {method!r}")
        return getattr(self.shard, method)(*args)

    def pid(self) -> int:
        return os.getpid()


class RayShards:
    """The shards of a sharded index in Ray actors, one each (a :class:`~copylens.core.index.shards.ShardSet`)."""

    def __init__(self, shard_dirs: Sequence[Path], device: str | None = None, restarts: int = RESTARTS) -> None:
        require_ray()
        self.names = [str(d) for d in shard_dirs]
        opts = {"max_restarts": restarts, "max_task_retries": restarts, "num_cpus": 0}
        opts.update(gpu_share(len(shard_dirs), device))
        cls = ray.remote(_ShardActor)
        self.actors = [cls.options(**opts).remote(str(Path(d).resolve())) for d in shard_dirs]

    def __len__(self) -> int:
        return len(self.actors)

    def _get(self, refs: list, shards: list[int]) -> list:
        try:
            return ray.get(refs)
        except ray.exceptions.RayTaskError as exc:  # the shard's own error (KeyError, IndexFormatError, ...)
            raise exc.as_instanceof_cause() from None
        except ray.exceptions.RayActorError as exc:
            dead = ", ".join(self.names[i] for i in shards)
            raise ShardUnavailableError(f"a shard's Ray actor died and could not be restarted ({dead}): the "
                                        f"answer would miss its references, so there is none; reopen the index "
                                        f"({type(exc).__name__})") from None

    def each(self, method: str, *args) -> list:
        args = tuple(ray.put(a) if isinstance(a, np.ndarray) and a.nbytes > 100_000 else a for a in args)
        return self._get([a.call.remote(method, *args) for a in self.actors], list(range(len(self.actors))))

    def one(self, shard: int, method: str, *args):
        return self._get([self.actors[shard].call.remote(method, *args)], [shard])[0]

    def close(self) -> None:
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - an actor already gone is closed
                pass
        self.actors = []
