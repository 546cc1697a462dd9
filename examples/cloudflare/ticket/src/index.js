import { DurableObject } from "cloudflare:workers";

// One office per event: each claim takes the next number, once, in a transaction; when the
// event is full the transaction is rolled back and the claim refused.
export class TicketOffice extends DurableObject {
  async claim(holder) {
    const capacity = Number(this.env.CAPACITY);
    return this.ctx.storage.transaction(async (txn) => {
      const number = ((await txn.get("issued")) ?? 0) + 1;
      await txn.put("issued", number);
      await txn.put(`ticket:${String(number).padStart(6, "0")}`, { holder, at: new Date() });
      if (number > capacity) {
        txn.rollback();
        return null;
      }
      return number;
    });
  }

  async tickets() {
    const list = await this.ctx.storage.list({ prefix: "ticket:" });
    return [...list.entries()].map(([key, { holder, at }]) => ({ number: Number(key.slice(7)), holder, at: at.toISOString() }));
  }
}

export default {
  async fetch(request, env) {
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
};
