"""How the hub tells why a region cannot be reached: its Secret, its kubeconfig, or the
region's API itself, each as a condition reason and a message saying what to do."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from phasegate.api.release import SecretRef
from phasegate.hub.regions import Regions
from phasegate.kube import Forbidden, Kube, NotFound
from phasegate.localapi.server import kubeconfig

REF = SecretRef(name="region-eu", key="kubeconfig")


class Hub:
    """The hub's Secret reader, answering as the API would."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        if isinstance(self.answer, Exception):
            raise self.answer
        return str(self.answer)


def look(answer: Any) -> Any:
    regions = Regions(Hub(answer))  # type: ignore[arg-type]
    view, _ = regions.look("eu", "releases", REF, ("shop", "shop"), None)
    return view


@pytest.mark.parametrize(
    ("answer", "reason", "says"),
    [
        (NotFound("secrets not found"), "SecretNotFound",
         "Secret releases/region-eu not found: create it with the region's kubeconfig"),
        (NotFound("secret releases/region-eu has no key 'kubeconfig'"), "SecretKeyMissing",
         "has no key 'kubeconfig'"),
        (Forbidden("secrets is forbidden"), "SecretForbidden", "the hub may not read Secret"),
        ("{not yaml", "KubeconfigInvalid", "the kubeconfig is not YAML"),
        ("apiVersion: v1\nkind: Config\n", "KubeconfigInvalid", "names no cluster"),
    ],
)  # fmt: skip
def test_credentials_problems_name_the_secret_and_what_to_do(
    answer: Any, reason: str, says: str
) -> None:
    view = look(answer)
    assert not view.reachable
    assert view.credentials is not None and view.credentials[0] == reason
    assert says in view.credentials[1]


def test_a_region_that_refuses_connections_is_unreachable_not_a_credentials_problem() -> None:
    text = yaml.safe_dump(kubeconfig("http://127.0.0.1:9"))  # nothing listens on port 9
    view = look(text)
    assert not view.reachable and view.credentials is None
    assert "refuses connections" in (view.error or "") or "cannot be reached" in (view.error or "")


def test_a_client_is_kept_while_the_kubeconfig_stays_the_same() -> None:
    text = yaml.safe_dump(kubeconfig("http://127.0.0.1:9"))
    regions = Regions(Hub(text))  # type: ignore[arg-type]
    first = regions.client("releases", REF)
    assert regions.client("releases", REF) is first
    regions.hub = Hub(yaml.safe_dump(kubeconfig("http://127.0.0.1:10")))  # type: ignore[assignment]
    assert regions.client("releases", REF) is not first
    assert isinstance(first, Kube)
