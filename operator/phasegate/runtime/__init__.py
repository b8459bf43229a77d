"""The operator runtime: kopf handlers, one evaluation, logs and the operator's metrics."""
