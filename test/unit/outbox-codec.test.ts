/** The JSON of persisted jobs and journal entries: Buffers round-trip; awkward msgs do not fail a message. */
import * as assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { decodeJson, encodeJson, JsonText } from '../../lib/outbox/codec';

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

  describe('JsonText (a part kept as its JSON text)', function () {
    const msg = {
      _msgid: 'm1',
      payload: { text: '你好 "q" \\ \u2028', list: [1, null, { a: true }] },
      topic: 't',
    };

    it('is written as it is: the record is byte for byte the one the object would make, and decodes to it', function () {
      const job = {
        id: 'j1',
        key: 'k',
        payload: { body: { x: 1 }, msg: new JsonText(JSON.stringify(msg)) },
        n: 2,
      };
      const same = { id: 'j1', key: 'k', payload: { body: { x: 1 }, msg }, n: 2 };
      const text = encodeJson(job);
      assert.equal(text, encodeJson(same));
      assert.deepEqual(decodeJson(text), same);
    });

    it('splices several parts, nested and in arrays, in their places', function () {
      const v = {
        a: new JsonText('{"x":[1,2]}'),
        list: [new JsonText('"s"'), 3, new JsonText('null')],
        deep: { b: new JsonText('{"y":{"z":"中文"}}'), after: 'end' },
      };
      assert.deepEqual(decodeJson(encodeJson(v)), {
        a: { x: [1, 2] },
        list: ['s', 3, null],
        deep: { b: { y: { z: '中文' } }, after: 'end' },
      });
    });

    it('keeps working beside a Buffer (the replacer pass) and beside a cycle (the careful pass)', function () {
      const withBuffer = { bin: Buffer.from('hi'), msg: new JsonText('{"k":"v"}') };
      const back = decodeJson<{ bin: Buffer; msg: unknown }>(encodeJson(withBuffer));
      assert.equal(back.bin.toString(), 'hi');
      assert.deepEqual(back.msg, { k: 'v' });
      const cyc: Record<string, unknown> = { msg: new JsonText('[1,{"k":2}]') };
      cyc.self = cyc;
      assert.deepEqual(decodeJson(encodeJson(cyc)), { msg: [1, { k: 2 }] });
    });

    it('cannot be forged by a string value, nor leak into a plain JSON.stringify', function () {
      // What a slot looks like to an outsider: the NUL, the name, an index; the random part is unknown.
      const forged = { s: '\u0000wxcx-json-000000000000:0', t: 'wxcx-json-', msg: new JsonText('{"k":1}') };
      assert.deepEqual(decodeJson(encodeJson(forged)), { s: forged.s, t: 'wxcx-json-', msg: { k: 1 } });
      assert.equal(JSON.stringify({ msg: new JsonText('{"k":[1]}') }), '{"msg":{"k":[1]}}');
      assert.deepEqual(new JsonText('{"k":[1]}').value(), { k: [1] });
    });
  });
});
