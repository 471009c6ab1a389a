/**
 * Reading what CXone posts to the box: the fixture bodies of both reply formats, minimal and odd bodies (every
 * thread-id fallback), attachments, sender actions, recipient validation, and the depth-limited JSON reader.
 */
import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { HttpError } from '../../lib/http/body';
import { jsonDepth, readJsonObject, type JsonObject } from '../../lib/cxone/box/json';
import {
  readReply,
  replyEmission,
  replyIdFor,
  replyResponse,
  senderActionOf,
  threadIdOf,
  typingOf,
  validateRecipients,
} from '../../lib/cxone/box/replies';
import { invalidConversation } from '../../lib/conversation';
import { fixture } from '../harness/paths';

const load = (name: string): JsonObject => JSON.parse(fixture('cxone', name)) as JsonObject;
const OPENID = 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o';
const CHANNEL = 'chat_5d1ed0c1-8bbd-4c4b-8f0f-6f1f3bd6d1a1';

describe('box reply bodies', () => {
  it('reads the DFO 3.0 fixture into an outbound text conversation message', () => {
    const body = load('box-dfo3-outbound.json');
    const r = readReply('dfo3', { channelId: CHANNEL }, body);
    const { payload, cxone } = replyEmission(r, 'wx-out-1', 1714552501123);
    assert.deepEqual(payload, {
      direction: 'outbound',
      channel: 'cxone',
      account: CHANNEL,
      conversationId: OPENID,
      messageId: 'wx-out-1',
      timestamp: 1714552501123,
      from: { id: '5678', name: 'Ada Agent' },
      to: { id: OPENID, name: 'WeChat user' },
      type: 'text',
      text: '您好，请提供您的订单号。',
    });
    assert.equal(invalidConversation(payload), null);
    assert.equal(cxone.format, 'dfo3');
    assert.equal(cxone.channelId, CHANNEL);
    assert.equal(cxone.threadId, OPENID);
    assert.equal(cxone.threadIdSource, 'thread');
    assert.equal(cxone.idOnExternalPlatform, 'wx-out-1');
    assert.equal(cxone.createdAtWithMilliseconds, '2024-05-01T08:35:01.123Z');
    assert.equal(cxone.brandId, '1234');
    assert.equal(cxone.replyToMessageId, 'wx-msg-23456789012345678');
    assert.equal(cxone.body, body, 'the parsed body travels untouched');
  });

  it('reads the legacy fixture; the channel id is not in its path', () => {
    const r = readReply(
      'legacy',
      { postId: '0f9c2bbd-3a55-4b8e-9a6f-0d2a0c4b1e77' },
      load('box-legacy-reply.json'),
    );
    const { payload, cxone } = replyEmission(r, 'wx-out-2', 1);
    assert.equal(payload.conversationId, OPENID);
    assert.equal(payload.text, '您好，请提供您的订单号。');
    assert.equal(payload.account, '');
    assert.equal(cxone.format, 'legacy');
    assert.equal(cxone.postId, '0f9c2bbd-3a55-4b8e-9a6f-0d2a0c4b1e77');
    assert.equal(cxone.channelId, undefined);
  });

  it('answers each format as CXone expects', () => {
    const r3 = readReply('dfo3', { channelId: CHANNEL }, load('box-dfo3-outbound.json'));
    const expected = load('box-dfo3-outbound-response.json') as any;
    const a3 = replyResponse(
      r3,
      expected.message.idOnExternalPlatform,
      Date.parse('2024-05-01T08:35:01.123Z'),
    );
    assert.deepEqual(a3.message, expected.message);
    assert.deepEqual(a3.thread, expected.thread);
    assert.deepEqual(a3.recipients, expected.recipients);
    const rl = readReply('legacy', { postId: 'p' }, load('box-legacy-reply.json'));
    const legacy = load('box-legacy-reply-response.json');
    assert.deepEqual(replyResponse(rl, String(legacy.idOnExternalPlatform), 0), legacy);
  });

  it('finds the thread id: thread, then post, then the legacy path id (not a CXone UUID), then a recipient', () => {
    const rec = { endUserRecipients: [{ idOnExternalPlatform: 'from-recipient-000001' }] };
    assert.deepEqual(
      threadIdOf({ thread: { idOnExternalPlatform: 't' }, post: { idOnExternalPlatform: 'p' } }),
      {
        threadId: 't',
        source: 'thread',
      },
    );
    assert.deepEqual(threadIdOf({ post: { idOnExternalPlatform: 'p' }, ...rec }), {
      threadId: 'p',
      source: 'post',
    });
    assert.deepEqual(threadIdOf({ ...rec }, OPENID), { threadId: OPENID, source: 'path' });
    assert.deepEqual(threadIdOf({ ...rec }, '0f9c2bbd-3a55-4b8e-9a6f-0d2a0c4b1e77'), {
      threadId: 'from-recipient-000001',
      source: 'recipient',
    });
    assert.deepEqual(
      threadIdOf({ thread: { idOnExternalPlatform: '  ' }, ...rec }),
      {
        threadId: 'from-recipient-000001',
        source: 'recipient',
      },
      'a blank thread id is no thread id',
    );
    assert.deepEqual(
      threadIdOf({
        recipients: [
          { idOnExternalPlatform: 'cc-000000000000001', isPrimary: false },
          { idOnExternalPlatform: 'primary-0000000001', isPrimary: true },
        ],
      }),
      { threadId: 'primary-0000000001', source: 'recipient' },
      'the primary recipient when one is marked',
    );
    assert.equal(threadIdOf({ thread: {}, endUserRecipients: [{}] }), undefined);
  });

  it('refuses a reply with no recipient, or with nothing to send (400)', () => {
    assert.throws(
      () => readReply('dfo3', { channelId: CHANNEL }, { messageContent: { payload: { text: 'hi' } } }),
      (e: unknown) => e instanceof HttpError && e.status === 400 && /recipient/.test(e.message),
    );
    assert.throws(
      () => readReply('dfo3', { channelId: CHANNEL }, { thread: { idOnExternalPlatform: OPENID } }),
      (e: unknown) => e instanceof HttpError && e.status === 400 && /no text/.test(e.message),
    );
  });

  it('reads the text from the other places samples put it', () => {
    const base = { thread: { idOnExternalPlatform: OPENID } };
    const texts: [JsonObject, string][] = [
      [{ messageContent: { text: 'a' } }, 'a'],
      [{ message: { text: 'b' } }, 'b'],
      [{ message: 'c' }, 'c'],
      [{ text: 'd' }, 'd'],
      [{ messageContent: { type: 'TEXT', payload: {}, fallbackText: 'e' } }, 'e'],
    ];
    for (const [extra, want] of texts) assert.equal(readReply('dfo3', {}, { ...base, ...extra }).text, want);
  });

  it('passes on an unknown content type as its own type, with the body', () => {
    const r = readReply(
      'dfo3',
      {},
      { thread: { idOnExternalPlatform: OPENID }, messageContent: { type: 'PLUGIN', payload: { x: 1 } } },
    );
    assert.equal(r.type, 'plugin');
    assert.equal(r.text, undefined);
  });

  it('maps attachments to [{url, name, mimeType}] and types a media-only reply by its first attachment', () => {
    const r = readReply('dfo3', { channelId: CHANNEL }, load('box-outbound-attachments.json'));
    assert.equal(r.type, 'text');
    assert.deepEqual(r.attachments, [
      {
        url: 'https://example-bucket.s3.amazonaws.com/attachments/5b1f0d7e-0000-4000-8000-000000000002/invoice-2024-05.pdf?X-Amz-Expires=900',
        name: 'invoice-2024-05.pdf',
        mimeType: 'application/pdf',
      },
      {
        url: 'https://example-bucket.s3.amazonaws.com/attachments/5b1f0d7e-0000-4000-8000-000000000003/photo.jpg?X-Amz-Expires=900',
        name: 'photo.jpg',
        mimeType: 'image/jpeg',
      },
    ]);
    const mediaOnly = readReply(
      'dfo3',
      {},
      {
        thread: { idOnExternalPlatform: OPENID },
        messageContent: { type: 'TEXT', payload: { text: '' } },
        attachments: [
          { friendlyName: 'voice.amr', url: 'https://files.example.com/a/voice.amr' },
          { url: 'javascript:alert(1)', friendlyName: 'x.png' },
          { friendlyName: 'no-url.png' },
          'not an object',
        ],
      },
    );
    assert.equal(mediaOnly.type, 'voice');
    assert.equal(mediaOnly.text, undefined, 'an empty text is no text');
    assert.deepEqual(mediaOnly.attachments, [
      { url: 'https://files.example.com/a/voice.amr', name: 'voice.amr', mimeType: 'audio/amr' },
    ]);
    const named = readReply(
      'dfo3',
      {},
      {
        thread: { idOnExternalPlatform: OPENID },
        attachments: [
          { url: 'https://files.example.com/x/report%20final.bin', mimeType: 'application/octet-stream' },
        ],
      },
    );
    assert.deepEqual(named.attachments, [
      {
        url: 'https://files.example.com/x/report%20final.bin',
        name: 'report final.bin',
        mimeType: 'application/octet-stream',
      },
    ]);
    assert.equal(named.type, 'file');
  });

  it('gives a reply with a CXone message id the same id every time, and a random one otherwise', () => {
    const a = replyIdFor(CHANNEL, OPENID, 'cx-msg-1');
    assert.equal(replyIdFor(CHANNEL, OPENID, 'cx-msg-1'), a);
    assert.match(a, /^wx-out-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.notEqual(replyIdFor(CHANNEL, OPENID, 'cx-msg-2'), a);
    assert.notEqual(replyIdFor(undefined, OPENID, undefined), replyIdFor(undefined, OPENID, undefined));
    const r = readReply('dfo3', {}, { id: 'cx-msg-1', thread: { idOnExternalPlatform: OPENID }, text: 'x' });
    assert.equal(r.cxoneMessageId, 'cx-msg-1');
  });
});

describe('box sender actions', () => {
  it('reads the fixture and the top-level variant', () => {
    assert.equal(senderActionOf(load('box-sender-action.json')), 'isTypingOn');
    assert.equal(senderActionOf({ action: 'isTypingOff' }), 'isTypingOff');
    assert.equal(typingOf('isTypingOn'), true);
    assert.equal(typingOf('isTypingOff'), false);
    assert.equal(typingOf('markSeen'), undefined);
    assert.equal(typingOf(undefined), undefined);
  });
});

describe('box recipient validation', () => {
  it('accepts the fixture (a WeChat openid)', () => {
    assert.equal(validateRecipients(load('box-recipients-validation.json')), null);
  });

  it('answers the 400 shape CXone expects for a recipient that cannot be an openid', () => {
    const f = validateRecipients({ endUserRecipients: [{ idOnExternalPlatform: 'someone@example.com' }] });
    const expected = load('box-recipients-validation-400.json');
    assert.deepEqual(f, expected);
  });

  it('names each bad recipient by its path, accepts `recipients` too, and refuses an empty list', () => {
    const f = validateRecipients({
      recipients: [{ idOnExternalPlatform: OPENID }, { idOnExternalPlatform: '+86 138 0013 8000' }, {}],
    });
    assert.deepEqual(f?.errors, [
      { path: ['recipients', 1, 'idOnExternalPlatform'], message: 'Invalid recipient format' },
      { path: ['recipients', 2, 'idOnExternalPlatform'], message: 'Recipient id missing' },
    ]);
    assert.equal(validateRecipients({ endUserRecipients: [] })?.errorCode, 'outboundValidationFailed');
    assert.equal(validateRecipients({})?.errors[0].message, 'No recipient given');
  });
});

describe('box JSON bodies', () => {
  it('reads an object, an empty body as {}, and a parser-produced object', () => {
    assert.deepEqual(readJsonObject({ rawBody: Buffer.from('{"a":1}') }), { a: 1 });
    assert.deepEqual(readJsonObject({ rawBody: Buffer.from('\uFEFF{"a":1}') }), { a: 1 });
    assert.deepEqual(readJsonObject({ rawBody: Buffer.alloc(0) }), {});
    assert.deepEqual(readJsonObject({ parsedBody: { a: 1 } }), { a: 1 });
    assert.deepEqual(readJsonObject({ parsedBody: '{"b":2}' }), { b: 2 });
  });

  it('refuses malformed JSON, non-objects, non-UTF-8 and deep nesting with a clear 400', () => {
    const bad: [Buffer, RegExp][] = [
      [Buffer.from('{"a":'), /not valid JSON/],
      [Buffer.from('[1,2]'), /must be a JSON object/],
      [Buffer.from('"text"'), /must be a JSON object/],
      [Buffer.from([0x7b, 0xff, 0x7d]), /not UTF-8/],
      [Buffer.from('{"a":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}'), /nested deeper than 32/],
    ];
    for (const [raw, re] of bad)
      assert.throws(
        () => readJsonObject({ rawBody: raw }),
        (e: unknown) => e instanceof HttpError && e.status === 400 && re.test(e.message),
        String(re),
      );
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = { d: deep };
    assert.throws(() => readJsonObject({ parsedBody: deep }), /nested deeper/);
  });

  it('counts depth outside strings only', () => {
    assert.equal(jsonDepth('{"a":"[[[[{{{{"}'), 1);
    assert.equal(jsonDepth('{"a":"\\"[[["}'), 1);
    assert.equal(jsonDepth('[[[]],{"a":[{}]}]'), 4);
  });
});

describe('box readers against arbitrary input (fast-check)', () => {
  it('readReply either finds a thread id and content, or refuses with a 400; it never throws anything else', () => {
    const shaped = fc.record(
      {
        thread: fc.oneof(
          fc.record({ idOnExternalPlatform: fc.oneof(fc.string(), fc.integer(), fc.constant(null)) }),
          fc.jsonValue(),
        ),
        post: fc.jsonValue(),
        messageContent: fc.oneof(
          fc.record({ type: fc.string(), payload: fc.record({ text: fc.jsonValue() }) }),
          fc.jsonValue(),
        ),
        endUserRecipients: fc.oneof(
          fc.array(fc.record({ idOnExternalPlatform: fc.jsonValue() })),
          fc.jsonValue(),
        ),
        attachments: fc.oneof(
          fc.array(fc.record({ url: fc.oneof(fc.webUrl(), fc.string()), friendlyName: fc.jsonValue() })),
          fc.jsonValue(),
        ),
        message: fc.jsonValue(),
        id: fc.jsonValue(),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(
        fc.oneof(shaped, fc.dictionary(fc.string(), fc.jsonValue())),
        fc.constantFrom('legacy', 'dfo3'),
        fc.string(),
        (body, format, pathId) => {
          try {
            const r = readReply(format, { postId: pathId, channelId: pathId }, body);
            const { payload } = replyEmission(r, 'wx-out-x', 0);
            assert.ok(payload.conversationId.length > 0);
            assert.ok(
              payload.text !== undefined || (payload.attachments?.length ?? 0) > 0 || payload.type !== 'text',
            );
            assert.equal(invalidConversation(payload), null);
            for (const a of payload.attachments ?? []) assert.match(String(a.url), /^https?:\/\//i);
            JSON.stringify(replyResponse(r, 'wx-out-x', 0));
          } catch (e) {
            if (!(e instanceof HttpError && e.status === 400)) throw e;
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('readJsonObject refuses any bytes that are not a JSON object with a 400 and nothing else', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }),
          fc.string().map((s) => Buffer.from(s)),
        ),
        (bytes) => {
          try {
            const v = readJsonObject({ rawBody: Buffer.from(bytes) });
            assert.equal(typeof v, 'object');
            assert.ok(!Array.isArray(v));
          } catch (e) {
            if (!(e instanceof HttpError && e.status === 400)) throw e;
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
