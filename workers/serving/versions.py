"""Which versions the service holds in memory: the production version, kept warm and followed as it moves,
and a few recently named ones (least recently used goes first).

On a promotion the watcher loads the new version *before* switching, then switches in one assignment under
the lock; the old production joins the named versions (someone may still ask for it by name) and a version
pushed out of the LRU is retired: freed when the last request using it finishes (batching.LoadedVersion).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

from django.db import close_old_connections, connection

from registry.models import ModelVersion
from registry.selectors import production_version
from workers.pipeline import version_model_dir
from workers.serving.batching import LoadedVersion

log = logging.getLogger(__name__)


def load_version(version: ModelVersion) -> LoadedVersion:
    # version_model_dir fetches the files from the artifact store and verifies their checksums.
    return LoadedVersion.load(version.number, version_model_dir(version))


class ServedVersions:
    def __init__(self, *, keep: int = 3, load: Callable[[ModelVersion], LoadedVersion] = load_version):
        self.keep, self._load = max(keep, 1), load
        self.production: LoadedVersion | None = None
        self.named: collections.OrderedDict[int, LoadedVersion] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._loading = threading.Lock()  # one load at a time: two loads of one version would double the memory

    def acquire_production(self) -> LoadedVersion | None:
        with self._lock:
            current = self.production
            return current if current is not None and current.acquire() else None

    def acquire(self, version: ModelVersion) -> LoadedVersion:
        """The loaded `version`, acquired for one request (the caller releases it); loads it if needed."""
        if (loaded := self._acquire_loaded(version.number)) is not None:
            return loaded
        with self._loading:
            if (loaded := self._acquire_loaded(version.number)) is not None:
                return loaded
            loaded = self._load(version)
            with self._lock:
                loaded.acquire()
                self.named[version.number] = loaded
                self._trim()
            return loaded

    def _acquire_loaded(self, number: int) -> LoadedVersion | None:
        with self._lock:
            if self.production is not None and self.production.number == number and self.production.acquire():
                return self.production
            loaded = self.named.get(number)
            if loaded is not None and loaded.acquire():
                self.named.move_to_end(number)
                return loaded
            return None

    def follow(self, version: ModelVersion | None) -> bool:
        """Make `version` (the registry's production) the one served as production; True if it changed."""
        current = self.production
        if version is None or (current is not None and current.number == version.number):
            return False
        with self._loading:
            with self._lock:
                loaded = self.named.pop(version.number, None)
            if loaded is None:
                loaded = self._load(version)  # outside the lock: requests go on being served meanwhile
            with self._lock:
                old, self.production = self.production, loaded
                if old is not None:
                    self.named[old.number] = old
                self._trim()
        log.info("production is now v%s (was %s)", version.number, f"v{old.number}" if old else "none")
        return True

    def _trim(self) -> None:
        """Hold at most `keep` versions in all: production, then the most recently used named ones."""
        while self.named and len(self.named) + (self.production is not None) > self.keep:
            _, evicted = self.named.popitem(last=False)
            evicted.retire()

    def describe(self) -> dict:
        with self._lock:
            loaded = ([self.production] if self.production else []) + list(self.named.values())
            return {"production": self.production.number if self.production else None,
                    "loaded": [{"version": v.number, "in_flight": v.users} for v in loaded]}


class ProductionWatcher:
    """Polls the registry's production version every `poll_s` seconds and has the pool follow it."""

    def __init__(self, versions: ServedVersions, poll_s: float):
        self.versions, self.poll_s = versions, poll_s
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="production-watcher", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=60)

    def check(self) -> bool:
        return self.versions.follow(production_version())

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.poll_s):
                close_old_connections()
                try:
                    self.check()
                except Exception:  # a database blip or a bad artifact: keep serving the current one, retry
                    log.exception("following production failed; retrying in %.1f s", self.poll_s)
        finally:
            connection.close()
