/**
 * The push pipeline (lib/wechat/inbound/receiver.ts) on a real HTTP server with the route registry, without
 * Node-RED: the order accept → journal (also the dedupe) → acknowledge → emit, the dedupe step when there is no
 * journal, what happens when the store or the journal fails, and that the answer never waits for the flow.
 */
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { RouteRegistry } from '../../lib/http/registry';
import { createJournal, parseRef } from '../../lib/journal';
import { MemoryStore } from '../../lib/store/memory';
import type { Store } from '../../lib/store/types';
import { PushReceiver, type AcceptedPush, type ReceiverOptions } from '../../lib/wechat/inbound/receiver';
import { WechatPushSimulator } from '../../sandbox/sim/wechat/push';

const ACCOUNT = {
  appId: 'wxb11529c136998cb6',
  originalId: 'gh_7f083739789a',
  token: 'pamtest',
  encodingAESKey: 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG',
};

describe('the push pipeline', function () {
  this.timeout(15_000);
  let server: http.Server;
  let url: string;
  let sim: WechatPushSimulator;
  let receiver: PushReceiver;
  let claimRelease: () => void;

  async function start(
    over: Partial<ReceiverOptions> = {},
    store: Pick<Store, 'setIfAbsent' | 'delete'> = new MemoryStore(),
  ): Promise<void> {
    const reg = new RouteRegistry('/');
    receiver = new PushReceiver({
      secrets: () => ({ token: ACCOUNT.token, encodingAESKey: ACCOUNT.encodingAESKey, appId: ACCOUNT.appId }),
      store,
      keyPrefix: 'wxcx:wechat:test:',
      replyTimeoutMs: 0,
      emit: () => undefined,
      ...over,
    });
    const claim = reg.claim({
      owner: 'n1',
      label: 'test',
      basePath: '/hook',
      routes: [
        { method: 'GET', pattern: '', handler: receiver.handleGet },
        { method: 'POST', pattern: '', handler: receiver.handlePost },
      ],
    });
    claimRelease = () => claim.release();
    server = http.createServer((req, res) =>
      reg.dispatcher(req, res, () => {
        res.statusCode = 404;
        res.end();
      }),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    sim = new WechatPushSimulator({ account: { ...ACCOUNT, mode: 'safe' } });
  }

  afterEach(async () => {
    receiver?.close();
    claimRelease?.();
    sim?.close();
    server?.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('runs the steps in order: journal (which is the dedupe), answer, then emit with the reference', async () => {
    const steps: string[] = [];
    const refs: (string | undefined)[] = [];
    const journal = createJournal<unknown>({
      runtime: {},
      name: 'wxcx:wechat:test:in:n1',
      store: new MemoryStore(),
    });
    await start(
      {
        journal: async (p) => {
          const ref = await journal.append(p.dedupeKey, { payload: p.payload });
          steps.push(`journal ${p.payload.text} ${ref ? 'new' : 'seen'}`);
          return ref;
        },
        emit: (p, _replyId, ref) => {
          steps.push(`emit ${p.payload.text}`);
          refs.push(ref);
        },
      },
      {
        setIfAbsent: () => Promise.reject(new Error('the dedupe step must not run when there is a journal')),
        delete: () => Promise.resolve(),
      },
    );
    const ack = receiver.acknowledge.bind(receiver);
    receiver.acknowledge = (res) => {
      steps.push('answer');
      ack(res);
    };
    const rec = await sim.push(url, sim.text('o1', 'a'));
    assert.equal(rec.attempts[0].body, 'success');
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(steps, ['journal a new', 'answer', 'emit a']);
    assert.equal(refs.length, 1);
    assert.match(parseRef(refs[0])?.id ?? '', /^m[0-9a-f]{40}$/);
    assert.equal(parseRef(refs[0])?.name, 'wxcx:wechat:test:in:n1');
    // A retry: the journal says "seen", answered, nothing else.
    steps.length = 0;
    await sim.push(url, rec.xml);
    assert.deepEqual(steps, ['journal a seen', 'answer']);
    await journal.stop();
  });

  it('without a journal it dedupes with the store: dedupe, answer, emit; a retry is answered only', async () => {
    const steps: string[] = [];
    const store = new MemoryStore();
    await start(
      { emit: (p) => steps.push(`emit ${p.payload.text}`) },
      {
        setIfAbsent: async (k, v, ttl) => {
          steps.push('dedupe');
          assert.ok(ttl >= 60_000);
          assert.match(k, /^wxcx:wechat:test:in:dedupe:m[0-9a-f]{40}$/);
          return store.setIfAbsent(k, v, ttl);
        },
        delete: (k) => store.delete(k),
      },
    );
    const ack = receiver.acknowledge.bind(receiver);
    receiver.acknowledge = (res) => {
      steps.push('answer');
      ack(res);
    };
    const rec = await sim.push(url, sim.text('o1', 'b'));
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(steps, ['dedupe', 'answer', 'emit b']);
    steps.length = 0;
    await sim.push(url, rec.xml);
    assert.deepEqual(steps, ['dedupe', 'answer']);
  });

  it('a journal that fails answers 500 (WeChat retries) without marking the push seen, so the retry is taken', async () => {
    let failures = 1;
    const emitted: AcceptedPush[] = [];
    const problems: string[] = [];
    const journal = createJournal<unknown>({
      runtime: {},
      name: 'wxcx:wechat:test:in:n2',
      store: new MemoryStore(),
    });
    await start({
      journal: (p) =>
        failures-- > 0 ? Promise.reject(new Error('disk full')) : journal.append(p.dedupeKey, p.payload),
      emit: (p) => emitted.push(p),
      events: { problem: (code) => problems.push(code) },
    });
    const rec = await sim.push(url, sim.text('o1', 'durable'));
    assert.deepEqual(
      rec.attempts.map((a) => a.status),
      [500, 200],
    );
    assert.equal(rec.attempts[1].body, 'success');
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(emitted.length, 1);
    assert.deepEqual(problems, ['journal']);
    await journal.stop();
  });

  it('without a journal, a store that cannot answer does not lose the message: emitted, and the problem reported', async () => {
    const emitted: AcceptedPush[] = [];
    const problems: string[] = [];
    await start(
      { emit: (p) => emitted.push(p), events: { problem: (code) => problems.push(code) } },
      {
        setIfAbsent: () => Promise.reject(new Error('ECONNREFUSED 127.0.0.1:6379')),
        delete: () => Promise.resolve(),
      },
    );
    const rec = await sim.push(url, sim.text('o1', 'x'));
    assert.equal(rec.attempts[0].body, 'success');
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(emitted.length, 1);
    assert.deepEqual(problems, ['dedupe']);
  });

  it('a flow that throws while receiving is reported, and WeChat still gets "success"', async () => {
    const problems: string[] = [];
    await start({
      emit: () => {
        throw new Error('boom');
      },
      events: { problem: (code) => problems.push(code) },
    });
    const rec = await sim.push(url, sim.text('o1', 'x'));
    assert.equal(rec.attempts[0].body, 'success');
    assert.deepEqual(problems, ['emit']);
  });

  it('with a reply budget but no window support it answers at once', async () => {
    await start({ replyTimeoutMs: 3000 });
    const rec = await sim.push(url, sim.text('o1', 'x'));
    assert.equal(rec.attempts[0].body, 'success');
    assert.ok(rec.attempts[0].ms < 1000);
  });

  it('a passive reply that cannot be sealed (secrets gone) is refused and WeChat gets "success" at the deadline', async () => {
    let secretsOk = true;
    const problems: string[] = [];
    let deliver: ((xml: string) => boolean) | undefined;
    await start({
      replyTimeoutMs: 300,
      secrets: () => {
        if (!secretsOk) throw new Error('gone');
        return { token: ACCOUNT.token, encodingAESKey: ACCOUNT.encodingAESKey, appId: ACCOUNT.appId };
      },
      openWindow: (_p, d) => {
        deliver = d;
        return { id: 'w1', close: () => undefined };
      },
      emit: () => {
        secretsOk = false;
        assert.equal(deliver?.('<xml><MsgType>text</MsgType></xml>'), false);
      },
      events: { problem: (code) => problems.push(code) },
    });
    const rec = await sim.push(url, sim.text('o1', 'x'), { retries: 0 });
    assert.equal(rec.attempts[0].body, 'success');
    assert.deepEqual(problems, ['reply']);
  });
});
