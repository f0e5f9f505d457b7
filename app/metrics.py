"""``GET /metrics``: the service's Prometheus metrics (``prometheus_client``), one registry per application.

Requests are counted and timed by route template (``/predict``, never the raw path) in :class:`MetricsMiddleware`;
refusals (408, 413, 503, 504) are counted with a reason where the refusing code names one (:func:`note_rejection`);
the predict route observes the model time. Queue depth, the served model (an info metric), model loads and their
failures and the dynamic batcher's batch sizes are read from the application's state at each scrape, so they can
never drift from what ``/model`` says.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from app.model_manager import ModelManager
    from app.pool import Pools

# Refused or stopped requests: the statuses an operator watches for load shedding.
REJECTED_STATUSES = frozenset({408, 413, 503, 504})
UNMATCHED = "unmatched"  # any path no route serves: one label, whatever clients send
# Seconds: from a /health answer (~1 ms) to a large photo at the end of its budget.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """The application's metrics in their own :class:`CollectorRegistry` (several apps in one process, as in
    tests, never share counters)."""

    def __init__(self, manager: ModelManager, pools: Pools) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vessel_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vessel_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference = Histogram(
            "vessel_inference_seconds",
            "Time in the model's forward passes per prediction, by backend.",
            ["backend"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejections = Counter(
            "vessel_rejections",
            "Requests refused or stopped (408, 413, 503, 504), by status and reason.",
            ["status", "reason"],
            registry=self.registry,
        )
        self.registry.register(_StateCollector(manager, pools))

    def exposition(self) -> Response:
        """The registry in Prometheus' text format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def note_rejection(scope: Scope, reason: str) -> None:
    """Name why this request is refused (counted by :class:`MetricsMiddleware` under its status)."""
    scope.setdefault("state", {})["rejection"] = reason


def route_label(routes: Iterable[BaseRoute], scope: Scope) -> str:
    """The template of the route that serves ``scope`` (``/predict``; ``/{path}`` for the UI's files), or
    ``unmatched``: a label set bounded by the application's routes, never by what clients send."""
    routed = scope.get("route")  # set by the router once the request reached it
    if isinstance(routed, BaseRoute) and getattr(routed, "path", None) is not None:
        return _template(routed)
    partial = None
    for route in _flat(routes):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return _template(route)
        if match is Match.PARTIAL and partial is None:
            partial = route
    return _template(partial) if partial is not None else UNMATCHED


def _flat(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """``routes`` with included routers (FastAPI keeps them as one entry, included without a prefix here)
    replaced by their own routes."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flat(inner.routes)
        else:
            yield route


def _template(route: BaseRoute) -> str:
    path = getattr(route, "path", None)
    if isinstance(route, Mount):
        return f"{path or ''}/{{path}}"
    return path or UNMATCHED


class MetricsMiddleware:
    """Counts and times every HTTP request by route template, method and status; refusals by reason too."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Iterable[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets when nothing was sent (ServerErrorMiddleware answers 500)

        async def send_seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_seen)
        finally:
            route, method = route_label(self.routes, scope), scope.get("method", "")
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - start)
            if status in REJECTED_STATUSES:
                reason = scope.get("state", {}).get("rejection") or _default_reason(status)
                self.metrics.rejections.labels(str(status), reason).inc()


def _default_reason(status: int) -> str:
    return {408: "body timeout", 413: "too large", 503: "busy", 504: "over budget"}[status]


def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``."""
    return request.app.state.metrics.exposition()


class _StateCollector(Collector):
    """What is read from the application's state at each scrape: queue depths, the served model, loads and the
    dynamic batcher's batch sizes."""

    def __init__(self, manager: ModelManager, pools: Pools) -> None:
        self.manager = manager
        self.pools = pools

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "vessel_queue_depth",
            "Requests in a lane's workers or waiting for one, by lane.",
            labels=["lane"],
        )
        limit = GaugeMetricFamily(
            "vessel_queue_limit", "Requests a lane holds before it answers 503, by lane.", labels=["lane"]
        )
        for lane, pool in (
            ("predict", self.pools.predict),
            ("large", self.pools.large),
            ("measure", self.pools.measure),
        ):
            if pool is not None:
                depth.add_metric([lane], pool.pending)
                limit.add_metric([lane], pool.max_pending)
        yield depth
        yield limit
        manager = self.manager
        loads = CounterMetricFamily("vessel_model_loads", "Model versions loaded and swapped in.")
        loads.add_metric([], manager.loads)
        yield loads
        failures = CounterMetricFamily("vessel_model_load_failures", "Model loads or reloads that failed.")
        failures.add_metric([], manager.load_failures)
        yield failures
        model = manager.current
        ready = GaugeMetricFamily("vessel_model_ready", "1 while a model is loaded and served, else 0.")
        ready.add_metric([], 1 if model is not None else 0)
        yield ready
        if model is None:
            return
        summary = model.summary()
        info = InfoMetricFamily("vessel_model", "The served model: name, version, alias, backend, precision.")
        info.add_metric([], {key: "" if value is None else str(value) for key, value in summary.items()})
        yield info
        if model.batcher is not None:
            yield _batch_histogram(model.batcher.batch_sizes())


def _batch_histogram(sizes: dict[int, int]) -> Metric:
    """The dynamic batcher's windows per forward pass as a histogram (``sizes``: batch size → batches)."""
    buckets: list[tuple[str, Any]] = []
    for bound in BATCH_BUCKETS:
        buckets.append((str(float(bound)), sum(n for size, n in sizes.items() if size <= bound)))
    buckets.append(("+Inf", sum(sizes.values())))
    family = HistogramMetricFamily(
        "vessel_batch_windows", "Windows per batched forward pass of the dynamic batcher (current model)."
    )
    family.add_metric([], buckets, sum_value=sum(size * n for size, n in sizes.items()))
    return family
