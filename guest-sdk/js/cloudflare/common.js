// What both components of a project (objects and worker) give `cloudflare:workers`: the base
// classes, `env`, and the project's bindings and vars, which the generated entry sets.

import * as rawContext from 'wdo:object/context@0.1.0';
import { makeEnv } from './namespace.js';

/** The base class of Durable Objects: keeps `ctx` and `env`. */
export class DurableObject {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }
}

/** The base class of class-style workers (`export default class extends WorkerEntrypoint`). */
export class WorkerEntrypoint {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }
}

/** Marks objects that may be passed by reference over RPC on Cloudflare; wdo copies values. */
export class RpcTarget {}

let project = { bindings: {}, vars: {} };

/** What the build knows: `{ bindings: { BINDING: 'ClassName' }, vars: { NAME: 'json' | 'text' } }`. */
export function setProject(config) {
  project = config;
}

/** `import { env } from "cloudflare:workers"`: the same `env` constructors and handlers get. */
export const env = makeEnv(() => project, (key) => rawContext.env(key));

/** Says on stderr what an uncaught exception was: its first line is what the caller's 500 carries. */
export function reportUncaught(e) {
  console.error(`Uncaught ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  if (e && e.stack) console.error(e.stack);
}
