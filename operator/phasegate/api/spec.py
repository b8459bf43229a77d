"""The ``ProgressiveRollout`` spec (v1alpha1): the contract users write against.

Field names are camelCase on the wire and snake_case in Python. Every rule that can be
checked without a cluster lives here, so ``phasegate validate``, the operator and the CRD
agree on what a valid spec is.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from phasegate.api.durations import Duration, format_duration
from phasegate.api.templates import TEMPLATE_VARIABLES, template_variables

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"

Name = Annotated[str, Field(min_length=1, max_length=253, pattern=NAME)]
Weight = Annotated[int, Field(ge=0, le=100)]


class SpecModel(BaseModel):
    """Base of spec models: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class Backend(SpecModel):
    """One side of the release, as named in the route."""

    service: Name = Field(description="Service name as referenced by the route's backends.")
    deployment: Name | None = Field(
        default=None,
        description="Deployment behind the service; when set on both sides, the release "
        "is promoted by copying the canary's pod template to the stable Deployment.",
    )


class GatewayAPIRouting(SpecModel):
    http_route: Name = Field(alias="httpRoute", description="HTTPRoute in the same namespace.")


class IstioRouting(SpecModel):
    virtual_service: Name = Field(alias="virtualService")
    routes: list[str] = Field(
        default_factory=list, description="Named HTTP routes to manage; all when empty."
    )


class SMIRouting(SpecModel):
    traffic_split: Name = Field(alias="trafficSplit")


class NginxRouting(SpecModel):
    stable_ingress: Name = Field(alias="stableIngress")


class TrafficRouting(SpecModel):
    """Exactly one traffic provider."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.gatewayAPI), has(self.istio), has(self.smi),"
                    " has(self.nginx)].filter(x, x).size() == 1",
                    "message": "set exactly one traffic provider (gatewayAPI, istio, smi or nginx)",
                }
            ]
        }
    )

    gateway_api: GatewayAPIRouting | None = Field(default=None, alias="gatewayAPI")
    istio: IstioRouting | None = None
    smi: SMIRouting | None = None
    nginx: NginxRouting | None = None

    @property
    def provider(self) -> str:
        return next(iter(self.configured()))

    def configured(self) -> list[str]:
        return [
            alias
            for alias, value in (
                ("gatewayAPI", self.gateway_api),
                ("istio", self.istio),
                ("smi", self.smi),
                ("nginx", self.nginx),
            )
            if value is not None
        ]

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        chosen = self.configured()
        if len(chosen) != 1:
            found = ", ".join(chosen) if chosen else "none"
            raise ValueError(
                f"set exactly one traffic provider (gatewayAPI, istio, smi or nginx); found {found}"
            )
        return self


class SecretKeyRef(SpecModel):
    name: Name
    key: str = Field(min_length=1)


class PrometheusAuth(SpecModel):
    """Credentials read from Secrets in the rollout's namespace."""

    bearer_token: SecretKeyRef | None = None
    username: SecretKeyRef | None = None
    password: SecretKeyRef | None = None

    @model_validator(mode="after")
    def _one_scheme(self) -> Self:
        basic = self.username is not None or self.password is not None
        if basic and (self.username is None or self.password is None):
            raise ValueError("basic auth needs both username and password")
        if basic and self.bearer_token is not None:
            raise ValueError("use either bearerToken or username/password, not both")
        return self


class PrometheusConfig(SpecModel):
    address: str = Field(pattern=r"^https?://\S+$", description="Base URL of the Prometheus API.")
    timeout: Duration = Field(default=timedelta(seconds=10))
    auth: PrometheusAuth | None = None
    ca_secret: SecretKeyRef | None = Field(default=None, description="PEM CA bundle to verify TLS.")
    insecure_skip_verify: bool = False


class NoDataPolicy(StrEnum):
    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"


class Metric(SpecModel):
    """A named PromQL template."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
    query: str = Field(min_length=1)
    on_no_data: NoDataPolicy = Field(
        default=NoDataPolicy.INCONCLUSIVE,
        description="Verdict when the query returns nothing or NaN.",
    )

    @field_validator("query")
    @classmethod
    def _known_variables(cls, query: str) -> str:
        unknown = sorted(set(template_variables(query)) - set(TEMPLATE_VARIABLES))
        if unknown:
            raise ValueError(
                f"unknown template variable(s) {', '.join('{{' + u + '}}' for u in unknown)}; "
                f"known: {', '.join(TEMPLATE_VARIABLES)}"
            )
        return query


class StatisticalTest(SpecModel):
    """Mann-Whitney U over the window, canary samples against stable samples."""

    method: Literal["MannWhitneyU"] = "MannWhitneyU"
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    window: Duration = Field(default=timedelta(minutes=10), description="How far back to sample.")
    step: Duration = Field(default=timedelta(seconds=30), description="Resolution of the samples.")


class Consistency(SpecModel):
    """Segments of the query, grouped by a label, must stay close to each other."""

    by: Annotated[str, Field(pattern=LABEL_NAME)]
    max_spread: float = Field(ge=0)
    absolute: bool = Field(
        default=False, description="Spread is max-min instead of (max-min)/mean."
    )


class Criterion(SpecModel):
    """A metric and one test: ``max``, ``min`` or both, optionally against stable."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.max) || has(self.min) || has(self.consistency)",
                    "message": "a criterion needs a test: max, min, or consistency",
                },
                {
                    "rule": "!has(self.max) || !has(self.min) || self.min <= self.max",
                    "message": "min is greater than max",
                },
            ]
        }
    )

    metric: Annotated[str, Field(min_length=1)]
    max: float | None = None
    min: float | None = None
    compare: Literal["stable"] | None = Field(
        default=None,
        description="Judge (canary - stable) / stable instead of the canary's value.",
    )
    test: StatisticalTest | None = None
    consistency: Consistency | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Self:
        if self.consistency is None and self.max is None and self.min is None:
            raise ValueError("a criterion needs a test: max, min, or consistency")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.test is not None and self.compare != "stable":
            raise ValueError("a statistical test needs compare: stable")
        if self.consistency is not None and self.compare is not None:
            raise ValueError("consistency and compare cannot be combined in one criterion")
        return self

    def describe_threshold(self) -> str:
        """The test in words, as shown in status: ``<= 0.01``, ``within [-0.03, 0.03]``."""
        subject = "relative to stable " if self.compare == "stable" else ""
        if self.consistency is not None:
            kind = "absolute" if self.consistency.absolute else "relative"
            return f"{kind} spread by {self.consistency.by} <= {self.consistency.max_spread:g}"
        if self.max is not None and self.min is not None:
            return f"{subject}within [{self.min:g}, {self.max:g}]"
        if self.max is not None:
            return f"{subject}<= {self.max:g}"
        return f"{subject}>= {self.min:g}"


class Trigger(Criterion):
    """A criterion that acts when it fails continuously for ``for``."""

    for_: Duration = Field(default=timedelta(0), alias="for", description="Sustain window.")


class Approval(SpecModel):
    """Groups that must each approve before the phase is entered."""

    required: list[Annotated[str, Field(min_length=1, pattern=DNS_LABEL)]] = Field(min_length=1)

    @field_validator("required")
    @classmethod
    def _unique(cls, groups: list[str]) -> list[str]:
        duplicated = sorted({g for g in groups if groups.count(g) > 1})
        if duplicated:
            raise ValueError(f"approver(s) listed twice: {', '.join(duplicated)}")
        return groups


class Phase(SpecModel):
    name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
    weight: Weight
    duration: Duration
    checkpoints: list[Duration] | None = Field(
        default=None, description="Offsets into the phase; default: the end of the phase."
    )
    approval: Approval | None = Field(default=None, description="Needed before entering.")
    not_before: datetime | None = Field(default=None, description="Do not enter before this time.")
    success_criteria: list[Criterion] = Field(default_factory=list)
    rollback_triggers: list[Trigger] = Field(default_factory=list)
    hold_triggers: list[Trigger] = Field(default_factory=list)

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("a phase lasts longer than 0s")
        return value

    @field_validator("not_before")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("notBefore needs a time zone, e.g. 2025-11-01T14:00:00Z")
        return value

    @model_validator(mode="after")
    def _checkpoints_in_phase(self) -> Self:
        offsets = self.checkpoints
        if offsets is None:
            return self
        if not offsets:
            raise ValueError("checkpoints: give at least one offset, or leave it out for the end")
        for i, offset in enumerate(offsets):
            if offset <= timedelta(0) or offset > self.duration:
                raise ValueError(
                    f"checkpoints[{i}]: {format_duration(offset)} is outside the phase "
                    f"(0, {format_duration(self.duration)}]"
                )
        for i, (a, b) in enumerate(itertools.pairwise(offsets)):
            if b == a:
                raise ValueError(f"checkpoints[{i + 1}]: repeats {format_duration(b)}")
            if b < a:
                raise ValueError(
                    f"checkpoints[{i + 1}]: {format_duration(b)} comes after "
                    f"{format_duration(a)}; checkpoints must be sorted"
                )
        return self

    @property
    def checkpoint_offsets(self) -> list[timedelta]:
        """The offsets to judge at: the given ones, or the end of the phase."""
        return list(self.checkpoints) if self.checkpoints else [self.duration]


def _positive_interval(value: timedelta) -> timedelta:
    if value < timedelta(milliseconds=100):
        raise ValueError("interval must be at least 100ms")
    return value


class RolloutSpec(SpecModel):
    """What a user asks for: move traffic from stable to canary through phases."""

    revision: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        description="What is being rolled out; a change starts a fresh rollout."
    )
    stable: Backend
    canary: Backend
    traffic_routing: TrafficRouting
    prometheus: PrometheusConfig | None = Field(
        default=None, description="Defaults to the operator's --prometheus address."
    )
    interval: Annotated[Duration, AfterValidator(_positive_interval)] = Field(
        default=timedelta(seconds=30), description="How often metrics are evaluated."
    )
    hold_weight: Weight | None = Field(
        default=None,
        description="Canary weight while holding; never above the current weight. "
        "Default: keep the current weight.",
    )
    breach_rollback_after: Duration | None = Field(
        default=None,
        description="Roll back when any success criterion fails continuously this long.",
    )
    max_query_errors: int = Field(
        default=4, ge=1, description="Consecutive failed evaluations before holding."
    )
    rollback_on_metrics_unavailable: bool = False
    metrics: list[Metric] = Field(min_length=1)
    phases: list[Phase] = Field(min_length=1)
    notifications: NotificationsSpec | None = Field(
        default=None, description="Where to tell people about this rollout, and what."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _unique_names("metrics", [m.name for m in self.metrics])
        _unique_names("phases", [p.name for p in self.phases])
        if self.stable.service == self.canary.service:
            raise ValueError("stable.service and canary.service must differ")
        if (self.stable.deployment is None) != (self.canary.deployment is None):
            raise ValueError("set deployment on both stable and canary, or on neither")
        known = {m.name for m in self.metrics}
        for i, phase in enumerate(self.phases):
            if i and phase.weight < self.phases[i - 1].weight:
                raise ValueError(
                    f"phases[{i}].weight: {phase.weight} is below the previous phase's "
                    f"{self.phases[i - 1].weight}; weights never decrease between phases"
                )
            for group, rules in (
                ("successCriteria", phase.success_criteria),
                ("rollbackTriggers", phase.rollback_triggers),
                ("holdTriggers", phase.hold_triggers),
            ):
                for j, rule in enumerate(rules):
                    if rule.metric not in known:
                        raise ValueError(
                            f"phases[{i}].{group}[{j}].metric: {rule.metric!r} is not defined "
                            f"in metrics (defined: {', '.join(sorted(known))})"
                        )
        return self

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)


def _unique_names(field: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ValueError(f"{field}[{i}].name: {name!r} is used twice")
        seen.add(name)


# Last: the notification models build on SpecModel above.
from phasegate.api.notifications import NotificationsSpec  # noqa: E402

RolloutSpec.model_rebuild()
