"""``kubectl phasegate dashboard``: a live web view of rollouts on 127.0.0.1.

Rollouts, phases, checkpoints, a chart per rule against its threshold, segments, canary
against stable, critical alerts, time left, and approve/reject buttons acting with the
caller's own credentials. Plain JavaScript and inline SVG shipped in the package: no CDN, no
build step, works offline.

The package imports nothing heavy: the kubectl plugin registers the subcommand with
:mod:`phasegate.dashboard.command` on every run; :mod:`phasegate.dashboard.server` is loaded
only when the dashboard starts.
"""
