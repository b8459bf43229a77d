"""The operator's metrics of each rollout: state, latest values with thresholds, API calls."""

from __future__ import annotations

from datetime import UTC, datetime

import kubernetes
import pytest

from phasegate.api.spec import RolloutSpec
from phasegate.api.status import PhaseStatus, RolloutStatus, State
from phasegate.engine import Measurement, Outcome
from phasegate.engine.queries import plan_queries
from phasegate.kube import Kube, NotFound
from phasegate.localapi import LocalAPI
from phasegate.report.history import judge_phase
from phasegate.runtime.telemetry import Telemetry, standard
from support.world import release

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def running(phase: int = 0) -> RolloutStatus:
    return RolloutStatus(
        revision="v1",
        state=State.PROGRESSING,
        current_phase=PhaseStatus(name=["canary", "full"][phase], index=phase, weight=10,
                                  started_at=NOW),
    )  # fmt: skip


def measured(spec: RolloutSpec, values: dict[str, float | None]) -> dict[str, Measurement]:
    """Every query of the canary phase answered: ``values`` by metric, None for no data."""
    out = {}
    for request in plan_queries(spec, "shop", 0):
        value = values[request.metric]
        out[request.key] = (
            Measurement(request.query, Outcome.NO_DATA)
            if value is None
            else Measurement.value(request.query, value)
        )
    return out


def series(telemetry: Telemetry, name: str) -> list[str]:
    return [line for line in telemetry.exposition().splitlines() if line.startswith(name + "{")]


def test_each_rule_of_the_phase_has_its_latest_value_threshold_and_verdict() -> None:
    spec = RolloutSpec.model_validate(release()["spec"])
    telemetry = standard(Telemetry())
    values = {"error-rate": 0.02, "p99-latency": None}
    judged = judge_phase(spec, running(), measured(spec, values), "shop")
    telemetry.record_evaluation("shop", "web", running(), running(), judged)
    text = telemetry.exposition()
    rule = 'metric="error-rate",namespace="shop",phase="canary",rollout="web"'
    assert f'phasegate_metric_value{{{rule},rule="successCriteria[0]"}} 0.02' in text
    assert f'phasegate_metric_value{{{rule},rule="holdTriggers[0]"}} 0.02' in text
    assert f'phasegate_metric_threshold{{bound="max",{rule},rule="holdTriggers[0]"}} 0.03' in text
    assert f'phasegate_rule_verdict{{{rule},rule="successCriteria[0]",verdict="Fail"}} 1' in text
    assert f'phasegate_rule_verdict{{{rule},rule="holdTriggers[0]",verdict="Pass"}} 1' in text
    # no data: no value (never a made-up 0), but the threshold and the NoData verdict
    latency = 'metric="p99-latency",namespace="shop",phase="canary",rollout="web"'
    assert f"phasegate_metric_value{{{latency}" not in text
    assert f'phasegate_rule_verdict{{{latency},rule="successCriteria[1]",verdict="NoData"}} 1' in (
        text
    )
    assert 'phasegate_rollouts{state="Progressing"} 1' in text
    assert 'phasegate_rollouts{state="Holding"} 0' in text
    assert "# HELP phasegate_metric_threshold The threshold" in text


def test_a_new_phase_or_a_verdict_change_replaces_the_series_instead_of_adding() -> None:
    spec = RolloutSpec.model_validate(release()["spec"])
    telemetry = Telemetry()
    for value in (0.001, 0.02, 0.001):
        measurements = measured(spec, {"error-rate": value, "p99-latency": 0.1})
        judged = judge_phase(spec, running(), measurements, "shop")
        telemetry.record_evaluation("shop", "web", running(), running(), judged)
    assert len(series(telemetry, "phasegate_rule_verdict")) == 4  # one per rule of the phase
    assert len(series(telemetry, "phasegate_metric_value")) == 4
    ended = running().model_copy(update={"state": State.SUCCEEDED, "current_phase": None})
    telemetry.record_evaluation("shop", "web", ended, ended, {})
    assert series(telemetry, "phasegate_metric_value") == []
    assert 'phasegate_rollouts{state="Succeeded"} 1' in telemetry.exposition()


def test_a_deleted_rollout_leaves_no_series_behind() -> None:
    spec = RolloutSpec.model_validate(release()["spec"])
    telemetry = standard(Telemetry())
    for name in ("web", "shop-api"):
        measurements = measured(spec, {"error-rate": 0.001, "p99-latency": 0.1})
        judged = judge_phase(spec, running(), measurements, "shop")
        telemetry.record_evaluation("shop", name, running(), running(), judged)
        telemetry.set("phasegate_canary_weight", 10, namespace="shop", rollout=name)
    telemetry.forget_rollout("shop", "web")
    text = telemetry.exposition()
    assert 'rollout="web"' not in text
    assert 'rollout="shop-api"' in text
    assert 'phasegate_rollouts{state="Progressing"} 1' in text


def test_api_calls_are_timed_and_their_errors_counted(local_api: LocalAPI) -> None:
    telemetry = Telemetry()
    client = kubernetes.config.new_client_from_config(str(local_api.kubeconfig_path))  # type: ignore[no-untyped-call]
    kube = telemetry.instrument(Kube(client))
    with pytest.raises(NotFound):
        kube.read_config_map_data("default", "absent")
    kube.core.list_namespace()
    text = telemetry.exposition()
    assert 'phasegate_api_errors_total{code="404",verb="GET"} 1' in text
    assert 'phasegate_api_request_duration_seconds_count{verb="GET"} 2' in text
