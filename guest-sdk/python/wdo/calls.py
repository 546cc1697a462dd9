"""wdo, part 2 of 3 (calls): who the component is, and calls to objects. Imports only `context` and
`objects`, which both worlds (`durable-object` and `worker`) have."""

import json
from typing import Any, Optional

from componentize_py_types import Err
from wit_world.imports import context as _context
from wit_world.imports import objects as _objects

from ._bindings import wdo_types as _types

from .http import HttpError, Response, _dump, _host


class _Env:
    """This code's settings: ``env["API_KEY"]`` is a secret of its class (``wdo secret put``),
    else a var of its deployed version (``vars`` in ``wdo.toml``)."""

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        value = _context.env(key)
        return default if value is None else value

    def __getitem__(self, key: str) -> str:
        value = _context.env(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: str) -> bool:
        return _context.env(key) is not None


env = _Env()


class _Context:
    """Who this object is, logging and time."""

    def id(self) -> str:
        return _context.object_id()

    def name(self) -> Optional[str]:
        return _context.object_name()

    def class_name(self) -> str:
        return _context.class_name()

    def now_ms(self) -> int:
        return _context.now_ms()

    def log(self, level: str, message: str) -> None:
        _context.log(_context.LogLevel[level.upper()], str(message))


def _call_error(failure) -> HttpError:
    """Why a call to another object failed: 503 when it is safe to retry (overloaded, not run),
    500 when the callee failed, 400 for a bad call (unknown class, a re-entrant call, too deep a
    chain); ``from_callee``, ``retryable`` and ``overloaded`` tell more."""
    status = 503 if failure.retryable else 500 if failure.from_callee else 400
    error = HttpError(status, failure.message)
    error.from_callee, error.retryable, error.overloaded = failure.from_callee, failure.retryable, failure.overloaded
    return error


class Stub:
    """Another object: ``objects.get("counter", "alice").call("increment", 1)``."""

    def __init__(self, class_name: str, id: str):
        self.class_name = class_name
        self.id = id

    def call(self, method: str, args: Any = None) -> Any:
        """Calls the object's method with JSON arguments; answers its JSON result."""
        try:
            raw = _objects.call(self.class_name, self.id, method, _dump(args))
        except Err as e:
            raise _call_error(e.value) from None
        return json.loads(raw) if raw else None

    def fetch(self, method: str = "GET", path: str = "/", body: Any = b"", headers=None, query: str = "") -> Response:
        """Sends an HTTP request to the object; answers its response."""
        raw_body = body.encode() if isinstance(body, str) else bytes(body)
        request = _types.Request(method=method, path=path, query=query, headers=headers or [], body=raw_body)
        try:
            answer = _objects.fetch(self.class_name, self.id, request)
        except Err as e:
            raise _call_error(e.value) from None
        return Response(answer.body, answer.status, answer.headers)


class _Objects:
    def get(self, class_name: str, name: str) -> Stub:
        return Stub(class_name, _host(lambda: _objects.id_from_name(class_name, name)))

    def by_id(self, class_name: str, id: str) -> Stub:
        return Stub(class_name, _host(lambda: _objects.id_from_string(class_name, id)))

    def new_unique_id(self, class_name: str) -> str:
        return _host(lambda: _objects.new_unique_id(class_name))


context = _Context()
objects = _Objects()
