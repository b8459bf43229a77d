"""A local Kubernetes API for tests and demos: kmock's HTTP server with apiserver semantics.

It emulates what phasegate, kopf and kubectl depend on; see the README's section
"Testing without a cluster" for what it does not.
"""

from phasegate.localapi.api import KubernetesAPI
from phasegate.localapi.server import LocalAPI, kubeconfig

__all__ = ["KubernetesAPI", "LocalAPI", "kubeconfig"]
