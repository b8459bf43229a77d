"""Command-line entry points: ``phasegate`` and the kubectl plugin ``kubectl-phasegate``."""
