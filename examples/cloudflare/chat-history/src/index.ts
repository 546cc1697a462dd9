import { DurableObject } from "cloudflare:workers";

interface Env {
  CHANNELS: DurableObjectNamespace<Channel>;
  MAX_MESSAGE: number;
}

type Message = { id: number; author: string; text: string; sent_at: number };

// One Channel per name; its messages are rows of its own SQLite database.
export class Channel extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec(`
      CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        author TEXT NOT NULL,
        text TEXT NOT NULL,
        sent_at INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS messages_by_author ON messages (author);
    `);
  }

  async post(author: string, text: string): Promise<Message> {
    if (text.length > this.env.MAX_MESSAGE) {
      throw new Error(`a message holds at most ${this.env.MAX_MESSAGE} characters`);
    }
    return this.ctx.storage.sql
      .exec<Message>("INSERT INTO messages (author, text, sent_at) VALUES (?, ?, ?) RETURNING *", author, text, Date.now())
      .one();
  }

  async history(limit: number, before?: number): Promise<Message[]> {
    const rows = this.ctx.storage.sql.exec<Message>(
      "SELECT * FROM messages WHERE id < ? ORDER BY id DESC LIMIT ?",
      before ?? Number.MAX_SAFE_INTEGER,
      limit,
    );
    return rows.toArray().reverse();
  }

  async stats(): Promise<{ messages: number; authors: { author: string; count: number }[]; bytes: number }> {
    const sql = this.ctx.storage.sql;
    const { n } = sql.exec<{ n: number }>("SELECT count(*) AS n FROM messages").one();
    const authors = sql
      .exec<{ author: string; count: number }>("SELECT author, count(*) AS count FROM messages GROUP BY author ORDER BY count DESC, author")
      .toArray();
    return { messages: n, authors, bytes: sql.databaseSize };
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const match = url.pathname.match(/^\/channels\/([^/]+)\/(messages|stats)$/);
    if (!match) return new Response("Try GET or POST /channels/<name>/messages, GET /channels/<name>/stats\n", { status: 404 });
    const channel = env.CHANNELS.getByName(decodeURIComponent(match[1]));
    if (match[2] === "stats") return Response.json(await channel.stats());
    if (request.method === "POST") {
      const { author, text } = await request.json<{ author: string; text: string }>();
      if (typeof author !== "string" || typeof text !== "string") {
        return Response.json({ error: "send {\"author\": ..., \"text\": ...}" }, { status: 400 });
      }
      try {
        return Response.json(await channel.post(author, text), { status: 201 });
      } catch (e) {
        return Response.json({ error: (e as Error).message }, { status: 400 });
      }
    }
    const limit = Math.min(Number(url.searchParams.get("limit") ?? 50), 200);
    const before = url.searchParams.has("before") ? Number(url.searchParams.get("before")) : undefined;
    return Response.json(await channel.history(limit, before));
  },
} satisfies ExportedHandler<Env>;
