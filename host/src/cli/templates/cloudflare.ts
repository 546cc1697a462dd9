// A Durable Object in Cloudflare's style: one counter per object name, reached from the Worker
// (the default export) over RPC. The same code runs on Cloudflare and on wdo.
//
// `POST /{{name}}/<name>/increment` answers the new value; `GET /{{name}}/<name>` the current one.
import { DurableObject } from "cloudflare:workers";

export interface Env {
  {{binding}}: DurableObjectNamespace<{{class}}>;
}

export class {{class}} extends DurableObject<Env> {
  async increment(): Promise<number> {
    const value = ((await this.ctx.storage.get<number>("value")) ?? 0) + 1;
    await this.ctx.storage.put("value", value);
    return value;
  }

  async value(): Promise<number> {
    return (await this.ctx.storage.get<number>("value")) ?? 0;
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const [project, name, action] = new URL(request.url).pathname.split("/").slice(1);
    if (project !== "{{name}}" || !name) return new Response("not found\n", { status: 404 });
    const counter = env.{{binding}}.getByName(decodeURIComponent(name));
    if (request.method === "POST" && action === "increment") return new Response(String(await counter.increment()));
    if (request.method === "GET" && !action) return new Response(String(await counter.value()));
    return new Response("not found\n", { status: 404 });
  },
} satisfies ExportedHandler<Env>;
