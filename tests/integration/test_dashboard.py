"""``phasegate dashboard`` in a real browser (headless Chromium) against the local stack.

Given a release with an approval before its second phase, when a person watches it in the
dashboard and presses Approve, then the page shows it move phase by phase and the API shows
the approval taken and the release going on. The screenshot is kept as a test artifact:
``$PHASEGATE_ARTIFACTS/dashboard-*.png`` when set, else the test's tmp_path.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from phasegate.demo.stack import Process, free_port
from support.browser import Page, chromium
from support.world import World, release

# The dashboard is a client of the API like kubectl: the local API shows it (the scenarios
# show the operator on both); ``world`` on the local API only.
LOCAL = pytest.mark.parametrize("world", ["local"], indirect=True)


def start_dashboard(world: World, *extra: str) -> tuple[Process, str]:
    port = free_port()
    process = world.stack.phasegate(
        "dashboard", "dashboard", "--kubeconfig", str(world.stack.kubeconfig),
        "-n", world.ns, "--port", str(port), "--refresh", "0.5", *extra,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    process.wait_serving(url, 90)
    return process, url


def whoami(world: World) -> str:
    """The caller as ``kubectl phasegate approve`` signs: the local API has no
    SelfSubjectReview, so the kubeconfig's user."""
    view = ("config", "view", "--minify", "-o", "jsonpath={.contexts[0].context.user}")
    return world.stack.kubectl(*view).stdout.strip()


def artifact(tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("PHASEGATE_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def gated_release() -> dict[str, Any]:
    """The small release, its second phase behind an approval by engineering, its canary
    phase also judging revenue per request against stable and conversion by segment."""
    body = release()
    spec = body["spec"]
    spec["metrics"] += [
        {
            "name": "revenue",
            "query": 'sum(rate(revenue_total{service="{{service}}"}[5s]))'
            ' / sum(rate(http_requests_total{service="{{service}}"}[5s]))',
        },
        {
            "name": "conversion",
            "query": 'sum by (segment) (rate(revenue_total{service="{{service}}"}[5s]))'
            ' / sum by (segment) (rate(http_requests_total{service="{{service}}"}[5s]))',
        },
    ]
    # the first checkpoint at 6s: the 5s rate windows of the new criteria full by then
    spec["phases"][0].update(duration="10s", checkpoints=["6s", "8s", "10s"])
    spec["phases"][0]["successCriteria"] += [
        {"metric": "revenue", "compare": "stable", "min": -0.03, "max": 0.03},
        {"metric": "conversion", "consistency": {"by": "segment", "maxSpread": 0.05}},
    ]
    spec["phases"][1]["approval"] = {"required": ["engineering"]}
    return body


def shown(page: Page) -> tuple[str, str]:
    return page.text("#detail-state"), page.text("#detail-phase")


@LOCAL
def test_a_person_watches_a_release_and_approves_its_gate_in_the_browser(
    world: World, tmp_path: Path
) -> None:
    world.start_operator()
    _, url = start_dashboard(world, "--prometheus", world.stack.prometheus_url)
    world.apply(gated_release())
    with chromium(tmp_path) as page:
        page.open(f"{url}#{world.ns}/web")
        # the list, and the rollout's detail, live: the page never reloads
        page.wait_for(
            "document.querySelector('#rollouts tr[data-key$=\"/web\"]') !== null", 30, "the row"
        )
        page.wait_for(
            "document.querySelector('#detail-phase')?.textContent === 'canary'"
            " && document.querySelector('#detail-state')?.textContent === 'Progressing'",
            30,
            "the canary phase progressing",
        )
        loaded = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
        # a chart per rule, with data from Prometheus and the threshold drawn
        page.wait_for(
            "document.querySelector('.rule[data-rule=\"successCriteria[0]\"] path.series')"
            "?.getAttribute('d').split('L').length > 3",
            30,
            "the error-rate chart with points",
        )
        rules = page.evaluate("[...document.querySelectorAll('.rule')].map(n => n.dataset.rule)")
        assert rules == [
            "successCriteria[0]", "successCriteria[1]", "successCriteria[2]",
            "successCriteria[3]", "rollbackTriggers[0]", "holdTriggers[0]",
        ]  # fmt: skip
        # canary against stable: both lines, and the relative difference judged against ±3%
        revenue = '.rule[data-rule="successCriteria[2]"]'
        page.wait_for(
            f"document.querySelectorAll('{revenue} path.series').length === 3", 30, "revenue"
        )
        assert page.evaluate(
            f"[...document.querySelectorAll('{revenue} path.series')].map(n => n.dataset.series)"
        ) == ["canary", "stable", "relative difference"]
        assert page.evaluate(
            f"[...document.querySelectorAll('{revenue} line.threshold')].map(n => n.dataset.bound)"
        ) == ["max", "min"]
        # segments side by side, and their spread against maxSpread
        segments = '.rule[data-rule="successCriteria[3]"]'
        page.wait_for(
            f"document.querySelector('{segments} svg.segments')?.textContent.includes('consumer')"
            f" && document.querySelector('{segments} svg.segments').textContent"
            ".includes('enterprise')",
            30,
            "the segments side by side",
        )
        assert (
            page.evaluate(
                "document.querySelector('.rule[data-rule=\"holdTriggers[0]\"] line.threshold')"
                ".dataset.bound"
            )
            == "max"
        )
        page.wait_for(  # a refresh whose alerts query timed out says so; the next one answers
            "document.querySelector('#alerts')?.textContent.includes('no critical alert firing')",
            30,
            "no critical alert",
        )
        page.screenshot(artifact(tmp_path, "dashboard-canary.png"))

        # the gate: the page shows who must approve, with buttons
        page.wait_for(
            "document.querySelector('#detail-state')?.textContent === 'WaitingForApproval'",
            60,
            "the approval gate",
        )
        assert "Approval needed before full" in page.text("#approvals")
        assert world.status()["state"] == "WaitingForApproval"
        assert world.canary_weight() == 10
        page.wait_for(
            "document.querySelectorAll('#checkpoints tbody tr td.verdict.Passed').length >= 3",
            10,
            "three passed checkpoints in the table",
        )
        page.screenshot(artifact(tmp_path, "dashboard-gate.png"))
        updates = int(page.evaluate("document.body.dataset.updates"))

        page.click('#approvals button.approve[data-group="engineering"]')
        page.wait_for(
            "document.querySelector('#control-result')?.textContent.includes('requested')",
            10,
            "the request acknowledged",
        )
        # the API shows the approval taken and the release going on
        status = world.wait(
            lambda s: (s.get("currentPhase") or {}).get("name") == "full", 30, what="full phase"
        )
        assert [a["phase"] for a in status["approvals"]] == ["full"]
        given = status["approvals"][0]
        # signed by who ran the dashboard, as the API server knows them, for engineering
        assert given["group"] == "engineering" and given["by"] == whoami(world)
        page.wait_for(
            "document.querySelector('#detail-phase')?.textContent === 'full'", 30, "phase full"
        )
        page.wait_for(
            "document.querySelector('#detail-state')?.textContent === 'Succeeded'",
            60,
            "the release succeeded",
        )
        assert int(page.evaluate("document.body.dataset.updates")) > updates  # live, no reload
        assert page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd") == (
            loaded
        )
        shot = page.screenshot(artifact(tmp_path, "dashboard-succeeded.png"))
        assert world.status()["state"] == "Succeeded"
        # deleted: the page goes back to the list, which no longer has it
        world.stack.kubectl("delete", "prollout", "web", "-n", world.ns, "--wait=true")
        page.wait_for(
            "location.hash === '' && document.getElementById('detail').hidden"
            " && document.querySelector('#rollouts tbody').textContent === 'no rollouts'",
            30,
            "the list without the deleted rollout",
        )
    assert shot.stat().st_size > 10_000


@LOCAL
def test_a_write_without_the_pages_token_is_refused(world: World) -> None:
    _, url = start_dashboard(world)
    world.apply(gated_release())
    body = json.dumps({"action": "approve", "phase": "full", "group": "engineering"}).encode()
    request = urllib.request.Request(
        f"{url}api/rollouts/{world.ns}/web/control",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    assert "token" in json.loads(refused.value.read())["error"]
    annotations = world.rollout()["metadata"].get("annotations") or {}
    assert not [k for k in annotations if k.startswith("control.phasegate.dev/")]


@LOCAL
def test_a_person_rejects_a_gate_in_the_browser_and_the_release_holds(
    world: World, tmp_path: Path
) -> None:
    world.start_operator()
    _, url = start_dashboard(world, "--prometheus", world.stack.prometheus_url)
    body = release()
    body["spec"]["phases"][1]["approval"] = {"required": ["engineering"]}
    world.apply(body)
    with chromium(tmp_path) as page:
        page.open(f"{url}#{world.ns}/web")
        page.wait_for(
            "document.querySelector('#detail-state')?.textContent === 'WaitingForApproval'",
            60,
            "the approval gate",
        )
        page.click('#approvals input[data-reason="engineering"]')
        page.call("Input.insertText", text="error budget spent")  # typed, as by a keyboard
        page.click('#approvals button.reject[data-group="engineering"]')
        page.wait_for(
            "document.querySelector('#control-result')?.textContent.includes('requested')",
            10,
            "the request acknowledged",
        )
        status = world.wait(lambda s: s.get("rejections"), 30, what="the rejection recorded")
        (rejected,) = status["rejections"]
        assert (rejected["phase"], rejected["group"], rejected["by"], rejected["reason"]) == (
            "full", "engineering", whoami(world), "error budget spent"
        )  # fmt: skip
        page.wait_for(
            "document.querySelector('#detail-state')?.textContent === 'Holding'", 30, "Holding"
        )
        assert "error budget spent" in page.text("#detail-message") + page.text("#d-status")
        page.screenshot(artifact(tmp_path, "dashboard-rejected.png"))
    status = world.status()
    assert status["state"] == "Holding" and status["currentPhase"]["name"] == "canary"
    assert world.canary_weight() <= 10  # a NO-GO never adds exposure
