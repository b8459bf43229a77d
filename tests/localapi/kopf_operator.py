"""A tiny kopf operator, run by the tests with `kopf run` against the local API."""

from __future__ import annotations

import logging
from typing import Any

import kopf

GROUP, VERSION, PLURAL = "test.phasegate.dev", "v1", "widgets"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="test.phasegate.dev"
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="test.phasegate.dev"
    )
    settings.posting.level = logging.INFO
    settings.posting.loggers = True  # handlers' log lines become Events
    settings.watching.server_timeout = 10


@kopf.on.create(GROUP, VERSION, PLURAL)
def created(spec: kopf.Spec, patch: kopf.Patch, logger: logging.Logger, **_: Any) -> None:
    patch.status["seen"] = spec.get("size")
    logger.info(f"created with size {spec.get('size')}")


@kopf.on.update(GROUP, VERSION, PLURAL)
def updated(spec: kopf.Spec, patch: kopf.Patch, logger: logging.Logger, **_: Any) -> None:
    patch.status["seen"] = spec.get("size")
    logger.info(f"resized to {spec.get('size')}")


@kopf.on.delete(GROUP, VERSION, PLURAL)
def deleted(logger: logging.Logger, **_: Any) -> None:
    logger.info("cleaned up")
