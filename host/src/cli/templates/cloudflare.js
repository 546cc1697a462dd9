// A Durable Object in Cloudflare's style: one counter per object name, reached from the Worker
// (the default export) over RPC. The same code runs on Cloudflare and on wdo.
//
// `POST /{{name}}/<name>/increment` answers the new value; `GET /{{name}}/<name>` the current one.
import { DurableObject } from "cloudflare:workers";

export class {{class}} extends DurableObject {
  async increment() {
    const value = ((await this.ctx.storage.get("value")) ?? 0) + 1;
    await this.ctx.storage.put("value", value);
    return value;
  }

  async value() {
    return (await this.ctx.storage.get("value")) ?? 0;
  }
}

export default {
  async fetch(request, env) {
    const [project, name, action] = new URL(request.url).pathname.split("/").slice(1);
    if (project !== "{{name}}" || !name) return new Response("not found\n", { status: 404 });
    const counter = env.{{binding}}.getByName(decodeURIComponent(name));
    if (request.method === "POST" && action === "increment") return new Response(String(await counter.increment()));
    if (request.method === "GET" && !action) return new Response(String(await counter.value()));
    return new Response("not found\n", { status: 404 });
  },
};
