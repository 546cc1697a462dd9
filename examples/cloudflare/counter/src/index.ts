import { DurableObject } from "cloudflare:workers";

export interface Env {
  COUNTER: DurableObjectNamespace<Counter>;
  GREETING: string;
}

export class Counter extends DurableObject<Env> {
  async getCounterValue(): Promise<number> {
    return (await this.ctx.storage.get<number>("value")) ?? 0;
  }
  async increment(amount: number = 1): Promise<number> {
    let value: number = (await this.ctx.storage.get("value")) || 0;
    value += amount;
    await this.ctx.storage.put("value", value);
    return value;
  }
  async decrement(amount = 1) {
    let value: number = (await this.ctx.storage.get("value")) || 0;
    value -= amount;
    await this.ctx.storage.put("value", value);
    return value;
  }
  async fetch(request: Request): Promise<Response> {
    return Response.json({ url: request.url, id: this.ctx.id.toString(), name: this.ctx.id.name });
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const name = url.searchParams.get("name");
    if (!name) {
      return new Response("Select a Durable Object to contact by using the `name` URL query string parameter, for example, ?name=A");
    }
    const stub = env.COUNTER.getByName(name);
    let count: number;
    switch (url.pathname) {
      case "/increment":
        count = await stub.increment();
        break;
      case "/decrement":
        count = await stub.decrement();
        break;
      case "/":
        count = await stub.getCounterValue();
        break;
      case "/fetch":
        return stub.fetch(request);
      default:
        return new Response("Not found", { status: 404 });
    }
    return new Response(`Durable Object '${name}' count: ${count} (${env.GREETING})`);
  },
} satisfies ExportedHandler<Env>;
