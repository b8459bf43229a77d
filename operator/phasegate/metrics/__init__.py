"""Metrics providers: the protocol and its Prometheus implementation."""

from phasegate.metrics.prometheus import Prometheus, PrometheusSettings
from phasegate.metrics.provider import MetricsProvider

__all__ = ["MetricsProvider", "Prometheus", "PrometheusSettings"]
