"""What the Python SDK promises, route by route (the JavaScript probe has the same routes):
errors, context, alarms, SQL, key-value listing and calls between objects."""

from wdo import DurableObject, HttpError, Response, WarmUp, alarms, context, env, fetch, objects, serve, sql, storage, websockets


class Probe(DurableObject):
    def websocket_message(self, socket, message):
        if "upstream" in websockets.tags(socket):
            storage.put("upstream", storage.get("upstream", []) + [{"text": str(message)}])

    def fetch(self, request):
        route = (request.method, request.path)
        if route == ("GET", "/env"):
            value = env.get(request.params.get("key", ""))
            return Response.not_found() if value is None else Response.text(value)
        if route == ("POST", "/ws-connect"):
            return Response.text(str(websockets.connect(request.text(), protocols=["feed"], tags=["upstream"])))
        if route == ("GET", "/ws-upstream"):
            return Response.json(storage.get("upstream", []))
        if route == ("POST", "/fetch"):
            ask = request.json()
            if ask.get("write"):
                storage.put(ask["write"], "written before the request")
            try:
                answer = fetch(ask["url"], method=ask.get("method", "GET"), headers=ask.get("headers", []),
                               body=ask.get("body"))
            except HttpError as e:
                return Response.text(f"{e.message}\n", 502)
            return Response.json({"status": answer.status, "body": answer.text(), "upstream": answer.header("x-upstream")})
        if route == ("GET", "/whoami"):
            who = {"name": context.name(), "class": context.class_name(), "id": context.id()}
            return Response.json({**who, "warm_ups": WarmUp.runs})
        if route == ("POST", "/write-then-throw"):
            storage.put("written", True)
            raise RuntimeError("thrown on purpose")
        if route == ("POST", "/write-then-http-error"):
            storage.put("written", True)
            raise HttpError(418, "teapot")
        # Bookmarks (the same routes in the Rust and JavaScript probes).
        if route == ("POST", "/bookmark/write"):
            storage.put("mark", request.text())
            return Response.text("ok")
        if route == ("GET", "/bookmark/read"):
            return Response.text(storage.get("mark", ""))
        if route == ("GET", "/bookmark/now"):
            return Response.text(storage.current_bookmark())
        if route == ("GET", "/bookmark/at"):
            return Response.text(storage.bookmark_for_time(int(request.params.get("ms", "0"))))
        if route == ("POST", "/bookmark/restore"):
            return Response.text(storage.restore_on_next_session(request.text()))
        if route == ("POST", "/bookmark/restore-abort"):
            storage.restore_on_next_session(request.text())
            raise RuntimeError("aborting to start the next session now")
        if route == ("GET", "/written"):
            return Response.json(storage.get("written", False))
        if route == ("GET", "/bad-sql"):
            sql.exec("SELEKT 1")
            return Response.text("unreachable")
        if route == ("POST", "/sql"):
            sql.migrate(["CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB)"])
            sql.run("INSERT INTO t (name, score, data) VALUES (?, ?, ?)", "ada", 1.5, b"\x01\x02")
            row = sql.one("SELECT id, name, score, length(data) AS size FROM t ORDER BY id DESC LIMIT 1")
            bulk = sql.exec_many("INSERT INTO t (name) VALUES (?)", [["b"], ["c"], ["d"]])
            row.update(bulk=bulk.rows_written, count=sql.one("SELECT count(*) AS n FROM t")["n"])
            return Response.json(row)
        if route == ("POST", "/list"):
            storage.put_many({"k:1": 1, "k:2": 2, "other": 3})
            return Response.json(storage.list(prefix="k:"))
        if route == ("POST", "/alarm"):
            alarms.set(context.now_ms() + 50)
            return Response.text("armed")
        if route == ("GET", "/fired"):
            return Response.json(storage.get("fired", 0))
        if route == ("POST", "/call"):
            return Response.json(objects.get(context.class_name(), "callee").call("add", request.json()))
        if route == ("POST", "/call-errors"):
            # How failed calls reach the caller: a re-entrant call and fetch (a bad call), and a
            # method the callee does not have (its own failure).
            def outcome(f):
                try:
                    f()
                    return None
                except HttpError as e:
                    fields = ("from_callee", "retryable", "overloaded")
                    return {"status": e.status, **{name: getattr(e, name, None) for name in fields}}

            me = objects.get(context.class_name(), context.name())
            callee = objects.get(context.class_name(), "callee")
            return Response.json({
                "reentrant_call": outcome(lambda: me.call("add", {"a": 1, "b": 2})),
                "reentrant_fetch": outcome(lambda: me.fetch(path="/fired")),
                "callee_failed": outcome(lambda: callee.call("no-such-method")),
            })
        return Response.not_found()

    def alarm(self, retry_count, is_retry):
        storage.put("fired", storage.get("fired", 0) + 1)

    def add(self, args):
        return {"sum": args["a"] + args["b"], "by": context.name()}


# The exports: `Handler`, the object, and `WarmUp` (imported above), which lets the host warm
# up the instances it keeps ready (world `warmable-durable-object`).
Handler = serve(Probe)
