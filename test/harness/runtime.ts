/**
 * Which Node-RED the tests run against: `WXCX_NODE_RED=node-red` (4.1, the default) or `node-red-5` (installed as
 * an npm alias, run under Node 22 by scripts/test.js).
 */
import * as path from 'node:path';

export const nodeRedPackage = process.env.WXCX_NODE_RED || 'node-red';

/** Path of the Node-RED package's main file (for the test helper). */
export function nodeRedMain(): string {
  return require.resolve(nodeRedPackage);
}

/** Path of the `red.js` that `node-red` on the command line runs. */
export function nodeRedBin(): string {
  return path.join(path.dirname(require.resolve(`${nodeRedPackage}/package.json`)), 'red.js');
}

export function nodeRedVersion(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require(`${nodeRedPackage}/package.json`) as { version: string }).version;
}
