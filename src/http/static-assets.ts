import { readFileSync } from 'node:fs';
import path from 'node:path';

import type { Middleware } from 'koa';

const TYPES: Record<string, string> = { '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png' };

/** Serves the few files under src/views/assets, read once at start-up. */
export function staticAssets(dir: string, names: string[]): Middleware {
  const files = new Map(names.map((name) => [`/assets/${name}`, { body: readFileSync(path.join(dir, name)), type: TYPES[path.extname(name)] ?? 'application/octet-stream' }]));
  return async function staticAssets(ctx, next) {
    const file = files.get(ctx.path);
    if (!file || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next();
    ctx.type = file.type;
    ctx.set('Cache-Control', 'public, max-age=3600');
    ctx.body = file.body;
  };
}
