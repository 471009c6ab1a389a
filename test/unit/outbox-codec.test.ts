/** The JSON of persisted jobs and journal entries: Buffers round-trip; awkward msgs do not fail a message. */
import * as assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { decodeJson, encodeJson } from '../../lib/outbox/codec';

describe('outbox codec', function () {
  it('round-trips Buffers and Uint8Arrays as Buffers, and plain JSON untouched', function () {
    const v = { a: Buffer.from('hé'), b: new Uint8Array([1, 2]), c: [1, 'x', null, { d: true }], e: [] };
    const back = decodeJson<typeof v>(encodeJson(v));
    assert.ok(Buffer.isBuffer(back.a));
    assert.equal(back.a.toString(), 'hé');
    assert.deepEqual([...back.b], [1, 2]);
    assert.deepEqual(back.c, [1, 'x', null, { d: true }]);
    assert.deepEqual(back.e, []);
  });

  it("keeps what it can of a msg plain JSON refuses: cycles, BigInts, an http-in node's req/res", function () {
    const msg: Record<string, unknown> = {
      payload: { text: 'hi' },
      big: 12345678901234567890n,
      req: new EventEmitter(),
    };
    msg.self = msg;
    const back = decodeJson<Record<string, unknown>>(encodeJson(msg));
    assert.deepEqual(back.payload, { text: 'hi' });
    assert.equal(back.big, '12345678901234567890');
    assert.equal(back.req, undefined);
    assert.equal(back.self, undefined);
  });
});
