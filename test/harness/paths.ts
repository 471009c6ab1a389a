/** Where things are, wherever the compiled tests run from (dist/ or a helper's own build directory). */
import * as fs from 'node:fs';
import * as path from 'node:path';

function findRepoRoot(start: string): string {
  let dir = start;
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj) && fs.existsSync(path.join(dir, 'tsconfig.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`repository root not found above ${start}`);
    dir = up;
  }
}

/** The repository checkout (has package.json, tsconfig.json, test/fixtures …). */
export const repoRoot = findRepoRoot(__dirname);
/** The build output these compiled tests belong to (contains nodes/, lib/, test/). */
export const buildRoot = path.resolve(__dirname, '..', '..');
/** The compiled node files. */
export const nodesDir = path.join(buildRoot, 'nodes');
export const fixturesDir = path.join(repoRoot, 'test', 'fixtures');

export function fixture(...p: string[]): string {
  return fs.readFileSync(path.join(fixturesDir, ...p), 'utf8');
}

/** Loads one of our compiled node modules (as Node-RED would). */
export function nodeModule(type: string): (RED: unknown) => void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(path.join(nodesDir, `${type}.js`)) as (RED: unknown) => void;
}

export const NODE_TYPES = [
  'wechat-config',
  'wechat-in',
  'wechat-out',
  'cxone-dfo-config',
  'cxone-dfo-in',
  'cxone-dfo-out',
] as const;
