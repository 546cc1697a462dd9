import { DurableObject } from "cloudflare:workers";

interface Env {
  ROOMS: DurableObjectNamespace<Room>;
}

interface Session {
  user: string;
  joined: number;
}

// One Room per name. Clients connect to /rooms/<name>/websocket?user=<user>; every message a
// client sends reaches everyone in the room as "<user>: <message>". "ping" is answered
// "pong" by the runtime itself, without waking the object.
export class Room extends DurableObject<Env> {
  private sessions = new Map<WebSocket, Session>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    // Who is connected survives hibernation in each socket's attachment.
    for (const ws of this.ctx.getWebSockets()) {
      this.sessions.set(ws, ws.deserializeAttachment() as Session);
    }
    this.ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
  }

  async fetch(request: Request): Promise<Response> {
    if (request.headers.get("Upgrade") !== "websocket") {
      return new Response("Expected a WebSocket upgrade", { status: 426 });
    }
    const user = new URL(request.url).searchParams.get("user") || "anonymous";
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server);
    const session: Session = { user, joined: Date.now() };
    server.serializeAttachment(session);
    this.sessions.set(server, session);
    this.broadcast(`* ${user} joined (${this.sessions.size} here)`);
    return new Response(null, { status: 101, webSocket: client });
  }

  async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const { user } = this.sessions.get(ws) ?? (ws.deserializeAttachment() as Session);
    if (message === "/who") {
      const users = [...this.sessions.values()].map((s) => s.user).sort();
      ws.send(`* here: ${users.join(", ")}`);
      return;
    }
    this.broadcast(`${user}: ${message}`);
  }

  async webSocketClose(ws: WebSocket, _code: number, _reason: string, _wasClean: boolean): Promise<void> {
    const session = this.sessions.get(ws);
    this.sessions.delete(ws);
    if (session) this.broadcast(`* ${session.user} left`);
  }

  private broadcast(text: string): void {
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
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const match = url.pathname.match(/^\/rooms\/([^/]+)\/websocket$/);
    if (!match) {
      return new Response("Connect a WebSocket to /rooms/<name>/websocket?user=<you>\n", { status: 404 });
    }
    return env.ROOMS.getByName(decodeURIComponent(match[1])).fetch(request);
  },
} satisfies ExportedHandler<Env>;
