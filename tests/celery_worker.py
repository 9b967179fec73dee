"""A real Celery worker for tests: `crm.celery.app` consuming in a thread of the test process.

    with celery_worker("redis", tmp_path) as worker:
        tasks.dispatch_due()        # publishes send_messages after commit, to the real broker
        worker.finished.wait_for(1)        # a condition wait on the worker's task_postrun

The broker is Redis (`tests.services.REDIS_URL`, every test under its own key prefix) or kombu's
filesystem transport in a folder of the test's own. The worker is Celery's embedded test worker
(`celery.contrib.testing.worker.start_worker`): it runs in a thread with its own database
connection, so the test needs `transactional_db` (rows must be committed for the worker to see
them). On SQLite the in-memory test database is opened in shared-cache mode, so the worker's
thread sees the same database; but a shared-cache table lock fails at once ("database table is
locked") instead of waiting, so the test must leave the database alone while a task runs: wait
for the task to finish (`worker.finished.wait_for`) before reading what it wrote.
"""

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from celery import signals
from celery.contrib.testing.worker import TestWorkController, start_worker

from crm.celery import app as crm_app
from tests.services import REDIS_URL, require_service

BROKERS = ("redis", "filesystem")
START_TIMEOUT = 15  # seconds for the worker to connect and start consuming
SHUTDOWN_TIMEOUT = 10  # seconds for the worker's thread to stop


def require_broker(broker: str) -> None:
    """Skip the calling test (fail it under CI) when `broker` needs a server that is not there."""
    if broker == "redis":
        url = urlsplit(REDIS_URL)
        require_service("Redis", url.hostname or "127.0.0.1", url.port or 6379)
    elif broker != "filesystem":
        raise ValueError(f"Unknown broker {broker!r}; use one of {BROKERS}")


def broker_config(broker: str, folder: Path) -> dict[str, Any]:
    """The app settings that point producers and the worker at `broker`, isolated per test."""
    if broker == "redis":
        return {
            "broker_url": REDIS_URL,
            # Every key this test's broker touches (queues, bindings, unacked messages) lives
            # under its own prefix: nothing left by another test or run is seen or consumed.
            "broker_transport_options": {"global_keyprefix": f"crm-test-{uuid.uuid4().hex}:"},
        }
    if broker == "filesystem":
        folder = folder / "broker"
        (folder / "control").mkdir(parents=True, exist_ok=True)
        return {
            "broker_url": "crmfs://",
            "broker_transport_options": {
                # As crm/settings.py does, in a folder of this test's own.
                "data_folder_in": str(folder),
                "data_folder_out": str(folder),
                "processed_folder": str(folder),
                "store_processed": False,
                "control_folder": str(folder / "control"),
                "polling_interval": 0.05,  # the worker polls the folder; the default is 1 s
            },
        }
    raise ValueError(f"Unknown broker {broker!r}; use one of {BROKERS}")


@dataclass(frozen=True)
class FinishedTask:
    name: str
    args: tuple
    state: str
    retval: Any


@dataclass
class TaskLog:
    """The task runs the worker finished (Celery's task_postrun), to wait on without sleeping.
    A wait ends early, and fails, when the worker stops (e.g. after an unrecoverable error)."""

    finished: list[FinishedTask] = field(default_factory=list)
    worker_stopped: bool = False
    condition: threading.Condition = field(default_factory=threading.Condition)

    def on_postrun(self, sender=None, args=None, state=None, retval=None, **kwargs):
        task = FinishedTask(getattr(sender, "name", str(sender)), tuple(args or ()), state, retval)
        with self.condition:
            self.finished.append(task)
            self.condition.notify_all()

    def on_worker_shutdown(self, sender=None, **kwargs):
        with self.condition:
            self.worker_stopped = True
            self.condition.notify_all()

    def wait_for(self, count: int, *, name: str | None = None, timeout: float = 15):
        """Block until `count` runs (of the task `name`, if given) have finished; return them."""
        return self._wait(count, name, timeout, len)

    def wait_for_outcomes(self, count: int, *, name: str, timeout: float = 15) -> dict:
        """Block until the batch task `name` has returned `count` outcomes in all (its return
        value is a dict, one entry per item); return them merged."""
        runs = self._wait(count, name, timeout, lambda runs: sum(len(t.retval) for t in runs))
        return {key: value for run in runs for key, value in run.retval.items()}

    def _wait(self, count, name, timeout, measure):
        def wanted():
            return [t for t in self.finished if name is None or t.name == name]

        with self.condition:
            self.condition.wait_for(
                lambda: measure(wanted()) >= count or self.worker_stopped, timeout
            )
            runs, everything, stopped = wanted(), list(self.finished), self.worker_stopped
        assert measure(runs) >= count, (
            f"expected {count} from finished runs of {name or 'any task'} within {timeout} s, "
            f"got {measure(runs)}{' and the worker stopped (see its log)' if stopped else ''}; "
            f"the worker finished: {everything}"
        )
        return runs


@dataclass
class RunningWorker:
    broker: str
    controller: TestWorkController
    finished: TaskLog


class BoundedWorkController(TestWorkController):
    """The test worker, but a worker that never starts fails the test instead of hanging it."""

    __test__ = False

    def ensure_started(self):
        if not self._on_started.wait(START_TIMEOUT):
            raise RuntimeError(f"The Celery worker did not start within {START_TIMEOUT} s")


def _leave_logging_alone(**kwargs):
    """A setup_logging receiver: with one connected, Celery does not reconfigure the root logger
    (which would remove pytest's handlers and raise the root level for the rest of the run)."""


def _reset_broker_pools(app, *, close: bool) -> None:
    """Forget the app's broker connection and producer pools, so the next use follows app.conf."""
    amqp = app.__dict__.get("amqp")
    producers = getattr(amqp, "_producer_pool", None)
    if close:
        for pool in (producers, app._pool):
            if pool is not None:
                with suppress(Exception):
                    pool.force_close_all()
    if amqp is not None:
        amqp._producer_pool = None
    app._pool = None


@contextmanager
def use_broker(broker: str, folder: Path, *, app=crm_app) -> Iterator[dict[str, Any]]:
    """Point `app`'s producers at `broker` (see `BROKERS`) until the block ends: tasks are not
    eager, the default queue starts empty, and the app's settings and pools are put back after."""
    require_broker(broker)
    config = {
        **broker_config(broker, folder),
        "task_always_eager": False,
        "worker_enable_remote_control": False,  # no pidbox: nothing but tasks on the broker
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": False,
    }
    saved = {key: app.conf[key] for key in config}
    app.conf.update(config)
    _reset_broker_pools(app, close=False)
    try:
        app.control.purge()
        yield config
    finally:
        _reset_broker_pools(app, close=True)
        if broker == "redis":
            _forget_redis_keys(config["broker_transport_options"]["global_keyprefix"])
        app.conf.update(saved)


@contextmanager
def celery_worker(
    broker: str,
    folder: Path,
    *,
    app=crm_app,
    pool: str = "solo",
    concurrency: int = 1,
) -> Iterator[RunningWorker]:
    """Run a real worker for `app` on `broker` (see `BROKERS`) until the block ends.

    Producers in the test publish to the same broker (see `use_broker`); the worker consumes in
    a thread of this process, with `pool` ("solo" or "threads") and `concurrency`.
    """
    log = TaskLog()
    with use_broker(broker, folder, app=app):
        signals.setup_logging.connect(_leave_logging_alone, weak=False)
        signals.task_postrun.connect(log.on_postrun, weak=False)
        signals.worker_shutdown.connect(log.on_worker_shutdown, weak=False)
        try:
            with start_worker(
                app,
                pool=pool,
                concurrency=concurrency,
                perform_ping_check=False,
                shutdown_timeout=SHUTDOWN_TIMEOUT,
                WorkController=BoundedWorkController,
            ) as controller:
                assert not app.conf.task_always_eager
                yield RunningWorker(broker, controller, log)
        finally:
            signals.worker_shutdown.disconnect(log.on_worker_shutdown)
            signals.task_postrun.disconnect(log.on_postrun)
            signals.setup_logging.disconnect(_leave_logging_alone)


def _forget_redis_keys(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
