"""The dashboard's web server: a page, its script, and a small JSON API over the caller's
own Kubernetes credentials and the rollouts' Prometheus.

Reads go through :class:`phasegate.kube.Kube` (blocking: in threads); approve and reject
write the same control annotation as ``kubectl phasegate approve``. It listens on 127.0.0.1
only; a write needs the page's token in a header and a Host naming this server, so another
site open in the same browser cannot act with the user's credentials.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, cast

import aiohttp
from aiohttp import web

from phasegate import GROUP, PLURAL, VERSION
from phasegate.api import controls
from phasegate.dashboard import view
from phasegate.dashboard.settings import ALERTS
from phasegate.kube import Forbidden, Kube, NotFound, translated

CHECKPOINTS_SHOWN = 30
STATIC = {"app.js": "application/javascript", "app.css": "text/css"}


class PrometheusError(RuntimeError):
    """Prometheus could not answer; the message says why, for the page."""


@dataclass
class Dashboard:
    kube: Kube
    user: str  # who the control annotations say asked
    namespace: str | None = None  # None: all namespaces
    prometheus: str | None = None  # for rollouts without spec.prometheus
    prometheus_override: str | None = None  # for every rollout (e.g. a port-forward)
    alerts_query: str = ALERTS
    refresh: float = 2.0
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    timeout: float = 5.0
    session: aiohttp.ClientSession | None = None

    # ---- Kubernetes ------------------------------------------------------------------------

    def _list(self) -> list[dict[str, Any]]:
        with translated():
            if self.namespace is None:
                found = self.kube.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
            else:
                found = self.kube.custom.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL
                )
        return list(cast(dict[str, Any], found)["items"])

    async def rollouts(self) -> list[dict[str, Any]]:
        items = await asyncio.to_thread(self._list)
        rows = [view.summary(item) for item in items]
        return sorted(rows, key=lambda r: (r["namespace"], r["name"]))

    async def detail(self, namespace: str, name: str) -> dict[str, Any]:
        obj = await asyncio.to_thread(self.kube.get_rollout, namespace, name)
        now = datetime.now(UTC)
        status = obj.get("status") or {}
        spec, rules, problems = view.charts(obj)
        address = self.address(spec)
        start, end, step = view.window(obj, now)
        fetched: dict[str, asyncio.Task[list[dict[str, Any]]]] = {}

        def series(query: str) -> asyncio.Task[list[dict[str, Any]]]:
            if query not in fetched:  # rules sharing a query share one request
                fetched[query] = asyncio.ensure_future(
                    self.query_range(address, query, start, end, step)
                )
            return fetched[query]

        charts = await asyncio.gather(*(self._chart(rule, series) for rule in rules))
        alerts, alerts_error = await self._alerts(address)
        return {
            **view.summary(obj),
            "now": now.timestamp(),
            "problems": problems,
            "timeline": view.timeline(obj, now),
            "approvals": view.approvals_waiting(obj),
            "approvalsGiven": status.get("approvals") or [],
            "decision": status.get("decision"),
            "conditions": status.get("conditions") or [],
            "checkpoints": (status.get("checkpoints") or [])[-CHECKPOINTS_SHOWN:],
            "window": {"start": start, "end": end, "step": step},
            "prometheus": address,
            "charts": charts,
            "alerts": alerts,
            "alertsError": alerts_error,
            "alertsQuery": self.alerts_query,
        }

    async def _chart(self, rule: view.RuleChart, series: Any) -> dict[str, Any]:
        out: dict[str, Any] = {**rule.describe(), "series": [], "derived": None, "error": None}
        try:
            got = {backend: await series(q) for backend, q in rule.queries.items()}
        except PrometheusError as error:
            out["error"] = str(error)
            return out
        if rule.segments_by:
            segments = {
                s["metric"].get(rule.segments_by, "(none)"): s["points"] for s in got["canary"]
            }
            out["series"] = [{"name": k, "points": v} for k, v in sorted(segments.items())]
            spread = view.spread(segments, rule.absolute_spread)
            out["derived"] = {"name": "spread", "points": spread}
            return out
        for backend, found in got.items():
            for s in found[:5]:  # an unaggregated query: the first few, the judge says why
                label = backend if len(found) == 1 else f"{backend} {_labels(s['metric'])}"
                out["series"].append({"name": label, "points": s["points"]})
        if rule.compare and len(got.get("canary", [])) == 1 and len(got.get("stable", [])) == 1:
            points = view.relative(got["canary"][0]["points"], got["stable"][0]["points"])
            out["derived"] = {"name": "relative difference", "points": points}
        return out

    async def _alerts(self, address: str | None) -> tuple[list[dict[str, str]], str | None]:
        try:
            found = await self.query(address, self.alerts_query)
        except PrometheusError as error:
            return [], str(error)
        return [s["metric"] for s in found], None

    # ---- Prometheus ------------------------------------------------------------------------

    def address(self, spec: Any) -> str | None:
        if self.prometheus_override:
            return self.prometheus_override
        if spec is not None and spec.prometheus is not None:
            return str(spec.prometheus.address)
        return self.prometheus

    async def _get(self, address: str | None, path: str, params: dict[str, str]) -> Any:
        if not address:
            raise PrometheusError(
                "no Prometheus address: the rollout has no spec.prometheus; pass --prometheus"
            )
        assert self.session is not None
        url = address.rstrip("/") + path
        try:
            async with self.session.get(
                url, params=params, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as answer:
                body = await answer.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            why = str(error) or type(error).__name__
            raise PrometheusError(f"Prometheus at {address}: {why}") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            reason = body.get("error") if isinstance(body, dict) else body
            raise PrometheusError(f"Prometheus at {address} refused the query: {reason}")
        return body["data"]["result"]

    async def query_range(
        self, address: str | None, query: str, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        result = await self._get(address, "/api/v1/query_range", params)
        return [{"metric": s["metric"], "points": _points(s["values"])} for s in result]

    async def query(self, address: str | None, query: str) -> list[dict[str, Any]]:
        result = await self._get(address, "/api/v1/query", {"query": query})
        return [{"metric": s["metric"], "points": _points([s["value"]])} for s in result]

    # ---- writes ------------------------------------------------------------------------------

    async def control(self, namespace: str, name: str, body: dict[str, Any]) -> str:
        """Ask the operator to approve or reject a gate: the CLI's control annotation,
        signed by the caller, for one of the phase's approver groups."""
        action, phase = body.get("action"), str(body.get("phase") or "")
        reason = str(body.get("reason") or "").strip()
        if action not in ("approve", "reject"):
            raise controls.ControlError(f"the dashboard approves and rejects, not {action!r}")
        if action == "reject" and not reason:
            raise controls.ControlError("a rejection needs a reason: say why in the reason box")
        obj = await asyncio.to_thread(self.kube.get_rollout, namespace, name)
        phases = (obj.get("spec") or {}).get("phases") or []
        gate: dict[str, Any] = next((p for p in phases if p.get("name") == phase), {})
        required = list((gate.get("approval") or {}).get("required") or [])
        if not required:
            raise controls.ControlError(f"phase {phase!r} has no approval gate")
        group = controls.choose_group(phase, required, str(body.get("group") or "") or None)
        annotation = controls.annotation(
            action, by=self.user, phase=phase, group=group, reason=reason
        )
        patch = {"metadata": {"annotations": annotation}}
        await asyncio.to_thread(self.kube.patch_rollout, namespace, name, patch)
        return next(iter(annotation))


def _points(values: list[list[Any]]) -> list[list[float]]:
    """Prometheus' [time, "value"] pairs as numbers; NaN and infinities left out (JSON)."""
    out = []
    for t, v in values:
        number = float(v)
        if math.isfinite(number):
            out.append([float(t), number])
    return out


def _labels(metric: dict[str, str]) -> str:
    return "{" + ",".join(f"{k}={v}" for k, v in sorted(metric.items())) + "}"


def _static(name: str) -> str:
    return (resources.files("phasegate.dashboard") / "static" / name).read_text("utf-8")


def make_app(dashboard: Dashboard) -> web.Application:
    """The dashboard as an aiohttp application (serve it on 127.0.0.1 only)."""
    page = _static("index.html")

    async def index(_: web.Request) -> web.Response:
        text = page.replace("{{token}}", dashboard.token).replace(
            "{{refresh}}", f"{dashboard.refresh:g}"
        )
        return web.Response(text=text, content_type="text/html", headers=_no_store())

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        return web.Response(text=_static(name), content_type=STATIC[name])

    async def rollouts(_: web.Request) -> web.Response:
        rows = await dashboard.rollouts()
        scope = dashboard.namespace or "all namespaces"
        return _json({"rollouts": rows, "scope": scope, "user": dashboard.user})

    async def detail(request: web.Request) -> web.Response:
        m = request.match_info
        return _json(await dashboard.detail(m["namespace"], m["name"]))

    async def control(request: web.Request) -> web.Response:
        if request.headers.get("X-Phasegate-Token") != dashboard.token:
            raise _error(web.HTTPForbidden, "missing or wrong token: reload the dashboard")
        if request.host.split(":")[0] not in ("127.0.0.1", "localhost"):
            raise _error(web.HTTPForbidden, f"host {request.host!r} is not this dashboard")
        try:
            body = await request.json()
        except ValueError:
            raise _error(web.HTTPBadRequest, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise _error(web.HTTPBadRequest, "the body is not a JSON object")
        m = request.match_info
        key = await dashboard.control(m["namespace"], m["name"], body)
        return _json({"requested": key, "by": dashboard.user})

    @web.middleware
    async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except NotFound as error:
            raise _error(web.HTTPNotFound, f"not found: {error}") from None
        except Forbidden as error:
            raise _error(web.HTTPForbidden, f"the API refused: {error}") from None
        except controls.ControlError as error:
            raise _error(web.HTTPBadRequest, str(error)) from None
        except web.HTTPException:
            raise
        except Exception as error:  # the API's other answers (401, 5xx), a refused connection
            reason = getattr(error, "reason", None) or error
            raise _error(web.HTTPBadGateway, f"the Kubernetes API: {reason}") from None

    async def session(app: web.Application) -> Any:
        async with aiohttp.ClientSession() as client:
            dashboard.session = client
            yield
            dashboard.session = None

    app = web.Application(middlewares=[errors])
    app.cleanup_ctx.append(session)
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/rollouts", rollouts)
    app.router.add_get("/api/rollouts/{namespace}/{name}", detail)
    app.router.add_post("/api/rollouts/{namespace}/{name}/control", control)
    return app


def _no_store() -> dict[str, str]:
    return {"Cache-Control": "no-store"}


def _json(body: Any) -> web.Response:
    return web.Response(
        text=json.dumps(body, allow_nan=False), content_type="application/json",
        headers=_no_store(),
    )  # fmt: skip


def _error(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    return kind(text=json.dumps({"error": message}), content_type="application/json")


async def serve(dashboard: Dashboard, port: int, ready: Any = None) -> None:
    """Serve on 127.0.0.1:``port`` (0: any free port) until cancelled; ``ready`` is called
    with the URL once it listens."""
    runner = web.AppRunner(make_app(dashboard), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        if ready is not None:
            ready(f"http://127.0.0.1:{bound}/")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
