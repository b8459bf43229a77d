"""``kubectl phasegate dashboard``: a live web view of rollouts on 127.0.0.1.

Rollouts, phases, checkpoints, a chart per rule against its threshold, segments, canary
against stable, critical alerts, time left, and approve/reject buttons acting with the
caller's own credentials. Plain JavaScript and inline SVG shipped in the package: no CDN, no
build step, works offline.
"""

from phasegate.dashboard.server import Dashboard, make_app, serve

__all__ = ["Dashboard", "make_app", "serve"]
