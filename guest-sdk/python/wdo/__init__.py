"""wdo for Python: durable objects as WebAssembly components, built with componentize-py.

    from wdo import DurableObject, Response, serve, storage

    class Counter(DurableObject):
        def fetch(self, request):
            value = storage.get("value", 0) + 1
            storage.put("value", value)
            return Response.text(str(value))

    Handler = serve(Counter)

A thin layer over the imports of the WIT world ``wdo:object/durable-object`` (componentize-py
generates the typed ``wit_world`` package from the WIT at build time). Values in key-value
storage are JSON, as with the Rust SDK, so either language reads the other's data. Raise
``HttpError`` to answer with a status (the event's writes stay, as with any response); any other
exception traps: the event is rolled back and the caller gets a 500 with the traceback's last
line.
"""

# The names come from the submodules on first use (PEP 562), so a worker, whose world lacks
# storage and SQL, can import `wdo.worker` without `wdo.object` being imported.
_SOURCES = {
    "HttpError": "http", "WdoError": "http", "Request": "http", "Response": "http",
    "Stub": "calls", "context": "calls", "objects": "calls", "env": "calls",
    "fetch": "outbound", "FetchResponse": "outbound",
    "DurableObject": "object", "serve": "object", "storage": "object", "sql": "object",
    "alarms": "object", "websockets": "object", "QueryResult": "object", "WarmUp": "object",
}

__all__ = sorted(_SOURCES)


def __getattr__(name):
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'wdo' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"wdo.{source}"), name)
