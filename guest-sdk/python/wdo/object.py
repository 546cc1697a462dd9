"""wdo, part 3 of 3: durable objects (the world `durable-object`): storage, SQL, alarms,
WebSockets and the handler export. ``wdo`` re-exports all of it."""

import json
from contextlib import contextmanager
from typing import Any, Dict, Iterable, List, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import alarms as _alarms
from wit_world.imports import sql as _sql
from wit_world.imports import storage as _kv
from wit_world.imports import transaction as _tx
from ._bindings import wdo_types as _types
from wit_world.imports import websockets as _ws

from .http import HttpError, Request, Response, WdoError, _answer, _dump, _ready_snapshot, _run_request_path, _host, _trap
from .calls import Stub, context, objects

__all__ = [
    "DurableObject", "HttpError", "WdoError", "Request", "Response", "serve",
    "storage", "sql", "alarms", "websockets", "context", "objects", "Stub", "WarmUp",
]

class _Storage:
    """Key-value storage; values are stored as JSON."""

    def get(self, key: str, default: Any = None) -> Any:
        raw = _host(lambda: _kv.get(key))
        return default if raw is None else json.loads(raw)

    def put(self, key: str, value: Any) -> None:
        _host(lambda: _kv.put(key, _dump(value)))

    def delete(self, key: str) -> bool:
        """True when the key existed."""
        return _host(lambda: _kv.delete(key))

    def get_many(self, keys: List[str]) -> Dict[str, Any]:
        return {key: json.loads(raw) for key, raw in _host(lambda: _kv.get_many(keys))}

    def put_many(self, entries: Dict[str, Any]) -> None:
        _host(lambda: _kv.put_many([(key, _dump(value)) for key, value in entries.items()]))

    def delete_many(self, keys: List[str]) -> int:
        return _host(lambda: _kv.delete_many(keys))

    def list(self, prefix=None, start=None, start_after=None, end=None, reverse=False, limit=None) -> Dict[str, Any]:
        options = _kv.ListOptions(prefix=prefix, start=start, start_after=start_after, end=end, reverse=reverse, limit=limit)
        return {key: json.loads(raw) for key, raw in _host(lambda: _kv.list_entries(options))}

    def delete_all(self) -> None:
        """Empties the object: every key, every SQL table, view and trigger, and its alarm."""
        _host(_kv.delete_all)

    def current_bookmark(self) -> str:
        """A bookmark for the object's state now (needs the host's backup store, `--backup`)."""
        return _host(_kv.current_bookmark)

    def bookmark_for_time(self, ms: int) -> str:
        """A bookmark for the object's state at `ms` (milliseconds since the epoch)."""
        return _host(lambda: _kv.bookmark_for_time(int(ms)))

    def restore_on_next_session(self, bookmark: str) -> str:
        """At its next session the object comes back as it was at `bookmark`; returns the undo bookmark."""
        return _host(lambda: _kv.restore_on_next_session(bookmark))


def _to_sql(value: Any) -> _sql.Value:
    if value is None:
        return _sql.Value_Null()
    if isinstance(value, bool):
        return _sql.Value_Integer(int(value))
    if isinstance(value, int):
        return _sql.Value_Integer(value)
    if isinstance(value, float):
        return _sql.Value_Real(value)
    if isinstance(value, str):
        return _sql.Value_Text(value)
    if isinstance(value, (bytes, bytearray)):
        return _sql.Value_Blob(bytes(value))
    raise HttpError(500, f"cannot bind {type(value).__name__} to SQL (use None, int, float, str or bytes)")


def _from_sql(value: _sql.Value) -> Any:
    return None if isinstance(value, _sql.Value_Null) else value.value


class QueryResult:
    def __init__(self, raw: _sql.QueryResult):
        self.columns: List[str] = raw.columns
        self.rows: List[List[Any]] = [[_from_sql(v) for v in row] for row in raw.rows]
        self.rows_read: int = raw.rows_read
        self.rows_written: int = raw.rows_written

    def dicts(self) -> List[Dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


class _Sql:
    """The object's SQLite database. Parameters bind to ``?`` in order."""

    def exec(self, query: str, *params: Any) -> QueryResult:
        values = [_to_sql(p) for p in params]
        return QueryResult(_host(lambda: _sql.exec(query, values)))

    def exec_many(self, query: str, rows: Iterable[Iterable[Any]]) -> QueryResult:
        """Runs one statement once per entry of ``rows`` (parameter sequences), all or nothing."""
        values = [[_to_sql(p) for p in row] for row in rows]
        return QueryResult(_host(lambda: _sql.exec_many(query, values)))

    def query(self, query: str, *params: Any) -> List[Dict[str, Any]]:
        """Rows as dicts keyed by column name."""
        return self.exec(query, *params).dicts()

    def one(self, query: str, *params: Any) -> Optional[Dict[str, Any]]:
        rows = self.query(query, *params)
        return rows[0] if rows else None

    def run(self, query: str, *params: Any) -> int:
        """Runs statements for their effect; returns the rows written. Cheaper than ``exec``: no rows come back."""
        values = [_to_sql(p) for p in params]
        return _host(lambda: _sql.execute(query, values)).rows_written

    @contextmanager
    def transaction(self):
        """``with sql.transaction():`` a savepoint, kept if the block ends, undone if it raises."""
        savepoint = _host(_tx.savepoint)
        try:
            yield
        except BaseException:
            _host(lambda: _tx.rollback(savepoint))
            raise
        _host(lambda: _tx.release(savepoint))

    def migrate(self, migrations: List[str]) -> int:
        """Runs the migrations the database has not seen (by ``PRAGMA user_version``), all or nothing."""
        current = self.one("PRAGMA user_version")["user_version"]
        if current >= len(migrations):
            return 0
        with self.transaction():
            for migration in migrations[current:]:
                self.exec(migration)
            self.exec(f"PRAGMA user_version = {len(migrations)}")
        return len(migrations) - current

    def database_size(self) -> int:
        return _host(_sql.database_size)


class _Alarms:
    """The object's one alarm, in milliseconds since the Unix epoch."""

    def get(self) -> Optional[int]:
        return _host(_alarms.get)

    def set(self, at_ms: int) -> None:
        _host(lambda: _alarms.set(int(at_ms)))

    def delete(self) -> None:
        _host(_alarms.delete)


def _to_message(message: Any) -> _ws.Message:
    return _ws.Message_Text(message) if isinstance(message, str) else _ws.Message_Binary(bytes(message))


class _WebSockets:
    """WebSockets held by the host. Sends leave when the event commits."""

    def is_upgrade(self, request: Request) -> bool:
        return (request.header("upgrade") or "").lower() == "websocket"

    def accept(self, request: Request, tags: Iterable[str] = (), attachment: Any = None) -> int:
        """Accepts the upgrade of ``request`` (answer with ``Response.upgraded()``); 426 if it is none."""
        if not self.is_upgrade(request):
            raise HttpError(426, "this route expects a WebSocket upgrade (send `Upgrade: websocket`)")
        raw = None if attachment is None else _dump(attachment)
        return _host(lambda: _ws.accept(list(tags), raw))

    def connect(self, url: str, protocols: Iterable[str] = (), tags: Iterable[str] = (), attachment: Any = None) -> int:
        """Opens a WebSocket to ``url`` (ws:// or wss://) as this object's client: the host keeps
        it across hibernation, and what the remote end sends arrives in ``websocket_message`` with
        the returned id. Only hosts the class's ``outbound`` list allows; a refusal or failure
        raises ``HttpError(502, reason)``. It joins the object when the event commits."""
        raw = None if attachment is None else _dump(attachment)
        try:
            return _ws.connect(url, list(protocols), list(tags), raw)
        except Err as e:
            raise HttpError(502, str(e.value))

    def sockets(self, tag: Optional[str] = None) -> List[int]:
        return _host(lambda: _ws.get_websockets(tag))

    def send(self, socket: int, message: Any) -> None:
        _host(lambda: _ws.send(socket, _to_message(message)))

    def broadcast(self, message: Any, tag: Optional[str] = None) -> None:
        """Sends to every open socket (with ``tag``, if given)."""
        for socket in self.sockets(tag):
            self.send(socket, message)

    def close(self, socket: int, code: int = 1000, reason: str = "") -> None:
        _host(lambda: _ws.close(socket, code, reason))

    def tags(self, socket: int) -> List[str]:
        return _host(lambda: _ws.get_tags(socket))

    def attachment(self, socket: int) -> Any:
        raw = _host(lambda: _ws.get_attachment(socket))
        return None if raw is None else json.loads(raw)

    def set_attachment(self, socket: int, value: Any) -> None:
        _host(lambda: _ws.set_attachment(socket, None if value is None else _dump(value)))

    def set_auto_response(self, request: Optional[str], response: str = "") -> None:
        """The host answers ``request`` with ``response`` without waking the object; None clears it."""
        _host(lambda: _ws.set_auto_response(None if request is None else (request, response)))


storage = _Storage()
sql = _Sql()
alarms = _Alarms()
websockets = _WebSockets()


class DurableObject:
    """Subclass it and override what the object handles; the rest answers as the Rust SDK does."""

    def fetch(self, request: Request) -> Response:
        return Response.not_found()

    def alarm(self, retry_count: int, is_retry: bool) -> None:
        pass

    def websocket_message(self, socket: int, message: Any) -> None:
        pass

    def websocket_close(self, socket: int, code: int, reason: str, was_clean: bool) -> None:
        pass

    def websocket_error(self, socket: int, error: str) -> None:
        pass


class WarmUp(getattr(exports, "WarmUp", object)):
    """The optional ``warm-up`` export (world ``warmable-durable-object``). The host calls it on
    each fresh instance it keeps ready, before an object adopts it: the SDK's request path runs
    once (no object code, no host import), so the object's first event finds the memory that
    path writes already copied instead of copying it page by page. Export it from the app with
    ``from wdo import WarmUp``."""

    #: How many times this instance was warmed up: 1 in a spare the host warmed, else 0.
    runs = 0

    def warm_up(self) -> None:
        WarmUp.runs += 1
        _run_request_path()


_HANDLERS = {"fetch", "alarm", "websocket_message", "websocket_close", "websocket_error"}


def serve(object_class: type) -> type:
    """The ``Handler`` export for a class: one instance of it per object, made on the first event."""
    instance: List[Any] = []

    def the_object():
        if not instance:
            instance.append(object_class())
        return instance[0]

    class Handler(exports.Handler):
        def fetch(self, request: _types.Request) -> _types.Response:
            return _answer(the_object().fetch, request)

        def call(self, method: str, args: bytes) -> bytes:
            target = the_object()
            function = getattr(target, method, None)
            if method in _HANDLERS or method.startswith("_") or not callable(function):
                raise Err(f"no method `{method}`")
            try:
                result = function(json.loads(args) if args else None)
            except Exception as e:
                raise Err(str(e)) from None
            return b"" if result is None else _dump(result)

        def alarm(self, info) -> None:
            try:
                the_object().alarm(info.retry_count, info.is_retry)
            except Exception as e:
                raise Err(str(e)) from None

        def websocket_message(self, socket: int, message) -> None:
            try:
                the_object().websocket_message(socket, message.value)
            except Exception as e:
                _trap(e)

        def websocket_close(self, socket: int, code: int, reason: str, was_clean: bool) -> None:
            try:
                the_object().websocket_close(socket, code, reason, was_clean)
            except Exception as e:
                _trap(e)

        def websocket_error(self, socket: int, error: str) -> None:
            try:
                the_object().websocket_error(socket, error)
            except Exception as e:
                _trap(e)

    _ready_snapshot()
    return Handler
