import { DurableObject } from "cloudflare:workers";

// The first message a client sends is its name; after that each message goes to everyone as
// {"name", "message", "at"}. Late joiners get the last 20 messages (kept in storage).
export class ChatRoom extends DurableObject {
  sessions = [];

  async fetch(request) {
    if (request.headers.get("Upgrade") !== "websocket") {
      return new Response("Expected a WebSocket upgrade", { status: 426 });
    }
    const pair = new WebSocketPair();
    await this.handleSession(pair[1]);
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  async handleSession(socket) {
    socket.accept();
    const session = { socket };
    this.sessions.push(session);
    const backlog = await this.ctx.storage.list({ prefix: "msg:", reverse: true, limit: 20 });
    for (const text of [...backlog.values()].reverse()) socket.send(text);

    socket.addEventListener("message", async (event) => {
      const data = String(event.data);
      if (!session.name) {
        session.name = data.slice(0, 32);
        this.broadcast(JSON.stringify({ joined: session.name }));
        return;
      }
      const text = JSON.stringify({ name: session.name, message: data, at: Date.now() });
      const key = `msg:${new Date().toISOString()}:${crypto.randomUUID()}`;
      await this.ctx.storage.put(key, text);
      this.broadcast(text);
    });
    const leave = () => {
      this.sessions = this.sessions.filter((s) => s !== session);
      if (session.name) this.broadcast(JSON.stringify({ quit: session.name }));
    };
    socket.addEventListener("close", leave);
    socket.addEventListener("error", leave);
  }

  broadcast(text) {
    for (const session of this.sessions) {
      if (!session.name) continue;
      try {
        session.socket.send(text);
      } catch {
        this.sessions = this.sessions.filter((s) => s !== session);
      }
    }
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const match = url.pathname.match(/^\/chat\/([^/]+)$/);
    if (!match) return new Response("Connect a WebSocket to /chat/<room>\n", { status: 404 });
    return env.CHAT.getByName(decodeURIComponent(match[1])).fetch(request);
  },
};
