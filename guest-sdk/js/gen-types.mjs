// Writes TypeScript declarations for the WIT world `warmable-durable-object` (what a JavaScript object
// imports and exports) into guest-sdk/js/types/. jco's own `guest-types` command cannot read
// files from its sandbox, so this hands it the WIT text instead of a path.
//
//   node guest-sdk/js/gen-types.mjs <node_modules folder> <wit/object.wit> <out folder>
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [modules, witPath, outDir] = process.argv.slice(2);
const bindgen = join(modules, '@bytecodealliance/jco-transpile/vendor/js-component-bindgen-component.js');
const { $init, generateTypes } = await import(pathToFileURL(bindgen).href);
await $init;
const files = generateTypes('warmable-durable-object', {
  // The WASI imports (wasi:http) are the platform's: `fetch` covers them, and their packages
  // live in wit/deps, which a single source text cannot name.
  wit: { tag: 'source', val: readFileSync(witPath, 'utf8').replace(/^\s*import wasi:.*$/gm, '') },
  world: 'wdo:object/warmable-durable-object',
  features: { tag: 'list', val: [] },
  guest: true,
  tlaCompat: false,
});
for (const [name, bytes] of files) {
  const path = join(outDir, name);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, bytes);
}
console.error(`wrote ${files.length} declaration files to ${outDir}`);
