"""A small Kubernetes API server on 127.0.0.1 for `streamguard submit`'s tests.

It speaks the few endpoints submit uses, the way the real server does:
- RayJobs (`/apis/ray.io/v1/namespaces/NS/rayjobs`) are checked against the KubeRay 1.7 CRD
  openAPIV3Schema (types, int32/int64 formats, enums; unknown fields are rejected with
  `fieldValidation=Strict` and pruned otherwise, as the real server does);
- ConfigMaps are checked against the Kubernetes 1.31 schema (kubernetes-validate, strict);
- answers are Status objects: 201 on create, 409 `AlreadyExists`, 422 `Invalid` with
  `details.causes[].field`, 404 `NotFound` for an unknown resource path (no CRD installed), a
  missing namespace or object, 400 `BadRequest` for strict decoding errors.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlparse

from tests.k8s import kube

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
INT_FORMATS = {"int32": 2**31, "int64": 2**63}


def _status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


def _field(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class FakeKubeAPI:
    def __init__(self, *, crds_installed: bool = True, namespaces: tuple[str, ...] = ("default", "ml")):
        self.crds_installed = crds_installed
        self.namespaces = set(namespaces)
        self.objects: dict[tuple[str, str, str], dict] = {}  # (resource, namespace, name) -> object
        self.pod_logs: dict[tuple[str, str], list[str]] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kube-api", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ test helpers

    def add(self, resource: str, namespace: str, obj: dict) -> dict:
        obj.setdefault("metadata", {}).update(namespace=namespace, uid=str(uuid.uuid4()), resourceVersion="1",
                                              creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        with self.lock:
            self.objects[(resource, namespace, obj["metadata"]["name"])] = obj
        return obj

    def get(self, resource: str, namespace: str, name: str) -> dict | None:
        with self.lock:
            return self.objects.get((resource, namespace, name))

    def set_status(self, namespace: str, name: str, **status) -> None:
        with self.lock:
            self.objects[("rayjobs", namespace, name)].setdefault("status", {}).update(status)

    def kubeconfig(self, namespace: str | None = None) -> str:
        context = {"cluster": "fake", "user": "tester", **({"namespace": namespace} if namespace else {})}
        return json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "fake",
                           "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                           "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
                           "contexts": [{"name": "fake", "context": context}]})

    # --------------------------------------------------------------------- validation

    def _schema_errors(self, obj: dict, strict: bool) -> tuple[list[dict], list[str]]:
        """(422 causes, unknown fields) for a RayJob."""
        import jsonschema

        schema = kube.crd_schema("RayJob")
        checker = jsonschema.FormatChecker()
        for fmt, bound in INT_FORMATS.items():
            checker.checks(fmt)(lambda v, b=bound: not isinstance(v, int) or -b <= v < b)
        causes, unknown = [], []
        for err in jsonschema.Draft7Validator(schema, format_checker=checker).iter_errors(obj):
            if err.validator == "additionalProperties" and err.validator_value is False:
                extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
                unknown += [_field([*err.absolute_path, k]) for k in extra]
                continue
            field = _field(err.absolute_path)
            reason = "FieldValueRequired" if err.validator == "required" else "FieldValueInvalid"
            causes.append({"reason": reason, "message": f"Invalid value: {json.dumps(err.instance)[:80]}: {err.message}",
                           "field": field})
        name = obj.get("metadata", {}).get("name", "")
        if not DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
            causes.append({"reason": "FieldValueInvalid", "field": "metadata.name",
                           "message": f"Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist of lower case "
                                      "alphanumeric characters, '-' or '.'"})
        return causes, unknown

    # ------------------------------------------------------------------------ HTTP

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def _route(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                api.requests.append((method, url.path))
                m = re.fullmatch(r"/(?:api/v1|apis/(?P<group>[^/]+)/(?P<version>[^/]+))/namespaces/(?P<ns>[^/]+)/"
                                 r"(?P<res>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>log))?", url.path)
                if not m or (m["group"] and (m["group"], m["version"]) != ("ray.io", "v1")) \
                        or (m["group"] == "ray.io" and not api.crds_installed):
                    # What the real server says for a resource type it does not serve.
                    return self._send(404, _status(404, "NotFound", "the server could not find the requested resource",
                                                   {}))
                ns, res, name = m["ns"], m["res"], m["name"]
                if res not in {"rayjobs", "configmaps", "serviceaccounts", "pods"}:
                    return self._send(404, _status(404, "NotFound", "the server could not find the requested resource"))
                if ns not in api.namespaces:
                    return self._send(404, _status(404, "NotFound", f'namespaces "{ns}" not found',
                                                   {"name": ns, "kind": "namespaces"}))
                kind = {"rayjobs": "RayJob", "configmaps": "ConfigMap", "serviceaccounts": "ServiceAccount",
                        "pods": "Pod"}[res]
                if method == "POST" and not name:
                    return self._create(ns, res, kind, self._body(), query)
                if method == "GET" and not name:
                    return self._list(ns, res, query)
                obj = api.get(res, ns, name)
                if obj is None:
                    group = "ray.io" if res == "rayjobs" else ""
                    return self._send(404, _status(404, "NotFound", f'{res}{"." + group if group else ""} "{name}" not found',
                                                   {"name": name, "kind": res, **({"group": group} if group else {})}))
                if method == "GET" and m["sub"] == "log":
                    return self._send(200, "".join(f"{line}\n" for line in api.pod_logs.get((ns, name), [])), "text/plain")
                if method == "GET":
                    return self._send(200, obj)
                if method == "DELETE":
                    with api.lock:
                        del api.objects[(res, ns, name)]
                    return self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                                            "details": {"name": name, "kind": res}})
                if method == "PATCH":
                    patch = self._body()
                    with api.lock:
                        for key, value in patch.get("metadata", {}).items():
                            obj["metadata"][key] = value
                    return self._send(200, obj)
                return self._send(405, _status(405, "MethodNotAllowed", f"{method} is not supported here"))

            def _create(self, ns: str, res: str, kind: str, obj: dict, query: dict) -> None:
                name = obj.get("metadata", {}).get("name")
                if obj.get("kind") != kind:
                    return self._send(400, _status(400, "BadRequest", f"the body kind {obj.get('kind')!r} is not {kind}"))
                if obj.get("metadata", {}).get("namespace") not in (None, ns):
                    return self._send(400, _status(400, "BadRequest", "the namespace of the object does not match the "
                                                                      "namespace on the request"))
                if res == "rayjobs":
                    causes, unknown = api._schema_errors(obj, strict=query.get("fieldValidation") == "Strict")
                    if unknown and query.get("fieldValidation") == "Strict":
                        return self._send(400, _status(400, "BadRequest", "strict decoding error: "
                                                       + ", ".join(f'unknown field "{u}"' for u in unknown)))
                    if causes:
                        message = f'RayJob.ray.io "{name}" is invalid: [' + ", ".join(
                            f"{c['field']}: {c['message']}" for c in causes) + "]"
                        return self._send(422, _status(422, "Invalid", message, {"name": name, "group": "ray.io",
                                                                                 "kind": "RayJob", "causes": causes}))
                elif res == "configmaps":
                    try:
                        kube.validate_builtin(obj)
                    except AssertionError as exc:
                        return self._send(422, _status(422, "Invalid", str(exc), {"name": name, "kind": "ConfigMap",
                                                                                  "causes": [{"reason": "FieldValueInvalid",
                                                                                              "message": str(exc),
                                                                                              "field": "data"}]}))
                if api.get(res, ns, name) is not None:
                    group = ".ray.io" if res == "rayjobs" else ""
                    return self._send(409, _status(409, "AlreadyExists", f'{res}{group} "{name}" already exists',
                                                   {"name": name, "kind": res}))
                return self._send(201, api.add(res, ns, obj))

            def _list(self, ns: str, res: str, query: dict) -> None:
                selector = dict(part.split("=", 1) for part in query.get("labelSelector", "").split(",") if "=" in part)
                with api.lock:
                    items = [o for (r, n, _), o in api.objects.items() if r == res and n == ns
                             and all(o["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())]
                kind = {"pods": "PodList", "rayjobs": "RayJobList", "configmaps": "ConfigMapList"}.get(res, "List")
                return self._send(200, {"kind": kind, "apiVersion": "v1", "metadata": {}, "items": items})

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def do_DELETE(self):
                self._route("DELETE")

            def do_PATCH(self):
                self._route("PATCH")

        return Handler
