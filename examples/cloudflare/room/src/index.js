import { DurableObject } from "cloudflare:workers";

// One Room per name. Clients connect to /rooms/<name>/websocket?user=<user>; every message a
// client sends reaches everyone in the room as "<user>: <message>". "ping" is answered
// "pong" by the runtime itself, without waking the object.
export class Room extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    // Who is connected survives hibernation in each socket's attachment.
    this.sessions = new Map();
    for (const ws of this.ctx.getWebSockets()) {
      this.sessions.set(ws, ws.deserializeAttachment());
    }
    this.ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
  }

  async fetch(request) {
    if (request.headers.get("Upgrade") !== "websocket") {
      return new Response("Expected a WebSocket upgrade", { status: 426 });
    }
    const user = new URL(request.url).searchParams.get("user") || "anonymous";
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server);
    const session = { user, joined: Date.now() };
    server.serializeAttachment(session);
    this.sessions.set(server, session);
    this.broadcast(`* ${user} joined (${this.sessions.size} here)`);
    return new Response(null, { status: 101, webSocket: client });
  }

  async webSocketMessage(ws, message) {
    const { user } = this.sessions.get(ws) ?? ws.deserializeAttachment();
    if (message === "/who") {
      const users = [...this.sessions.values()].map((s) => s.user).sort();
      ws.send(`* here: ${users.join(", ")}`);
      return;
    }
    this.broadcast(`${user}: ${message}`);
  }

  async webSocketClose(ws, code, reason, wasClean) {
    const session = this.sessions.get(ws);
    this.sessions.delete(ws);
    if (session) this.broadcast(`* ${session.user} left`);
  }

  broadcast(text) {
    for (const ws of this.sessions.keys()) {
      try {
        ws.send(text);
      } catch {
        this.sessions.delete(ws);
      }
    }
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const match = url.pathname.match(/^\/rooms\/([^/]+)\/websocket$/);
    if (!match) {
      return new Response("Connect a WebSocket to /rooms/<name>/websocket?user=<you>\n", { status: 404 });
    }
    return env.ROOMS.getByName(decodeURIComponent(match[1])).fetch(request);
  },
};
