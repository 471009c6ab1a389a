/**
 * nodes/logging.ts: whether Node-RED would write a debug or trace line, read from `settings.logging` the way
 * Node-RED reads it (an absent or unknown level is "info"; no logging block at all: assume yes).
 */
import * as assert from 'node:assert/strict';
import { logsAt } from '../../nodes/logging';
import type { NodeAPI } from '../../nodes/types';

function red(logging: unknown): Pick<NodeAPI, 'settings'> {
  return { settings: { logging } };
}

describe('logsAt (nodes/logging)', () => {
  it('is false for debug and trace when every handler logs at info or above (the default settings file)', () => {
    const r = red({ console: { level: 'info', metrics: false, audit: false } });
    assert.equal(logsAt(r, 'debug'), false);
    assert.equal(logsAt(r, 'trace'), false);
    assert.equal(logsAt(red({ console: { level: 'warn' }, file: { level: 'error' } }), 'debug'), false);
  });

  it('is true for debug at debug level, and for trace only at trace level', () => {
    assert.equal(logsAt(red({ console: { level: 'debug' } }), 'debug'), true);
    assert.equal(logsAt(red({ console: { level: 'debug' } }), 'trace'), false);
    assert.equal(logsAt(red({ console: { level: 'trace' } }), 'trace'), true);
    assert.equal(logsAt(red({ console: { level: 'trace' } }), 'debug'), true);
  });

  it('is true when any one handler takes the level', () => {
    const r = red({
      console: { level: 'info' },
      myLogger: { level: 'debug', handler: () => () => undefined },
    });
    assert.equal(logsAt(r, 'debug'), true);
  });

  it('reads a handler without a level, or with one Node-RED does not know, as info', () => {
    assert.equal(logsAt(red({ console: {} }), 'debug'), false);
    assert.equal(logsAt(red({ console: { level: 'verbose' } }), 'debug'), false);
  });

  it('assumes yes without a logging block, or when the settings cannot be read', () => {
    assert.equal(logsAt(red(undefined), 'debug'), true);
    assert.equal(logsAt(red('debug'), 'trace'), true);
    const throwing = {
      get settings(): NodeAPI['settings'] {
        return new Proxy(
          {},
          {
            get: () => {
              throw new Error('not available');
            },
          },
        );
      },
    };
    assert.equal(logsAt(throwing, 'debug'), true);
  });
});
