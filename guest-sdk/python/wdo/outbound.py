"""Outbound HTTP over the standard ``wasi:http/outgoing-handler``: the host sends the request if
the class's ``outbound`` list in ``wdo.toml`` allows its host, after the event's writes so far
are committed (the output gate).

    from wdo import fetch
    answer = fetch("https://status.example.com/api", headers={"accept": "application/json"})
    status = answer.json()
"""

import json
from typing import Any, Dict, List, Optional, Tuple, Union
from urllib.parse import urljoin, urlsplit

from componentize_py_types import Err
from wit_world.imports import outgoing_handler
from wit_world.imports import streams
from wit_world.imports import wasi_http_types as h

from .http import HttpError

_METHODS = {
    "GET": h.Method_Get, "HEAD": h.Method_Head, "POST": h.Method_Post, "PUT": h.Method_Put,
    "DELETE": h.Method_Delete, "PATCH": h.Method_Patch, "OPTIONS": h.Method_Options,
}
_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_REDIRECTS = 5


class FetchResponse:
    """What the remote side answered: ``status``, ``headers`` (lower-case names) and ``body``."""

    def __init__(self, status: int, headers: List[Tuple[str, str]], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> Optional[str]:
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


def fetch(
    url: str,
    method: str = "GET",
    headers: Union[Dict[str, str], List[Tuple[str, str]], None] = None,
    body: Union[bytes, str, None] = None,
    follow_redirects: bool = True,
) -> FetchResponse:
    """Sends a request and reads the whole answer, following up to five redirects (each hop is a
    new request the host checks like the first). A refusal, a timeout or a network failure
    raises ``HttpError(502, reason)``, the reason in the host's words."""
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    data = body.encode() if isinstance(body, str) else (body or b"")
    method = method.upper()
    for _ in range(_MAX_REDIRECTS + 1):
        answer = _send(method, url, pairs, data)
        location = answer.header("location")
        if not (follow_redirects and answer.status in _REDIRECTS and location):
            return answer
        url = urljoin(url, location)
        if answer.status == 303 or (answer.status in (301, 302) and method == "POST"):
            method, data = "GET", b""
            pairs = [(k, v) for k, v in pairs if k.lower() != "content-type"]
    raise HttpError(502, f"more than {_MAX_REDIRECTS} redirects, the last to {url}")


def _failed(url: str, code: Any) -> HttpError:
    if isinstance(code, h.ErrorCode_InternalError) and code.value:
        return HttpError(502, code.value)
    if isinstance(code, h.ErrorCode_HttpResponseBodySize):
        return HttpError(502, f"the response of {url} is larger than the host allows ({code.value} bytes)")
    if isinstance(code, h.ErrorCode_ConnectionReadTimeout):
        return HttpError(502, f"{url} did not answer in time (the event's deadline)")
    return HttpError(502, f"request to {url} failed: {type(code).__name__.removeprefix('ErrorCode_')}")


def _send(method: str, url: str, headers: List[Tuple[str, str]], body: bytes) -> FetchResponse:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HttpError(400, f"`{url}` is not an http:// or https:// URL")
    fields = h.Fields.from_list([(k.lower(), v.encode()) for k, v in headers])
    request = h.OutgoingRequest(fields)
    request.set_method(_METHODS[method]() if method in _METHODS else h.Method_Other(method))
    request.set_scheme(h.Scheme_Https() if parts.scheme == "https" else h.Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    outgoing = request.body()
    try:
        pending = outgoing_handler.handle(request, None)
    except Err as e:
        raise _failed(url, e.value)
    stream = outgoing.write()
    for start in range(0, len(body), 4096):
        stream.blocking_write_and_flush(body[start:start + 4096])
    stream.__exit__(None, None, None)
    h.OutgoingBody.finish(outgoing, None)
    pending.subscribe().block()
    result = pending.get()
    if result is None or isinstance(result, Err) or isinstance(result.value, Err):
        code = result.value.value if result is not None and isinstance(result.value, Err) else None
        raise _failed(url, code) if code is not None else HttpError(502, f"request to {url} got no answer")
    response = result.value.value
    status = response.status()
    answer_headers = [(k, v.decode("utf-8", errors="replace")) for k, v in response.headers().entries()]
    incoming = response.consume()
    reader = incoming.stream()
    chunks = []
    while True:
        try:
            chunks.append(reader.blocking_read(64 << 10))
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                break
            code = h.http_error_code(e.value.value)
            raise _failed(url, code) if code is not None else HttpError(502, f"reading the answer of {url} failed")
    reader.__exit__(None, None, None)
    trailers = h.IncomingBody.finish(incoming)
    trailers.subscribe().block()
    done = trailers.get()
    if done is not None and not isinstance(done, Err) and isinstance(done.value, Err):
        raise _failed(url, done.value.value)
    return FetchResponse(status, answer_headers, b"".join(chunks))
