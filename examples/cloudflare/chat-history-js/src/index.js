import { DurableObject } from "cloudflare:workers";

// One Channel per name; its messages are rows of its own SQLite database.
export class Channel extends DurableObject {
  constructor(ctx, env) {
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

  async post(author, text) {
    if (text.length > this.env.MAX_MESSAGE) {
      throw new Error(`a message holds at most ${this.env.MAX_MESSAGE} characters`);
    }
    return this.ctx.storage.sql
      .exec("INSERT INTO messages (author, text, sent_at) VALUES (?, ?, ?) RETURNING *", author, text, Date.now())
      .one();
  }

  async history(limit, before) {
    const rows = this.ctx.storage.sql.exec(
      "SELECT * FROM messages WHERE id < ? ORDER BY id DESC LIMIT ?",
      before ?? Number.MAX_SAFE_INTEGER,
      limit,
    );
    return rows.toArray().reverse();
  }

  async stats() {
    const sql = this.ctx.storage.sql;
    const { n } = sql.exec("SELECT count(*) AS n FROM messages").one();
    const authors = sql.exec("SELECT author, count(*) AS count FROM messages GROUP BY author ORDER BY count DESC, author").toArray();
    return { messages: n, authors, bytes: sql.databaseSize };
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const match = url.pathname.match(/^\/channels\/([^/]+)\/(messages|stats)$/);
    if (!match) return new Response("Try GET or POST /channels/<name>/messages, GET /channels/<name>/stats\n", { status: 404 });
    const channel = env.CHANNELS.getByName(decodeURIComponent(match[1]));
    if (match[2] === "stats") return Response.json(await channel.stats());
    if (request.method === "POST") {
      const { author, text } = await request.json();
      if (typeof author !== "string" || typeof text !== "string") {
        return Response.json({ error: "send {\"author\": ..., \"text\": ...}" }, { status: 400 });
      }
      try {
        return Response.json(await channel.post(author, text), { status: 201 });
      } catch (e) {
        return Response.json({ error: e.message }, { status: 400 });
      }
    }
    const limit = Math.min(Number(url.searchParams.get("limit") ?? 50), 200);
    const before = url.searchParams.has("before") ? Number(url.searchParams.get("before")) : undefined;
    return Response.json(await channel.history(limit, before));
  },
};
