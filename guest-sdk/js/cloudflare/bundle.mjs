// Bundles a wrangler project for wdo (run by `wdo build`/`serve`/`deploy` with Node.js):
//
//   node bundle.mjs job.json
//
// job.json: { esbuild, sdk, main, projectDir, baseDir, outdir, rules: [{ type, globs }], define, alias,
//             project: { bindings, vars } }
//
// Writes `objects.js` (the classes, world `warmable-durable-object`) and, when the module has a
// default export, `worker.js` (world `worker`) into `outdir`, each one ES module with every
// import inlined but the host's (`wdo:*`, `wasi:*`), and prints `{ "exports": [...],
// "worker": true|false }`. `cloudflare:workers` resolves to wdo's layer; TypeScript is
// type-stripped; modules that `rules` match are Text (a string) or Data (an ArrayBuffer), as
// wrangler has them. A failure prints what and where on stderr and exits 1.

import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const esbuild = await import(job.esbuild);

function globToRegExp(glob) {
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*' && glob[i + 1] === '*') {
      i++;
      if (glob[i + 1] === '/') {
        i++;
        source += '(?:.*/)?';
      } else {
        source += '.*';
      }
    } else if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else source += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

const rules = job.rules.map((rule) => ({ type: rule.type, patterns: rule.globs.map(globToRegExp), globs: rule.globs }));

function ruleFor(file) {
  const relative = path.relative(job.baseDir, file).split(path.sep).join('/');
  return rules.find((rule) => rule.patterns.some((pattern) => pattern.test(relative)));
}

const UNSUPPORTED_CLOUDFLARE = {
  'cloudflare:sockets': 'TCP sockets (connect())',
  'cloudflare:email': 'Email Workers',
  'cloudflare:workflows': 'Workflows',
  'cloudflare:ai': 'Workers AI',
};

function plugin(layer) {
  return {
    name: 'wdo',
    setup(build) {
      build.onResolve({ filter: /^cloudflare:workers$/ }, () => ({ path: path.join(job.sdk, 'cloudflare', layer) }));
      build.onResolve({ filter: /^cloudflare:/ }, (args) => ({
        errors: [{ text: `\`${args.path}\` (${UNSUPPORTED_CLOUDFLARE[args.path] ?? 'a Cloudflare module'}) is not supported by wdo; \`cloudflare:workers\` is` }],
      }));
      build.onResolve({ filter: /^node:/ }, (args) => ({
        errors: [{ text: `\`${args.path}\`: wdo has no Node.js built-in modules (Cloudflare's nodejs_compat); use web APIs instead` }],
      }));
      build.onResolve({ filter: /^(wdo|wasi):/ }, (args) => ({ path: args.path, external: true }));
      build.onLoad({ filter: /.*/ }, (args) => {
        const rule = ruleFor(args.path);
        if (!rule) return undefined;
        switch (rule.type) {
          case 'Text':
            return { contents: `export default ${JSON.stringify(readFileSync(args.path, 'utf8'))};`, loader: 'js' };
          case 'Data': {
            const base64 = readFileSync(args.path).toString('base64');
            return {
              contents: `const b = atob(${JSON.stringify(base64)}); const a = new Uint8Array(b.length);\n` +
                'for (let i = 0; i < b.length; i++) a[i] = b.charCodeAt(i);\nexport default a.buffer;',
              loader: 'js',
            };
          }
          case 'ESModule':
          case 'CommonJS':
            return undefined;
          default:
            return { errors: [{ text: `modules of type ${rule.type} (rule ${JSON.stringify(rule.globs)}) are not supported by wdo: use Text, Data, ESModule or CommonJS` }] };
        }
      });
    },
  };
}

const common = {
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  mainFields: ['workerd', 'worker', 'browser', 'module', 'main'],
  conditions: ['workerd', 'worker', 'browser'],
  resolveExtensions: ['.ts', '.tsx', '.mts', '.js', '.mjs', '.jsx', '.json'],
  define: job.define ?? {},
  alias: job.alias ?? {},
  keepNames: true,
  legalComments: 'none',
  logLevel: 'silent',
  // Errors name files from the project's folder (src/index.ts:3:7).
  absWorkingDir: job.projectDir,
};

function fail(error) {
  const lines = (error.errors ?? []).map((e) => {
    const where = e.location ? `${e.location.file}:${e.location.line}:${e.location.column}: ` : '';
    return `${where}${e.text}`;
  });
  process.stderr.write(`${lines.length > 0 ? lines.join('\n') : String(error)}\n`);
  process.exit(1);
}

async function bundle(entry, layer, outfile) {
  try {
    await esbuild.build({ ...common, stdin: { contents: entry, resolveDir: job.baseDir, sourcefile: 'wdo-entry.js', loader: 'js' }, outfile, plugins: [plugin(layer)] });
  } catch (e) {
    fail(e);
  }
}

// What the module exports: its default export becomes the worker, its classes the objects.
let exports;
try {
  const result = await esbuild.build({ ...common, entryPoints: [job.main], write: false, metafile: true, outdir: job.outdir, plugins: [plugin('object.js')] });
  exports = Object.values(result.metafile.outputs).find((o) => o.entryPoint)?.exports ?? [];
} catch (e) {
  fail(e);
}

const main = JSON.stringify(job.main);
const project = JSON.stringify(job.project);
const sdk = (file) => JSON.stringify(path.join(job.sdk, 'cloudflare', file));
await bundle(
  `import { serveObjects } from ${sdk('object.js')};\nimport * as app from ${main};\nexport const { handler, warmUp } = serveObjects(app, ${project});\n`,
  'object.js',
  path.join(job.outdir, 'objects.js'),
);
const worker = exports.includes('default');
if (worker) {
  await bundle(
    `import { serveWorker } from ${sdk('worker.js')};\nimport * as app from ${main};\nexport const { workerHandler } = serveWorker(app, ${project});\n`,
    'worker.js',
    path.join(job.outdir, 'worker.js'),
  );
}
writeFileSync(path.join(job.outdir, 'exports.json'), JSON.stringify({ exports, worker }));
process.stdout.write(`${JSON.stringify({ exports, worker })}\n`);
