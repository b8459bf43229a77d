"""The asynchronous Prometheus path: identical queries sent once, a bounded number of
requests in flight, and answers classified as before; counted at a receiver on loopback that
answers like Prometheus's HTTP API and holds its answers until the test lets them go."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from aiohttp import web

from phasegate.engine import Outcome, QueryRequest
from phasegate.metrics import Prometheus, PrometheusSettings


@dataclass
class Receiver:
    """A Prometheus stand-in that counts what reaches it."""

    url: str = ""
    asked: Counter[str] = field(default_factory=Counter)
    times: list[str] = field(default_factory=list)
    open: int = 0
    peak: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    status: int = 200

    async def query(self, request: web.Request) -> web.Response:
        self.asked[request.query["query"]] += 1
        self.times.append(request.query.get("time", ""))
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            await self.gate.wait()
        finally:
            self.open -= 1
        if self.status != 200:
            return web.json_response({"status": "error", "error": "busy"}, status=self.status)
        result = [{"metric": {}, "value": [0, "0.5"]}]
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    async def query_range(self, request: web.Request) -> web.Response:
        self.asked[request.query["query"]] += 1
        values = [[0, "1"], [1, "2"]]
        result = [{"metric": {}, "values": values}]
        return web.json_response(
            {"status": "success", "data": {"resultType": "matrix", "result": result}}
        )


async def serve(state: Receiver) -> web.AppRunner:
    """Serve ``state`` on a free loopback port; its ``url`` says where."""
    app = web.Application()
    app.router.add_get("/api/v1/query", state.query)
    app.router.add_get("/api/v1/query_range", state.query_range)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    return runner


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    runner = await serve(state)
    try:
        yield state
    finally:
        state.gate.set()
        await runner.cleanup()


async def until(check: Callable[[], bool], what: str) -> None:
    """Wait for a condition, failing after 10s."""
    async with asyncio.timeout(10):
        while not check():  # noqa: ASYNC110 (counters of two parties, no one event)
            await asyncio.sleep(0.01)


def q(query: str, **kwargs: object) -> QueryRequest:
    return QueryRequest("m", "stable", query, **kwargs)  # type: ignore[arg-type]


async def test_identical_queries_in_flight_together_are_sent_once(receiver: Receiver) -> None:
    provider = Prometheus(PrometheusSettings(receiver.url, coalesce_window=60))
    shared = 'sum(rate(http_requests_total{service="web-stable"}[1m]))'
    own = [f'sum(rate(http_requests_total{{service="web-canary-{i}"}}[1m]))' for i in range(50)]
    askers = [asyncio.create_task(provider.measure_async(q(shared))) for _ in range(50)]
    askers += [asyncio.create_task(provider.measure_async(q(text))) for text in own]
    await until(lambda: sum(receiver.asked.values()) == 51, "every distinct query sent")
    await until(lambda: provider.shared == 49, "the other 49 askers joining the first")
    receiver.gate.set()
    answers = await asyncio.gather(*askers)
    await provider.close()
    assert all(a.outcome is Outcome.VALUE and a.series == {"": 0.5} for a in answers)
    assert receiver.asked[shared] == 1
    assert all(receiver.asked[text] == 1 for text in own)
    assert sum(receiver.asked.values()) == 51 == provider.sent


async def test_an_answer_serves_the_same_instant_and_the_next_instant_asks_again(
    receiver: Receiver,
) -> None:
    now = [1000.1]
    provider = Prometheus(PrometheusSettings(receiver.url, coalesce_window=0.5), lambda: now[0])
    receiver.gate.set()
    query = "vector(0.5)"
    await provider.measure_async(q(query))
    now[0] = 1000.4  # same window [1000.0, 1000.5)
    await provider.measure_async(q(query))
    assert receiver.asked[query] == 1
    now[0] = 1000.6
    await provider.measure_async(q(query))
    assert receiver.asked[query] == 2
    assert receiver.times == ["1000.000", "1000.500"]  # evaluated at the window's start
    await provider.close()


async def test_an_error_is_not_kept_for_later_askers(receiver: Receiver) -> None:
    provider = Prometheus(PrometheusSettings(receiver.url, coalesce_window=60))
    receiver.gate.set()
    receiver.status = 503
    first = await provider.measure_async(q("vector(1)"))
    assert first.outcome is Outcome.UNAVAILABLE and first.message == "HTTP 503: busy"
    receiver.status = 200
    second = await provider.measure_async(q("vector(1)"))
    assert second.outcome is Outcome.VALUE and receiver.asked["vector(1)"] == 2
    await provider.close()


async def test_at_most_max_in_flight_requests_are_open_at_once(receiver: Receiver) -> None:
    provider = Prometheus(PrometheusSettings(receiver.url, max_in_flight=4))
    askers = [asyncio.create_task(provider.measure_async(q(f"vector({i})"))) for i in range(20)]
    await until(lambda: receiver.open == 4, "four requests open")
    receiver.gate.set()
    answers = await asyncio.gather(*askers)
    await provider.close()
    assert receiver.peak == 4
    assert sum(receiver.asked.values()) == 20
    assert all(a.outcome is Outcome.VALUE for a in answers)


async def test_a_query_waiting_for_its_turn_is_sent_when_one_ends_and_never_fails_for_waiting(
    receiver: Receiver,
) -> None:
    # One turn. The first query holds it until its 0.3s timeout; the second waits however long
    # that takes (the wait is lag, not a Prometheus failure), then is sent and answered.
    provider = Prometheus(PrometheusSettings(receiver.url, max_in_flight=1, timeout=0.3))
    first = asyncio.create_task(provider.measure_async(q("vector(0)")))
    await until(lambda: receiver.open == 1, "the first query open")
    second = asyncio.create_task(provider.measure_async(q("vector(1)")))
    await until(lambda: receiver.asked["vector(1)"] == 1, "the second query sent")
    assert first.done()  # sent only once the first had ended
    held = await first
    receiver.gate.set()
    answered = await second
    await provider.close()
    assert held.outcome is Outcome.UNAVAILABLE and held.message == "timed out after 0.3s"
    assert answered.outcome is Outcome.VALUE


async def test_a_cancelled_asker_does_not_cancel_the_others(receiver: Receiver) -> None:
    provider = Prometheus(PrometheusSettings(receiver.url, coalesce_window=60))
    first = asyncio.create_task(provider.measure_async(q("vector(1)")))
    await until(lambda: receiver.open == 1, "the request open")
    second = asyncio.create_task(provider.measure_async(q("vector(1)")))
    await until(lambda: provider.shared == 1, "the second asker joining")
    first.cancel()
    receiver.gate.set()
    answer = await second
    await provider.close()
    assert first.cancelled() and answer.outcome is Outcome.VALUE
    assert receiver.asked["vector(1)"] == 1


async def test_range_queries_are_coalesced_too(receiver: Receiver) -> None:
    provider = Prometheus(PrometheusSettings(receiver.url, coalesce_window=60))
    window = {"window": timedelta(minutes=5), "step": timedelta(seconds=15)}
    answers = await asyncio.gather(*(provider.measure_async(q("up", **window)) for _ in range(5)))
    await provider.close()
    assert all(a.samples == (1.0, 2.0) for a in answers)
    assert receiver.asked["up"] == 1


def test_the_blocking_measure_uses_the_same_path(receiver_thread: str) -> None:
    answer = Prometheus(PrometheusSettings(receiver_thread)).measure(q("vector(0.5)"))
    assert answer.outcome is Outcome.VALUE and answer.series == {"": 0.5}


@pytest.fixture
def receiver_thread() -> Iterator[str]:
    """A receiver on its own loop in a thread, for the blocking call."""
    loop = asyncio.new_event_loop()
    state = Receiver()
    state.gate.set()
    runner = loop.run_until_complete(serve(state))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield state.url
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(runner.cleanup())
        loop.close()
