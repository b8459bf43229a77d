"""The Kubernetes API semantics of the local API server, over aiohttp requests."""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml
from aiohttp import web

from phasegate.localapi import patching, schema, tables
from phasegate.localapi.resources import Resource, builtin_resources, from_crd
from phasegate.localapi.selectors import SelectorError, field_selector, label_selector
from phasegate.localapi.store import Obj, Store, Watcher

SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0+phasegate-local",
    "platform": "linux/amd64",
}
NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
JSON = "application/json"
PROTOBUF = "application/vnd.kubernetes.protobuf"


class APIError(Exception):
    """An error answered as a Kubernetes ``Status``."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def respond(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")),
        status=status,
        content_type=JSON,
        headers=headers,
    )


@dataclass
class Target:
    """What a request's path names."""

    resource: Resource
    namespace: str | None  # None: all namespaces (or a cluster-scoped resource)
    name: str | None = None
    subresource: str | None = None

    def ns(self) -> str:
        return self.namespace or ""

    def describe(self) -> str:
        group = f".{self.resource.group}" if self.resource.group else ""
        return f'{self.resource.plural}{group} "{self.name}"'


class KubernetesAPI:
    """Serves discovery, CRUD, patch, watch, tables, status and scale subresources."""

    def __init__(self, *, bookmark_interval: float = 10.0, window: int = 10_000) -> None:
        self.store = Store(window)
        self.bookmark_interval = bookmark_interval
        for resource in builtin_resources():
            self.store.register(resource)
        namespaces = self.store.find("", "v1", "namespaces")
        assert namespaces is not None
        for name in NAMESPACES:
            self._create_object(Target(namespaces, None), {"metadata": {"name": name}}, {})

    # ---- routing -----------------------------------------------------------------------------

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await self._route(request)
        except APIError as error:
            return respond(error.status(), error.code)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as error:  # a bug here must answer 500, never kill the server
            return respond(
                APIError(500, "InternalError", f"{type(error).__name__}: {error}").status(), 500
            )

    async def _route(self, request: web.BaseRequest) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if not parts:
            return respond({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/version"]})
        if parts[0] in ("healthz", "livez", "readyz"):
            return web.Response(text="ok")
        if parts == ["version"]:
            return respond(SERVER_VERSION)
        if parts[:2] == ["openapi", "v3"]:
            return respond(self._openapi(parts[2:]))
        if parts[0] == "openapi":
            raise APIError(404, "NotFound", "the local API serves OpenAPI v3 only")
        if parts == ["api"]:
            return respond(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}
                    ],
                }
            )
        if parts == ["apis"]:
            return respond(self._group_list())
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) == 2:
            return respond(self._group(parts[1]))
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise APIError(
                404,
                "NotFound",
                f"the server could not find the requested resource ({request.path})",
            )
        if not rest:
            return respond(self._resource_list(group, version))
        target = self._target(group, version, rest)
        return await self._dispatch(request, method, target)

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        def resource(plural: str) -> Resource:
            found = self.store.find(group, version, plural)
            if found is None:
                gv = f"{group}/{version}" if group else version
                raise APIError(
                    404,
                    "NotFound",
                    f"the server could not find the requested resource ({gv}, {plural})",
                )
            return found

        inner = self.store.find(group, version, rest[2]) if len(rest) >= 3 else None
        if rest[0] == "namespaces" and len(rest) >= 3 and (inner is None or inner.namespaced):
            namespaced = resource(rest[2])
            if len(rest) > 5:
                raise APIError(404, "NotFound", "the server could not find the requested resource")
            return Target(namespaced, rest[1], *[*rest[3:5], None, None][:2])
        found = resource(rest[0])
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if len(rest) > 3:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        return Target(found, None, name, sub)

    async def _dispatch(
        self, request: web.BaseRequest, method: str, target: Target
    ) -> web.StreamResponse:
        query = request.query
        if target.subresource and target.subresource not in self._subresources(target.resource):
            raise APIError(
                404,
                "NotFound",
                f"the server could not find the requested resource ({target.subresource})",
            )
        if target.name is None:
            if method == "GET":
                if query.get("watch") in ("1", "true"):
                    return await self._watch(request, target)
                return self._list(request, target)
            if method == "POST":
                body = await self._body(request)
                obj = self._create_object(target, body, query)
                return respond(obj, 201)
            if method == "DELETE":
                return self._delete_collection(request, target)
            raise APIError(405, "MethodNotAllowed", f"{method} is not supported on a collection")
        self._check_namespace(target)
        if target.subresource == "token":
            if method != "POST":
                raise APIError(405, "MethodNotAllowed", f"{method} is not supported on a token")
            return respond(self._token(target, await self._body(request)), 201)
        if method == "GET":
            obj = self._existing(target)
            if target.subresource == "scale":
                return respond(self._scale(target, obj))
            return self._one(request, target, obj)
        if method == "PUT":
            body = await self._body(request)
            return respond(self._update(target, body, query))
        if method == "PATCH":
            kind = request.content_type
            # Custom resources have no patch strategy: the apiserver refuses a strategic merge.
            accepted = [
                k for k in patching.KINDS if k != patching.STRATEGIC or not target.resource.crd_name
            ]
            if kind not in accepted:
                raise APIError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types "
                    f"include: {', '.join(accepted)}",
                )
            body = await self._body(request, yaml_ok=kind == patching.APPLY)
            obj, created = self._patch(target, kind, body, query)
            return respond(obj, 201 if created else 200)
        if method == "DELETE":
            return respond(self._delete(target, query))
        raise APIError(405, "MethodNotAllowed", f"{method} is not supported")

    @staticmethod
    def _subresources(resource: Resource) -> set[str]:
        return (
            ({"status"} if resource.status_subresource else set())
            | ({"scale"} if resource.scale_subresource else set())
            | ({"token"} if resource.token_subresource else set())
        )

    # ---- discovery ---------------------------------------------------------------------------

    def _versions(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for group, version, _ in self.store.resources:
            if group and version not in out.setdefault(group, []):
                out[group].append(version)
        return out

    def _group(self, name: str) -> dict[str, Any]:
        versions = self._versions().get(name)
        if not versions:
            raise APIError(
                404, "NotFound", f"the server could not find the requested resource ({name})"
            )
        entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": name,
            "versions": entries,
            "preferredVersion": entries[0],
        }

    def _group_list(self) -> dict[str, Any]:
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [self._group(name) for name in self._versions()],
        }

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        entries = [
            entry
            for (g, v, _), r in self.store.resources.items()
            if (g, v) == (group, version)
            for entry in r.discovery()
        ]
        if not entries:
            raise APIError(
                404,
                "NotFound",
                f"the server could not find the requested resource ({group}/{version})",
            )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": entries,
        }

    def _openapi(self, gv: list[str]) -> dict[str, Any]:
        """OpenAPI v3 documents: enough for kubectl to see that the server validates fields
        (``fieldValidation``) and to read the custom resources' schemas."""
        groups: dict[str, list[Resource]] = {}
        for resource in self.store.resources.values():
            prefix = f"apis/{resource.group}/{resource.version}" if resource.group else "api/v1"
            groups.setdefault(prefix, []).append(resource)
        if not gv:
            return {
                "paths": {
                    p: {"serverRelativeURL": f"/openapi/v3/{p}?hash={len(rs)}"}
                    for p, rs in groups.items()
                }
            }
        resources = groups.get("/".join(gv))
        if resources is None:
            raise APIError(404, "NotFound", f"no OpenAPI document for {'/'.join(gv)}")
        params = [
            {"name": n, "in": "query", "schema": {"type": "string"}}
            for n in ("dryRun", "fieldManager", "fieldValidation", "force")
        ]
        paths: dict[str, Any] = {}
        schemas: dict[str, Any] = {}
        for r in resources:
            gvk = {"group": r.group, "version": r.version, "kind": r.kind}
            scope = "/namespaces/{namespace}" if r.namespaced else ""
            operation = {"x-kubernetes-group-version-kind": gvk, "parameters": params}
            paths[f"/{'/'.join(gv)}{scope}/{r.plural}/{{name}}"] = {
                "get": operation,
                "put": operation,
                "patch": operation,
                "delete": operation,
            }
            paths[f"/{'/'.join(gv)}{scope}/{r.plural}"] = {"get": operation, "post": operation}
            if r.schema is not None:
                name = ".".join(reversed(r.group.split("."))) + f".{r.version}.{r.kind}"
                schemas[name] = {**r.schema, "x-kubernetes-group-version-kind": [gvk]}
        return {
            "openapi": "3.0.0",
            "info": {"title": "phasegate local API", "version": "v1"},
            "paths": paths,
            "components": {"schemas": schemas},
        }

    # ---- reading -----------------------------------------------------------------------------

    def _check_namespace(self, target: Target) -> None:
        if target.resource.namespaced and target.namespace is None:
            raise APIError(404, "NotFound", "a namespaced object is addressed by its namespace")

    def _existing(self, target: Target) -> Obj:
        assert target.name is not None
        obj = self.store.get(target.resource.key, target.ns(), target.name)
        if obj is None:
            raise APIError(
                404,
                "NotFound",
                f"{target.describe()} not found",
                {
                    "name": target.name,
                    "group": target.resource.group,
                    "kind": target.resource.plural,
                },
            )
        return obj

    @staticmethod
    def _wants_table(request: web.BaseRequest) -> bool:
        accept = request.headers.get("Accept", "")
        return "as=Table" in accept.split(",")[0] or accept.startswith("application/json;as=Table")

    def _one(self, request: web.BaseRequest, target: Target, obj: Obj) -> web.Response:
        if self._wants_table(request):
            rv = obj["metadata"]["resourceVersion"]
            return respond(
                tables.table(
                    target.resource, [obj], rv, request.query.get("includeObject", "Metadata")
                )
            )
        return respond(obj)

    def _matcher(self, request: web.BaseRequest) -> Any:
        try:
            labels = label_selector(request.query.get("labelSelector"))
            fields = field_selector(request.query.get("fieldSelector"))
        except SelectorError as error:
            raise APIError(400, "BadRequest", str(error)) from None
        return lambda obj: labels(obj) and fields(obj)

    def _list(self, request: web.BaseRequest, target: Target) -> web.Response:
        resource = target.resource
        items = list(self.store.select(resource.key, target.namespace, self._matcher(request)))
        rv = str(self.store.rv)
        if self._wants_table(request):
            return respond(
                tables.table(resource, items, rv, request.query.get("includeObject", "Metadata"))
            )
        return respond(
            {
                "kind": f"{resource.kind}List",
                "apiVersion": resource.group_version,
                "metadata": {"resourceVersion": rv},
                "items": items,
            }
        )

    async def _watch(self, request: web.BaseRequest, target: Target) -> web.StreamResponse:
        query = request.query
        resource = target.resource
        matcher = self._matcher(request)
        as_table = self._wants_table(request)
        timeout = min(float(query.get("timeoutSeconds") or 1800), 3600.0)
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        start = query.get("resourceVersion") or ""
        watcher = Watcher(resource.key, target.namespace, matcher)
        initial: list[tuple[str, Obj]]
        if start in ("", "0"):
            initial = [
                ("ADDED", o) for o in self.store.select(resource.key, target.namespace, matcher)
            ]
        else:
            try:
                since = self.store.since(resource.key, int(start))
            except ValueError:
                raise APIError(400, "BadRequest", f"invalid resourceVersion {start!r}") from None
            if since is None:
                gone = APIError(
                    410, "Expired", f"too old resource version: {start} ({self.store.oldest_rv})"
                )
                initial = [("ERROR", gone.status())]
            else:
                initial = [seen for c in since if (seen := watcher.seen_as(c))]
        self.store.subscribe(watcher)  # no await since the snapshot: nothing is missed
        response = web.StreamResponse(status=200, headers={"Content-Type": JSON})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            for type_, obj in initial:
                await self._send(response, resource, type_, obj, as_table)
            if initial and initial[-1][0] == "ERROR":
                return response
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while (left := deadline - loop.time()) > 0:
                try:
                    type_, obj = await asyncio.wait_for(
                        watcher.queue.get(), min(left, self.bookmark_interval)
                    )
                except TimeoutError:
                    if bookmarks:
                        bookmark = {
                            "kind": resource.kind,
                            "apiVersion": resource.group_version,
                            "metadata": {"resourceVersion": str(self.store.rv)},
                        }
                        await self._send(response, resource, "BOOKMARK", bookmark, False)
                    continue
                await self._send(response, resource, type_, obj, as_table)
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self.store.unsubscribe(watcher)
        return response

    async def _send(
        self, response: web.StreamResponse, resource: Resource, type_: str, obj: Obj, as_table: bool
    ) -> None:
        if as_table and type_ not in ("ERROR", "BOOKMARK"):
            obj = tables.table(resource, [obj], obj["metadata"]["resourceVersion"])
        line = json.dumps({"type": type_, "object": obj}, separators=(",", ":")) + "\n"
        await response.write(line.encode())

    def _token(self, target: Target, body: Any) -> Obj:
        """A TokenRequest for an existing ServiceAccount. The local API has no authentication:
        the token is well formed and accepted, never checked."""
        self._existing(target)
        spec = dict((body or {}).get("spec") or {})
        seconds = int(spec.get("expirationSeconds") or 3600)
        if seconds < 600:
            raise APIError(
                422, "Invalid", "spec.expirationSeconds: may not specify a duration less than 10m"
            )
        expires = datetime.fromtimestamp(datetime.now(UTC).timestamp() + seconds, UTC)
        return {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": target.name, "namespace": target.namespace},
            "spec": {**spec, "expirationSeconds": seconds},
            "status": {
                "token": f"local.{secrets.token_urlsafe(24)}",
                "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }

    def _scale(self, target: Target, obj: Obj) -> Obj:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: obj["metadata"][k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in obj["metadata"]
            },
            "spec": {"replicas": spec.get("replicas", 1)},
            "status": {
                "replicas": status.get("replicas", 0),
                "selector": ",".join(f"{k}={v}" for k, v in selector.items()),
            },
        }

    # ---- writing -----------------------------------------------------------------------------

    async def _body(self, request: web.BaseRequest, yaml_ok: bool = False) -> Any:
        # Without a Content-Type the apiserver reads the first type it serves: JSON.
        given = "Content-Type" in request.headers
        readable = (JSON, "", "application/yaml")
        if given and request.method in ("POST", "PUT") and request.content_type not in readable:
            # Protobuf is not spoken here. Clients of custom resources never send it; kubectl's
            # built-in generators do, and client-go does not fall back to JSON.
            hint = ""
            if request.content_type == PROTOBUF:
                hint = (
                    "; this local API does not read protobuf, which kubectl's generators "
                    "(kubectl create namespace|configmap|secret|token) send: give the object "
                    "as YAML instead (kubectl apply -f / kubectl create -f)"
                )
            raise APIError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format ({request.content_type}) "
                f"- accepted media types include: application/json, application/yaml{hint}",
            )
        raw = await request.read()
        try:
            as_yaml = yaml_ok or request.content_type == "application/yaml"
            body = yaml.safe_load(raw) if as_yaml else json.loads(raw or b"null")
        except (ValueError, yaml.YAMLError) as error:
            raise APIError(400, "BadRequest", f"the request body is not valid: {error}") from None
        return body

    def _validate(
        self, target: Target, obj: Obj, query: Any, old: Obj | None
    ) -> tuple[Obj, list[str]]:
        """Schema-validate a custom resource (prune, default, check); 422 on failure."""
        resource = target.resource
        warnings: list[str] = []
        if resource.schema is not None:
            result = schema.validate(resource.schema, obj)
            if result.pruned:
                mode = query.get("fieldValidation", "Warn")
                unknown = ", ".join(f'unknown field "{p}"' for p in result.pruned)
                if mode == "Strict":
                    raise APIError(400, "BadRequest", f"strict decoding error: {unknown}")
                if mode == "Warn":
                    warnings.append(unknown)
            if result.causes:
                kind = f"{resource.kind}.{resource.group}" if resource.group else resource.kind
                name = obj.get("metadata", {}).get("name", "")
                texts = [c.text() for c in result.causes]
                joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
                raise APIError(
                    422,
                    "Invalid",
                    f'{kind} "{name}" is invalid: {joined}',
                    {
                        "name": name,
                        "group": resource.group,
                        "kind": resource.kind,
                        "causes": [
                            {"reason": c.reason, "message": c.message, "field": c.field}
                            for c in result.causes
                        ],
                    },
                )
            obj = result.value
        if resource.kind == "CustomResourceDefinition" and resource.group == "apiextensions.k8s.io":
            self._check_crd(obj, old)
        return obj, warnings

    def _check_crd(self, crd: Obj, old: Obj | None) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        problems = [f"spec.{f}: Required value" for f in ("group",) if not spec.get(f)]
        problems += [
            f"spec.names.{f}: Required value" for f in ("plural", "kind") if not names.get(f)
        ]
        if not spec.get("versions"):
            problems.append("spec.versions: Required value")
        expected = f"{names.get('plural')}.{spec.get('group')}"
        if crd.get("metadata", {}).get("name") != expected:
            problems.append(
                f'metadata.name: Invalid value: "{crd.get("metadata", {}).get("name")}": '
                'must be spec.names.plural+"."+spec.group'
            )
        if problems:
            name = crd.get("metadata", {}).get("name", "")
            raise APIError(
                422,
                "Invalid",
                f'CustomResourceDefinition.apiextensions.k8s.io "{name}" is invalid: '
                f"[{', '.join(problems)}]",
            )

    def _stamp(self, target: Target, obj: Obj) -> Obj:
        meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_text()
        meta["resourceVersion"] = self.store.next_rv()
        if target.resource.has_generation:
            meta["generation"] = 1
        if target.resource.namespaced:
            meta["namespace"] = target.ns()
        else:
            meta.pop("namespace", None)
        return obj

    def _create_object(self, target: Target, body: Any, query: Any) -> Obj:
        resource = target.resource
        if not isinstance(body, dict):
            raise APIError(400, "BadRequest", "the body must be a JSON object")
        obj = copy.deepcopy(body)
        obj.setdefault("apiVersion", resource.group_version)
        obj.setdefault("kind", resource.kind)
        if resource.crd_name and obj["kind"] != resource.kind:
            raise APIError(
                422,
                "Invalid",
                f'{obj["kind"]}.{resource.group} "{(obj.get("metadata") or {}).get("name", "")}" '
                f'is invalid: kind: Invalid value: "{obj["kind"]}": must be {resource.kind}',
            )
        if obj["kind"] != resource.kind or obj["apiVersion"] != resource.group_version:
            raise APIError(
                400,
                "BadRequest",
                f"the object is {obj['apiVersion']}/{obj['kind']}, "
                f"the URL is for {resource.group_version}/{resource.kind}",
            )
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise APIError(400, "BadRequest", "metadata must be an object")
        if resource.namespaced:
            if target.namespace is None:
                raise APIError(
                    400, "BadRequest", "a namespaced object is created in a namespace's URL"
                )
            if meta.get("namespace") not in (None, "", target.namespace):
                raise APIError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace "
                    "sent on the request",
                )
            if self.store.get(("", "v1", "namespaces"), "", target.namespace) is None:
                raise APIError(
                    404,
                    "NotFound",
                    f'namespaces "{target.namespace}" not found',
                    {"name": target.namespace, "kind": "namespaces"},
                )
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
            else:
                raise APIError(
                    422,
                    "Invalid",
                    f'{resource.kind} "" is invalid: metadata.name: Required value: '
                    "name or generateName is required",
                )
        target = Target(resource, target.namespace, meta["name"])
        if self.store.get(resource.key, target.ns(), meta["name"]) is not None:
            raise APIError(
                409,
                "AlreadyExists",
                f"{target.describe()} already exists",
                {"name": meta["name"], "group": resource.group, "kind": resource.plural},
            )
        for field in (
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ):
            meta.pop(field, None)
        if resource.status_subresource and resource.crd_name:
            obj.pop("status", None)  # a custom resource's status is written through /status only
        obj, _ = self._validate(target, obj, query, None)
        if query.get("dryRun") == "All":
            return obj
        self._stamp(target, obj)
        if resource.kind == "CustomResourceDefinition":
            obj = self._establish(obj)
        elif resource.kind == "Namespace":
            obj["status"] = {"phase": "Active"}
        self.store.put(resource.key, target.ns(), meta["name"], obj, "ADDED")
        self._after_write(target, obj)
        return obj

    def _establish(self, crd: Obj) -> Obj:
        """Register the CRD's resources and report it Established, as the apiserver does."""
        old = self.store.get(
            ("apiextensions.k8s.io", "v1", "customresourcedefinitions"), "", crd["metadata"]["name"]
        )
        if old is not None:
            for resource in from_crd(old):
                self.store.resources.pop(resource.key, None)
        for resource in from_crd(crd):
            self.store.register(resource)
        names = crd["spec"]["names"]
        stamp = now_text()
        crd["status"] = {
            "acceptedNames": {k: v for k, v in names.items()},
            "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": stamp,
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": stamp,
                },
            ],
        }
        return crd

    def _replace(self, target: Target, old: Obj, new: Obj, query: Any) -> Obj:
        """Store ``new`` in place of ``old`` with the apiserver's rules; returns what is stored."""
        resource = target.resource
        meta = new.setdefault("metadata", {})
        old_meta = old["metadata"]
        sent_rv = meta.get("resourceVersion")
        if sent_rv not in (None, "") and sent_rv != old_meta["resourceVersion"]:
            raise APIError(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on {target.describe()}: "
                "the object has been modified; "
                "please apply your changes to the latest version and try again",
                {"name": target.name, "group": resource.group, "kind": resource.plural},
            )
        for field in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        new["apiVersion"], new["kind"] = (
            old.get("apiVersion", resource.group_version),
            old.get("kind", resource.kind),
        )
        if resource.status_subresource:
            if target.subresource == "status":
                new = (
                    {**old, "status": new.get("status")}
                    if new.get("status") is not None
                    else {k: v for k, v in old.items() if k != "status"}
                )
                new["metadata"] = dict(old_meta)
            elif "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if meta.get("deletionTimestamp") and set(meta.get("finalizers") or []) - set(
            old_meta.get("finalizers") or []
        ):
            raise APIError(
                422,
                "Invalid",
                f"{target.describe()} is being deleted: no new finalizers may be added",
            )
        new, _ = self._validate(target, new, query, old)
        new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        if new == old:
            return old  # a no-op write changes nothing, not even the resourceVersion
        if query.get("dryRun") == "All":
            return new
        if resource.has_generation and _spec_part(new) != _spec_part(old):
            new["metadata"]["generation"] = old_meta.get("generation", 1) + 1
        new["metadata"]["resourceVersion"] = self.store.next_rv()
        if resource.kind == "CustomResourceDefinition" and target.subresource is None:
            new = self._establish(new)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._remove(target, new)
            return new
        self.store.put(resource.key, target.ns(), old_meta["name"], new, "MODIFIED")
        self._after_write(target, new)
        return new

    def _update(self, target: Target, body: Any, query: Any) -> Obj:
        if not isinstance(body, dict):
            raise APIError(400, "BadRequest", "the body must be a JSON object")
        old = self._existing(target)
        if target.subresource == "scale":
            replicas = (body.get("spec") or {}).get("replicas")
            new = copy.deepcopy(old)
            new.setdefault("spec", {})["replicas"] = replicas
            new["metadata"]["resourceVersion"] = (body.get("metadata") or {}).get("resourceVersion")
            stored = self._replace(
                Target(target.resource, target.namespace, target.name), old, new, query
            )
            return self._scale(target, stored)
        body_name = (body.get("metadata") or {}).get("name")
        if body_name not in (None, target.name):
            raise APIError(
                400, "BadRequest", "the name of the object does not match the name in the URL"
            )
        return self._replace(target, old, copy.deepcopy(body), query)

    def _patch(self, target: Target, kind: str, body: Any, query: Any) -> tuple[Obj, bool]:
        assert target.name is not None
        old = self.store.get(target.resource.key, target.ns(), target.name)
        if old is None:
            if kind == patching.APPLY and target.subresource is None:
                return self._create_object(
                    Target(target.resource, target.namespace), body, query
                ), True
            self._existing(target)
        assert old is not None
        base = self._scale(target, old) if target.subresource == "scale" else old
        try:
            patched = patching.apply_patch(kind, copy.deepcopy(base), body)
        except patching.PatchError as error:
            raise APIError(422, "Invalid", str(error)) from None
        if not isinstance(patched, dict):
            raise APIError(422, "Invalid", "the patch does not produce an object")
        if target.subresource == "scale":
            new = copy.deepcopy(old)
            new.setdefault("spec", {})["replicas"] = (patched.get("spec") or {}).get("replicas")
            new["metadata"]["resourceVersion"] = None
            stored = self._replace(
                Target(target.resource, target.namespace, target.name), old, new, query
            )
            return self._scale(target, stored), False
        return self._replace(target, old, patched, query), False

    def _delete(self, target: Target, query: Any) -> Obj:
        obj = self._existing(target)
        if query.get("dryRun") == "All":
            return obj
        meta = obj["metadata"]
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return obj
            new = copy.deepcopy(obj)
            new["metadata"]["deletionTimestamp"] = now_text()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["metadata"]["resourceVersion"] = self.store.next_rv()
            self.store.put(target.resource.key, target.ns(), meta["name"], new, "MODIFIED")
            return new
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = self.store.next_rv()
        self._remove(target, gone)
        return gone

    def _remove(self, target: Target, obj: Obj) -> None:
        resource = target.resource
        self.store.put(resource.key, target.ns(), obj["metadata"]["name"], obj, "DELETED")
        if resource.kind == "CustomResourceDefinition":
            for served in from_crd(obj):
                for child in self.store.unregister(served.key):
                    child = copy.deepcopy(child)
                    child["metadata"]["resourceVersion"] = self.store.next_rv()
                    ns = child["metadata"].get("namespace", "")
                    self.store.put(served.key, ns, child["metadata"]["name"], child, "DELETED")
        elif resource.kind == "Namespace":
            name = obj["metadata"]["name"]
            for key, objects in list(self.store.objects.items()):
                for (ns, child_name), child in list(objects.items()):
                    if ns == name:
                        child = copy.deepcopy(child)
                        child["metadata"]["resourceVersion"] = self.store.next_rv()
                        self.store.put(key, ns, child_name, child, "DELETED")

    def _delete_collection(self, request: web.BaseRequest, target: Target) -> web.Response:
        matcher = self._matcher(request)
        deleted = []
        for obj in list(self.store.select(target.resource.key, target.namespace, matcher)):
            each = Target(
                target.resource, obj["metadata"].get("namespace"), obj["metadata"]["name"]
            )
            deleted.append(self._delete(each, request.query))
        return respond(
            {
                "kind": f"{target.resource.kind}List",
                "apiVersion": target.resource.group_version,
                "metadata": {"resourceVersion": str(self.store.rv)},
                "items": deleted,
            }
        )

    def _after_write(self, target: Target, obj: Obj) -> None:
        """The one controller emulated beside the API: a Deployment whose spec changed is
        rolled out at once (no pods exist here), so its status reports it ready."""
        resource = target.resource
        if (resource.kind, resource.group) != ("Deployment", "apps") or target.subresource:
            return
        generation = obj["metadata"].get("generation", 1)
        if (obj.get("status") or {}).get("observedGeneration") == generation:
            return
        replicas = (obj.get("spec") or {}).get("replicas", 1)
        ready = copy.deepcopy(obj)
        ready["status"] = {
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        }
        ready["metadata"]["resourceVersion"] = self.store.next_rv()
        namespace = obj["metadata"].get("namespace", "")
        self.store.put(resource.key, namespace, obj["metadata"]["name"], ready, "MODIFIED")


def _spec_part(obj: Obj) -> Obj:
    """What metadata.generation counts: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}
