"""What a broker-mode worker shows its operators (docs/operations.md#watching-workers), on `worker_metrics_port`:

- `/healthz`: the process answers (200);
- `/readyz`: 200 when it is connected to the broker and PostgreSQL, else 503 with the reason;
- `/metrics`: Prometheus metrics: the partitions it owns and their consumer lag, the events it stored, the workers
  it sees, and two backlogs read from PostgreSQL at each scrape: detection deadlines past due (with the wall clock)
  and outbox messages due and not yet sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from amends.broker_worker import BrokerWorker
from amends.errors import AmendsError
from amends.store import tables

__all__ = ["WorkerHttp", "serve_worker_http", "worker_app"]


class _WorkerCollector(Collector):
    def __init__(self, worker: BrokerWorker) -> None:
        self.worker = worker

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        worker = self.worker
        owned = dict(worker.owned)
        yield GaugeMetricFamily("amends_worker_ready", "1 when connected to the broker and the database", worker.ready)
        yield GaugeMetricFamily("amends_worker_partitions_owned", "Partitions this worker owns", len(owned))
        yield GaugeMetricFamily("amends_workers_seen", "Workers alive, as this one last counted", worker.workers_seen)
        lag = GaugeMetricFamily(
            "amends_partition_lag", "Messages of a partition not yet stored (JetStream's count)", labels=["partition"]
        )
        for partition, state in sorted(owned.items()):
            if state.lag is not None:
                lag.add_metric([str(partition)], state.lag)
        yield lag
        events = CounterMetricFamily(
            "amends_worker_events", "Messages this worker took from the stream, by outcome", labels=["outcome"]
        )
        for outcome, count in worker.taken_total.items():
            events.add_metric([outcome], count)
        yield events
        yield from self._backlogs()

    def _backlogs(self) -> Iterator[GaugeMetricFamily]:
        worker = self.worker
        now = datetime.now(UTC)
        state, messages = tables.detect_state, tables.messages
        try:
            with worker.db.unit_of_work() as uow:
                outbox = uow.execute(
                    sa.select(sa.func.count()).where(
                        messages.c.status == "pending", messages.c.next_attempt_at <= now, messages.c.not_before <= now
                    )
                ).scalar_one()
                timers = None
                if worker.settings.detect_clock == "wall":
                    slack = timedelta(seconds=worker.settings.detect_sweep_seconds * 2)
                    overdue = now - worker.settings.detect_allowed_lateness - slack
                    mine = state.c.detector.like(f"partition.%/{worker.partitions}")  # not `main`, nor old counts
                    timers = uow.execute(sa.select(sa.func.count()).where(mine, state.c.due < overdue)).scalar_one()
        except AmendsError:
            return  # the database is away: /readyz says so, and the backlogs are simply absent from this scrape
        yield GaugeMetricFamily("amends_outbox_backlog", "Messages due and not yet sent", outbox)
        if timers is not None:
            yield GaugeMetricFamily(
                "amends_detect_timers_overdue", "Detection deadlines past due and not yet swept", timers
            )


def worker_app(worker: BrokerWorker) -> FastAPI:
    """The worker's health, readiness and metrics, as a small ASGI app."""
    registry = CollectorRegistry()
    registry.register(_WorkerCollector(worker))
    app = FastAPI(title="amends worker", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        problems = []
        if not worker.broker_connected:
            problems.append("broker not connected")
        if not worker.database_ok:
            problems.append("database unavailable")
        if worker.fatal is not None:
            problems.append(f"stopping: {worker.fatal}")
        if problems:
            return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ok", "partitions": sorted(worker.owned)})

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the worker handles SIGTERM and Ctrl-C itself, and stops this server


class WorkerHttp:
    """`worker_app` served on host:port in the running event loop."""

    def __init__(self, worker: BrokerWorker, host: str, port: int) -> None:
        config = uvicorn.Config(worker_app(worker), host=host, port=port, log_level="warning", lifespan="off")
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name="worker-http")
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.02)
        if self._task.done():
            self._task.result()  # raises why it could not start (the port is taken, say)
            raise OSError("the worker's HTTP server stopped at once")

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task


async def serve_worker_http(worker: BrokerWorker, host: str, port: int) -> WorkerHttp:
    """Serve `worker_app` on host:port in this event loop until `stop`."""
    served = WorkerHttp(worker, host, port)
    await served.start()
    return served
