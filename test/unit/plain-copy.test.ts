/** The JSON-safe copy of a msg that both -out nodes keep in an outbox job (nodes/shared.ts). */
import * as assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { JsonText } from '../../lib/outbox/codec';
import { keptMsg, plainCopy } from '../../nodes/shared';
import type { NodeMessage } from '../../nodes/types';

describe('plainCopy (the msg kept with an outbox job)', function () {
  it('copies a plain msg deeply, dropping functions and undefined', function () {
    const shared = { a: 1 };
    const msg = {
      _msgid: 'm1',
      payload: { text: '你好', n: 1, list: [1, 'x', null], shared, again: shared },
      fn: () => 1,
      nothing: undefined,
    } as unknown as NodeMessage;
    const kept = plainCopy(msg);
    assert.ok(kept instanceof JsonText, 'kept as its JSON text');
    const c = kept.value<Record<string, unknown>>();
    assert.deepEqual(c, {
      _msgid: 'm1',
      payload: { text: '你好', n: 1, list: [1, 'x', null], shared: { a: 1 }, again: { a: 1 } },
    });
    assert.notEqual(c.payload, msg.payload);
  });

  it('drops Buffers, req/res and cycles, keeping the rest', function () {
    const cyc: Record<string, unknown> = { name: 'c' };
    cyc.self = cyc;
    const withBuffer = {
      _msgid: 'm2',
      payload: { bin: Buffer.from('abc'), keep: 'yes' },
    } as unknown as NodeMessage;
    assert.deepEqual(plainCopy(withBuffer).value(), { _msgid: 'm2', payload: { keep: 'yes' } });
    const withReq = {
      _msgid: 'm3',
      req: new EventEmitter(),
      res: { _res: new EventEmitter() },
      payload: 1,
    } as unknown as NodeMessage;
    assert.deepEqual(plainCopy(withReq).value(), { _msgid: 'm3', payload: 1 });
    const withCycle = { _msgid: 'm4', payload: cyc } as unknown as NodeMessage;
    assert.deepEqual(plainCopy(withCycle).value(), { _msgid: 'm4', payload: { name: 'c' } });
  });

  it('falls back to _msgid, topic and the given fields when nothing else can be made', function () {
    const msg = { _msgid: 'm5', topic: 't', payload: { big: 10n } } as unknown as NodeMessage;
    assert.deepEqual(plainCopy(msg, { note: 'x', cxone: undefined }).value(), {
      _msgid: 'm5',
      topic: 't',
      note: 'x',
    });
    const odd = { _msgid: 'm8', topic: 10n, payload: { big: 10n } } as unknown as NodeMessage;
    assert.deepEqual(
      plainCopy(odd).value(),
      { _msgid: 'm8', topic: '10' },
      'a topic JSON refuses does not fail it',
    );
  });

  it('gives the kept msg back: parsed from its text (a job of this run) or as the object a stored record held', function () {
    const msg = { _msgid: 'm6', payload: { text: 'hi' } } as unknown as NodeMessage;
    const a = keptMsg(plainCopy(msg));
    const b = keptMsg(plainCopy(msg));
    assert.deepEqual(a, { _msgid: 'm6', payload: { text: 'hi' } });
    assert.notEqual(a, b, 'a new object each time: a user flow may change it');
    const stored = { _msgid: 'm7' };
    assert.equal(keptMsg(stored), stored);
    assert.equal(keptMsg(undefined), undefined);
    assert.equal(keptMsg(new JsonText('{not json')), undefined);
  });
});
