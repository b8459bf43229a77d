"""The routers' tests: a local API with the traffic providers' CRDs."""

from __future__ import annotations

import kubernetes
import pytest
import yaml

from phasegate.kube import Kube as Clients
from phasegate.localapi import LocalAPI
from support.kube import PROVIDER_CRDS, Kube


@pytest.fixture
def kube(local_api: LocalAPI) -> Kube:
    kube = Kube(local_api.kubeconfig_path)
    for doc in yaml.safe_load_all(PROVIDER_CRDS.read_text()):
        kube.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
    return kube


@pytest.fixture
def clients(kube: Kube) -> Clients:
    """The operator's own clients, on the same API."""
    return Clients(kubernetes.config.new_client_from_config(str(kube.kubeconfig)))
