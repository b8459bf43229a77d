"""The whole ``ProgressiveRollout`` object, as read from a manifest or the API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from phasegate import GROUP, KIND, VERSION
from phasegate.api.spec import RolloutSpec
from phasegate.api.status import RolloutStatus

API_VERSION = f"{GROUP}/{VERSION}"


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    namespace: str | None = None
    generation: int | None = None
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class ProgressiveRollout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_version: Literal["phasegate.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["ProgressiveRollout"]
    metadata: ObjectMeta
    spec: RolloutSpec
    status: RolloutStatus | None = None

    @classmethod
    def is_rollout(cls, obj: Any) -> bool:
        return (
            isinstance(obj, dict)
            and obj.get("kind") == KIND
            and str(obj.get("apiVersion", "")).startswith(GROUP + "/")
        )


__all__ = ["API_VERSION", "ObjectMeta", "ProgressiveRollout"]
