"""wdo, part 1 of 3: HTTP requests and answers, and errors. Uses no host import but `types`,
which both worlds (`durable-object` and `worker`) have."""

import gc
import json
import sys
import traceback
from typing import Any, Callable, List, Optional
from urllib.parse import parse_qs

from componentize_py_types import Err
from ._bindings import wdo_types as _types

_KINDS = {
    _types.Error_InvalidArgument: "invalid-argument",
    _types.Error_LimitExceeded: "limit-exceeded",
    _types.Error_NotAllowed: "not-allowed",
    _types.Error_Storage: "storage",
    _types.Error_Unsupported: "unsupported",
}


class HttpError(Exception):
    """An error that becomes an HTTP response with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class WdoError(HttpError):
    """What a host import refused; ``kind`` is invalid-argument, limit-exceeded, not-allowed,
    storage or unsupported."""

    def __init__(self, kind: str, message: str):
        super().__init__(400 if kind == "invalid-argument" else 500, f"{kind}: {message}")
        self.kind = kind


def _host(call: Callable[[], Any]) -> Any:
    """Calls a host import, turning its error variant into a ``WdoError``."""
    try:
        return call()
    except Err as e:
        kind = _KINDS.get(type(e.value))
        if kind is None:
            raise
        raise WdoError(kind, e.value.value) from None


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class Request:
    def __init__(self, raw: _types.Request):
        self.method: str = raw.method
        self.path: str = raw.path
        self.query: str = raw.query
        self.headers: List = raw.headers
        self.body: bytes = raw.body

    def header(self, name: str) -> Optional[str]:
        """The first value of a header (names are lower-case)."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    @property
    def params(self) -> Dict[str, str]:
        """Query parameters (the first value of each)."""
        return {key: values[0] for key, values in parse_qs(self.query, keep_blank_values=True).items()}

    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise HttpError(400, f"the body is not JSON: {e}") from None


class Response:
    def __init__(self, body: Any = b"", status: int = 200, headers: Optional[List] = None):
        self.status = status
        self.headers = headers or []
        self.body = body.encode() if isinstance(body, str) else bytes(body)

    @staticmethod
    def text(text: str, status: int = 200) -> "Response":
        return Response(text, status, [("content-type", "text/plain; charset=utf-8")])

    @staticmethod
    def json(value: Any, status: int = 200) -> "Response":
        return Response(_dump(value), status, [("content-type", "application/json")])

    @staticmethod
    def not_found() -> "Response":
        return Response.text("not found\n", 404)

    @staticmethod
    def upgraded() -> "Response":
        """The answer to an accepted WebSocket upgrade (the host sends 101)."""
        return Response(b"", 101)

    def _to_wit(self) -> _types.Response:
        return _types.Response(status=self.status, headers=self.headers, body=self.body)


def _run_request_path() -> None:
    """Runs the SDK's request path with no object and no host import: a JSON request in, JSON
    and text responses out, the way an event uses them."""
    probe = _types.Request(method="GET", path="/", query="", headers=[], body=b'{"value":1}')
    _answer(lambda request: Response.json(json.loads(_dump(request.json()))), probe)
    _answer(lambda request: Response.text(request.path), probe)


def _ready_snapshot() -> None:
    """Readies the snapshot that every instance starts from.

    `serve` runs while componentize-py takes the component's snapshot. The first runs of a
    Python function rewrite its bytecode (CPython specialises it), and a collection walks every
    object: done in each instance's first event, both write to (and so copy) pages all over the
    image. So the request path runs a few times here, and the objects made so far are frozen
    out of the collector's sight, as a forking server does before it forks.
    """
    for _ in range(8):
        _run_request_path()
    gc.collect()
    gc.freeze()


def _trap(error: BaseException):
    # Say what happened on stderr, then trap: the traceback goes to the host's log, its last line
    # (`Type: message`) to the caller's 500.
    traceback.print_exception(error, file=sys.stderr)
    raise error


def _answer(fetch: Callable[[Request], Any], raw: _types.Request) -> _types.Response:
    """Runs a fetch handler: an ``HttpError`` answers with its status, anything else traps."""
    try:
        response = fetch(Request(raw))
    except HttpError as e:
        return Response.text(f"{e.message}\n", e.status)._to_wit()
    except Exception as e:
        _trap(e)
    if not isinstance(response, Response):
        response = Response.text("" if response is None else str(response))
    return response._to_wit()
