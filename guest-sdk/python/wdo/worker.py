"""wdo for a worker (world ``wdo:object/worker``): a stateless front component that receives every
HTTP request and reaches objects through ``objects``. It imports only what that world has.

    from wdo.worker import HttpError, objects, serve_worker

    def fetch(request):
        name = request.params.get("name") or ""
        return objects.get("counter", name).fetch("POST", "/increment")

    WorkerHandler = serve_worker(fetch)

Build with ``componentize-py -d wit -w http-worker componentize app -o worker.wasm`` (the
world ``http-worker`` is ``worker`` with the bindings ``fetch`` needs; plain ``worker`` works too,
without ``fetch``). ``env`` reads the worker's vars and secrets (``wdo secret put '[worker]' KEY``).
"""

from typing import Callable

from wit_world import exports
from ._bindings import wdo_types as _types

from .http import HttpError, Request, Response, WdoError, _answer, _ready_snapshot
from .calls import Stub, context, env, objects

__all__ = ["HttpError", "WdoError", "Request", "Response", "Stub", "context", "env", "objects", "serve_worker"]


def serve_worker(fetch: Callable[[Request], Response]) -> type:
    """The ``WorkerHandler`` export: ``fetch(request)`` answers each request (a fresh instance each, or
    one after another with ``reuse_instances = true`` in the manifest's ``[worker]``)."""

    class WorkerHandler(exports.WorkerHandler):
        def fetch(self, request: _types.Request) -> _types.Response:
            return _answer(fetch, request)

    _ready_snapshot()
    return WorkerHandler
