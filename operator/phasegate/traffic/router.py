"""The traffic router protocol: set the canary's weight, read it back, restore the route."""

from __future__ import annotations

from typing import Protocol

from phasegate.traffic.cache import Key


class RouteError(RuntimeError):
    """The route or a backend is missing or unusable; say which, and how to fix it."""


class Router(Protocol):
    """One implementation per mesh (Gateway API, Istio, SMI, NGINX)."""

    kind: str

    def read_weight(self) -> int:
        """The canary's weight (0-100) as the route has it now; RouteError if unusable."""
        ...

    def set_weight(self, weight: int) -> None:
        """Give the canary ``weight`` percent and stable the rest; saves the original first."""
        ...

    def restore(self) -> bool:
        """Put back the weights saved before the first change; False if none were saved."""
        ...

    def routes_read(self) -> tuple[Key, ...]:
        """The routes it reads, as the route cache names them."""
        ...
