"""The demo stack: a service exporting Prometheus metrics, a load generator playing the
mesh's data plane, and the orchestration behind `make demo`."""
