"""Fixtures shared by the whole suite."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from phasegate.localapi.testing import local_api

__all__ = ["kubectl_cache", "local_api"]

# The real control plane (cluster/), started once per session by the tests that use it.
pytest_plugins = ["support.cluster"]


@pytest.fixture(scope="session", autouse=True)
def kubectl_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """kubectl's discovery and HTTP caches in a temporary directory: never in a home
    directory or the checkout (kubectl honours $KUBECACHEDIR)."""
    cache = tmp_path_factory.mktemp("kubecache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBECACHEDIR", str(cache))
        yield cache
