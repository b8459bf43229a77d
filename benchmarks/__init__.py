"""phasegate's benchmarks: `make bench` runs them and prints the figures."""
