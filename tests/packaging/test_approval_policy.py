"""The chart's approval policy as rendered: off by default, its values mapped into CEL, and
the canonical form it admits the very one phasegate.api.controls writes.

What the API server does with it is proven on kube-apiserver:
tests/cluster/test_admitted_approvals.py.
"""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
from test_chart import KUBERNETES, of_kind, render

from phasegate.api import controls

ON: dict[str, Any] = {
    "approvalPolicy": {
        "enabled": True,
        "groups": {
            "finance": "release-approvers-finance",
            "engineering": ["release-approvers-engineering", "sre"],
        },
    }
}


def policy(values: dict[str, Any]) -> dict[str, Any]:
    (found,) = of_kind(render(values), "ValidatingAdmissionPolicy")
    return found


def variable(found: dict[str, Any], name: str) -> str:
    return next(str(v["expression"]) for v in found["spec"]["variables"] if v["name"] == name)


def test_off_by_default() -> None:
    docs = render({})
    assert of_kind(docs, "ValidatingAdmissionPolicy") == []
    assert of_kind(docs, "ValidatingAdmissionPolicyBinding") == []


def test_on_it_is_valid_kubernetes_and_bound_to_deny() -> None:
    docs = render(ON)
    found = policy(ON)
    (binding,) = of_kind(docs, "ValidatingAdmissionPolicyBinding")
    for doc in (found, binding):
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    assert binding["spec"] == {"policyName": "phasegate-approvals", "validationActions": ["Deny"]}
    assert found["spec"]["failurePolicy"] == "Fail"
    assert found["spec"]["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": ["phasegate.dev"],
            "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["progressiverollouts"],
        }
    ]


def test_the_policy_admits_exactly_the_form_the_writers_produce() -> None:
    malformed = variable(policy(ON), "malformed")
    (pattern,) = re.findall(r"matches\(r'(.*?)'\)", malformed)
    assert pattern == controls.CANONICAL


def test_groups_map_to_lists_of_identity_provider_groups() -> None:
    assert variable(policy(ON), "groups") == (
        '{"engineering":["release-approvers-engineering","sre"],'
        '"finance":["release-approvers-finance"]}'
    )


def test_the_operator_and_the_listed_service_accounts_are_trusted() -> None:
    trusted = variable(policy(ON), "trusted")
    assert trusted == (
        'variables.user in ["system:serviceaccount:phasegate-system:phasegate",'
        '"system:serviceaccount:argocd:argocd-server"]'
    )
    only_ours = {"approvalPolicy": {**ON["approvalPolicy"], "serviceAccounts": []}}
    assert variable(policy(only_ours), "trusted") == (
        'variables.user in ["system:serviceaccount:phasegate-system:phasegate"]'
    )


def test_a_namespace_selector_limits_the_binding() -> None:
    selector = {"matchLabels": {"phasegate.dev/approvals": "checked"}}
    values = {"approvalPolicy": {**ON["approvalPolicy"], "namespaceSelector": selector}}
    (binding,) = of_kind(render(values), "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["matchResources"] == {"namespaceSelector": selector}


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"groups": {"Finance": "x"}}, "'Finance' does not match pattern"),
        ({"groups": {"finance": ""}}, "/approvalPolicy/groups/finance"),
        ({"groups": {"finance": []}}, "/approvalPolicy/groups/finance"),
        ({"serviceAccounts": ["argocd-server"]}, "/approvalPolicy/serviceAccounts/0"),
        ({"enable": True}, "enable"),
    ],
)
def test_bad_policy_values_fail_at_install(values: dict[str, Any], words: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=words):
        render({"approvalPolicy": values})
