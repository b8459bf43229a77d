"""phasegate: progressive delivery for Kubernetes, gated by Prometheus metrics."""

__version__ = "0.1.0"

GROUP = "phasegate.dev"
VERSION = "v1alpha1"
KIND = "ProgressiveRollout"
PLURAL = "progressiverollouts"
