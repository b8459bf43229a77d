"""Fixtures shared by the whole suite."""

from phasegate.localapi.testing import local_api

__all__ = ["local_api"]
