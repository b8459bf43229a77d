"""The ``ProgressiveRelease`` (v1alpha1): one revision rolled out region by region, in waves.

A release lives on the hub cluster. Each region is a cluster reached through a kubeconfig
Secret in the release's namespace; in each region the hub creates the ProgressiveRollout
made from ``spec.template`` with the region's ``overrides`` (a JSON merge patch, RFC 7386)
and the release's ``revision``, one wave after the other.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import Field, ValidationError, WithJsonSchema, model_validator

from phasegate import GROUP, VERSION
from phasegate.api import controls
from phasegate.api.durations import Duration
from phasegate.api.spec import DNS_LABEL, Name, RolloutSpec, SpecModel
from phasegate.api.status import Condition, StatusModel
from phasegate.api.validation import describe

RELEASE_KIND = "ProgressiveRelease"
RELEASE_PLURAL = "progressivereleases"
# On each region's ProgressiveRollout: which release made it ("<namespace>/<name>").
OWNER_ANNOTATION = f"{GROUP}/release"
OWNER_LABEL = f"{GROUP}/release-name"

RegionName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]


class SecretRef(SpecModel):
    """A key of a Secret in the release's namespace."""

    name: Name
    key: str = Field(default="kubeconfig", min_length=1)


class Region(SpecModel):
    """One cluster that takes the release in its turn."""

    name: RegionName
    kubeconfig_secret: SecretRef = Field(
        description="Secret (in the release's namespace) holding the kubeconfig the hub uses "
        "for this region; its user needs only the member Role of the chart."
    )
    overrides: FreeForm = Field(
        default_factory=dict,
        description="JSON merge patch (RFC 7386) over template.spec for this region: e.g. "
        "its Prometheus address. A list (phases, metrics) is replaced whole; null removes.",
    )


class WaveApproval(SpecModel):
    required: list[Annotated[str, Field(min_length=1, pattern=DNS_LABEL)]] = Field(min_length=1)


class Wave(SpecModel):
    """Regions that take the release together; the next wave starts when all succeeded."""

    name: Annotated[str, Field(max_length=63, pattern=DNS_LABEL)] | None = Field(
        default=None, description="Default: wave-<n>, counting from 1."
    )
    regions: list[RegionName] = Field(min_length=1)
    approval: WaveApproval | None = Field(
        default=None, description="Groups that must each approve before the wave starts."
    )


class RolloutTemplateMeta(SpecModel):
    name: Name | None = Field(default=None, description="Default: the release's name.")
    namespace: Name | None = Field(default=None, description="Default: the release's namespace.")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class RolloutTemplate(SpecModel):
    metadata: RolloutTemplateMeta = Field(default_factory=RolloutTemplateMeta)
    spec: FreeForm = Field(
        description="A ProgressiveRollout spec without revision; each region's overrides are "
        "merged over it and the result must be a valid ProgressiveRollout spec."
    )


class FailurePolicy(StrEnum):
    HALT = "Halt"  # stop: no further wave, the rest of the failing wave paused
    ROLLBACK_ALL = "RollbackAll"  # and roll back every region that took the revision


class ReleaseSpec(SpecModel):
    revision: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        description="What is rolled out; a change starts the release again from the first wave."
    )
    template: RolloutTemplate
    regions: list[Region] = Field(min_length=1)
    waves: list[Wave] = Field(min_length=1)
    bake_time: Duration = Field(
        default=timedelta(0), description="Time between a wave's success and the next's start."
    )
    interval: Duration = Field(
        default=timedelta(seconds=10), description="How often the hub looks at the regions."
    )
    failure_policy: FailurePolicy = Field(
        default=FailurePolicy.HALT,
        description="A region rolled back halts the release; RollbackAll also rolls back "
        "every region that took this revision.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.interval < timedelta(milliseconds=100):
            raise ValueError("interval: must be at least 100ms")
        names = [r.name for r in self.regions]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"regions: {', '.join(duplicated)} listed twice")
        placed: dict[str, int] = {}
        for i, wave in enumerate(self.waves):
            for region in wave.regions:
                if region not in names:
                    raise ValueError(
                        f"waves[{i}].regions: {region!r} is not in regions "
                        f"(defined: {', '.join(names)})"
                    )
                if region in placed:
                    raise ValueError(
                        f"waves[{i}].regions: {region!r} is already in waves[{placed[region]}]; "
                        "a region takes the release once"
                    )
                placed[region] = i
        missing = [n for n in names if n not in placed]
        if missing:
            raise ValueError(f"waves: region(s) {', '.join(missing)} in no wave")
        wave_names = self.wave_names()
        twice = sorted({n for n in wave_names if wave_names.count(n) > 1})
        if twice:
            raise ValueError(f"waves: name(s) {', '.join(twice)} used twice")
        if "revision" in self.template.spec:
            raise ValueError("template.spec.revision: leave it out; spec.revision is used")
        return self

    def wave_names(self) -> list[str]:
        return [w.name or f"wave-{i + 1}" for i, w in enumerate(self.waves)]

    def region(self, name: str) -> Region:
        return next(r for r in self.regions if r.name == name)

    def wave_of(self, region: str) -> int:
        return next(i for i, w in enumerate(self.waves) if region in w.regions)


# ---- status ---------------------------------------------------------------------------


class ReleaseState(StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    WAITING_FOR_APPROVAL = "WaitingForApproval"
    BAKING = "Baking"
    HOLDING = "Holding"  # a region cannot be seen (or reached with its credentials)
    PAUSED = "Paused"
    HALTED = "Halted"
    ROLLED_BACK = "RolledBack"
    SUCCEEDED = "Succeeded"
    INVALID = "Invalid"


TERMINAL = (ReleaseState.HALTED, ReleaseState.ROLLED_BACK, ReleaseState.SUCCEEDED)


class WaveState(StrEnum):
    PENDING = "Pending"
    WAITING_FOR_APPROVAL = "WaitingForApproval"
    BAKING = "Baking"
    PROGRESSING = "Progressing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class RegionDecision(StatusModel):
    action: str
    reason: str
    time: datetime | None = None


class RegionStatus(StatusModel):
    """One region as the hub last saw it."""

    name: str
    wave: str
    state: str = Field(
        default="NotStarted",
        description="NotStarted before its wave, then the state of its ProgressiveRollout "
        "for this revision (as of lastSeen when unreachable).",
    )
    phase: str | None = None
    weight: int | None = None
    revision: str | None = Field(default=None, description="The revision its rollout runs.")
    last_decision: RegionDecision | None = None
    last_seen: datetime | None = Field(
        default=None, description="When the hub last read the region's rollout."
    )
    reachable: bool | None = None
    message: str = ""
    requested: list[str] = Field(
        default_factory=list,
        description="Controls the hub sent to the region's rollout for this revision.",
    )


class WaveStatus(StatusModel):
    name: str
    state: WaveState = WaveState.PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None


class WaveApprovalRecord(StatusModel):
    wave: str
    group: str
    by: str
    time: datetime


class ReleaseStatus(StatusModel):
    observed_generation: int | None = None
    revision: str | None = Field(default=None, description="The revision this status is about.")
    state: ReleaseState = ReleaseState.PENDING
    message: str = ""
    current_wave: str | None = Field(default=None, description="The wave in progress or next.")
    progress: str | None = Field(default=None, description="Waves succeeded/total, e.g. 1/3.")
    regions_succeeded: str | None = Field(default=None, description="Regions succeeded/total.")
    waves: list[WaveStatus] = Field(default_factory=list)
    regions: list[RegionStatus] = Field(default_factory=list)
    approvals: list[WaveApprovalRecord] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    handled_controls: list[str] = Field(default_factory=list)
    failed_region: str | None = Field(default=None, description="The region that halted it.")


# ---- region rollouts ------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def region_spec(spec: ReleaseSpec, region: str) -> dict[str, Any]:
    """The ProgressiveRollout spec for ``region``: template, overrides, revision."""
    merged = merge_patch(spec.template.spec, spec.region(region).overrides)
    return {"revision": spec.revision, **merged}


def region_rollout(spec: ReleaseSpec, region: str, namespace: str, name: str) -> dict[str, Any]:
    """The whole ProgressiveRollout the hub keeps in ``region``."""
    meta = spec.template.metadata
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ProgressiveRollout",
        "metadata": {
            "name": meta.name or name,
            "namespace": meta.namespace or namespace,
            "labels": {**meta.labels, OWNER_LABEL: name},
            "annotations": {**meta.annotations, OWNER_ANNOTATION: f"{namespace}/{name}"},
        },
        "spec": region_spec(spec, region),
    }


def region_problems(spec: ReleaseSpec) -> list[str]:
    """Each region's rollout spec checked as the region's operator will check it."""
    problems = []
    for region in spec.regions:
        try:
            RolloutSpec.model_validate(region_spec(spec, region.name))
        except ValidationError as error:
            problems += [f"region {region.name}: {line}" for line in describe(error, ("spec",))]
    return problems


def normalized(rollout_spec: Any) -> Any:
    """A rollout spec with every default filled in, for comparing desired with stored."""
    try:
        return RolloutSpec.model_validate(rollout_spec).model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
    except ValidationError:
        return rollout_spec


def is_release(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and obj.get("kind") == RELEASE_KIND
        and str(obj.get("apiVersion", "")).startswith(GROUP + "/")
    )


def validate_release(obj: dict[str, Any]) -> tuple[ReleaseSpec | None, list[str]]:
    """A release's spec, or every problem with it (its own fields and each region's rollout)."""
    try:
        spec = ReleaseSpec.model_validate(obj.get("spec"))
    except ValidationError as error:
        return None, describe(error, ("spec",))
    problems = region_problems(spec)
    return (None, problems) if problems else (spec, [])


# ---- controls -------------------------------------------------------------------------

RELEASE_ACTIONS = ("approve", "pause", "resume", "abort")


def control_annotation(
    action: str, *, by: str, wave: str | None = None, group: str | None = None, reason: str = ""
) -> dict[str, str]:
    """The annotation that asks the hub for ``action`` on a release (the same mechanism as a
    rollout's controls: a unique key under ``control.phasegate.dev/``)."""
    if action not in RELEASE_ACTIONS:
        raise controls.ControlError(
            f"unknown action {action!r}; one of: {', '.join(RELEASE_ACTIONS)}"
        )
    if action == "approve" and not wave:
        raise controls.ControlError("approve needs the wave whose start is approved")
    body: dict[str, Any] = {"action": action, "by": by}
    if wave:
        body["wave"] = wave
    if group:
        body["group"] = group
    if reason:
        body["reason"] = reason
    key = controls.PREFIX + controls.new_id(action)
    return {key: json.dumps(body, separators=(",", ":"))}


def parse_controls(
    annotations: dict[str, str],
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """The release's control requests, oldest id first, and the problems found."""
    found: list[tuple[str, dict[str, Any]]] = []
    problems: list[str] = []
    for key in sorted(k for k in annotations if k.startswith(controls.PREFIX)):
        try:
            body = json.loads(annotations[key])
            if not isinstance(body, dict):
                raise controls.ControlError("the value is not a JSON object")
            if body.get("action") not in RELEASE_ACTIONS:
                raise controls.ControlError(
                    f"unknown action {body.get('action')!r} for a release; "
                    f"one of: {', '.join(RELEASE_ACTIONS)}"
                )
            if body["action"] == "approve" and not body.get("wave"):
                raise controls.ControlError("approve needs a wave")
            found.append((key[len(controls.PREFIX) :], body))
        except (ValueError, controls.ControlError) as error:
            problems.append(f"annotation {key}: {error}")
    return found, problems


def hub_control_id(release_uid: str, revision: str, step: int, action: str) -> str:
    """The id of a control the hub sends to a region's rollout: the same for the same
    release, revision and step, so a resend after a restart is applied once."""
    digest = hashlib.sha256(f"{release_uid}/{revision}".encode()).hexdigest()[:10]
    return f"release-{digest}-{step}-{action.lower()}"


__all__ = [
    "OWNER_ANNOTATION",
    "RELEASE_KIND",
    "RELEASE_PLURAL",
    "FailurePolicy",
    "RegionStatus",
    "ReleaseSpec",
    "ReleaseState",
    "ReleaseStatus",
    "WaveState",
    "WaveStatus",
    "control_annotation",
    "merge_patch",
    "normalized",
    "parse_controls",
    "region_rollout",
    "validate_release",
]
