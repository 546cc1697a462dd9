import { DurableObject } from "cloudflare:workers";

interface Env {
  EVENTS: DurableObjectNamespace<TicketOffice>;
  CAPACITY: string;
}

type Ticket = { holder: string; at: Date };

// One office per event: each claim takes the next number, once, in a transaction; when the
// event is full the transaction is rolled back and the claim refused.
export class TicketOffice extends DurableObject<Env> {
  async claim(holder: string): Promise<number | null> {
    const capacity = Number(this.env.CAPACITY);
    return this.ctx.storage.transaction(async (txn) => {
      const number = ((await txn.get<number>("issued")) ?? 0) + 1;
      await txn.put("issued", number);
      await txn.put<Ticket>(`ticket:${String(number).padStart(6, "0")}`, { holder, at: new Date() });
      if (number > capacity) {
        txn.rollback();
        return null;
      }
      return number;
    });
  }

  async tickets(): Promise<{ number: number; holder: string; at: string }[]> {
    const list = await this.ctx.storage.list<Ticket>({ prefix: "ticket:" });
    return [...list.entries()].map(([key, { holder, at }]) => ({ number: Number(key.slice(7)), holder, at: at.toISOString() }));
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const event = url.searchParams.get("event");
    if (!event) return new Response("Say which event: ?event=<name>\n", { status: 400 });
    const office = env.EVENTS.getByName(event);
    switch (url.pathname) {
      case "/claim": {
        const number = await office.claim(url.searchParams.get("holder") ?? "anonymous");
        if (number === null) return new Response(`${event} is sold out\n`, { status: 409 });
        return new Response(`${number}\n`);
      }
      case "/tickets":
        return Response.json(await office.tickets());
      default:
        return new Response("Try POST /claim?event=<name>&holder=<you> or GET /tickets?event=<name>\n", { status: 404 });
    }
  },
} satisfies ExportedHandler<Env>;
