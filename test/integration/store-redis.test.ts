/**
 * The Redis backend against the real server on 127.0.0.1:6379: the shared store behaviour, prefixes, clear
 * errors for an unreachable server or a wrong password, and atomic dedupe across two processes.
 */
import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import * as path from 'node:path';
import { RedisStore, RedisStoreError, redisWhere } from '../../lib/store/redis';
import { storeConformance } from '../unit/store-conformance';
import { spawnChild } from '../unit/store-proc';
import { cleanup, countKeys, REDIS_URL, uniquePrefix } from './store-redis-helpers';

describe('store: redis', function () {
  this.timeout(30_000);
  const prefix = uniquePrefix('store');
  const open: RedisStore[] = [];
  let n = 0;
  afterEach(async function () {
    for (const s of open.splice(0)) await s.close();
  });
  after(async function () {
    await cleanup(prefix);
    assert.equal(await countKeys(prefix), 0, 'the tests left keys behind');
  });

  describe('shared behaviour', function () {
    storeConformance(async () => {
      const s = await RedisStore.open({ url: REDIS_URL, keyPrefix: `${prefix}c${n++}:` });
      open.push(s);
      return { store: s, key: (k: string) => k };
    });
  });

  it('puts the prefix in front of every key and keeps two prefixes apart', async function () {
    const a = await RedisStore.open({ url: REDIS_URL, keyPrefix: `${prefix}A:` });
    const b = await RedisStore.open({ url: REDIS_URL, keyPrefix: `${prefix}B:` });
    open.push(a, b);
    assert.equal(await a.setIfAbsent('msg:1', 'a', 10_000), true);
    assert.equal(await b.setIfAbsent('msg:1', 'b', 10_000), true);
    assert.equal(await a.client.get(`${prefix}A:msg:1`), 'a');
    assert.deepEqual(await a.scan('msg:'), [['msg:1', 'a']]);
    const ttl = await a.client.pttl(`${prefix}A:msg:1`);
    assert.ok(ttl > 9000 && ttl <= 10_000, `ttl ${ttl}`);
  });

  it('scan finds keys whose prefix has glob characters literally', async function () {
    const s = await RedisStore.open({ url: REDIS_URL, keyPrefix: `${prefix}g[1]*?:` });
    open.push(s);
    await s.set('x', '1');
    assert.deepEqual(await s.scan(''), [['x', '1']]);
    await s.delete('x');
  });

  it('says clearly, within the connect timeout, that nothing answers at a closed port', async function () {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    const t0 = Date.now();
    await assert.rejects(
      RedisStore.open({ url: `redis://:hunter2@127.0.0.1:${port}/2`, connectTimeoutMs: 1500 }),
      (err: Error) => {
        assert.ok(err instanceof RedisStoreError);
        assert.match(err.message, new RegExp(`cannot reach Redis at 127\\.0\\.0\\.1:${port}/2`));
        assert.match(err.message, /check that Redis runs there/);
        assert.doesNotMatch(err.message, /hunter2/);
        return true;
      },
    );
    assert.ok(Date.now() - t0 < 4000);
  });

  it('says so when the server wants a password it did not get, without printing any password', async function () {
    // A tiny stand-in that answers every command like a Redis with requirepass set and another password.
    const srv = net.createServer((sock) => {
      let buf = '';
      sock.on('data', (b) => {
        buf += b.toString('latin1');
        for (;;) {
          const cmd = takeCommand();
          if (!cmd) break;
          const name = cmd[0]?.toUpperCase();
          if (name === 'AUTH' || (name === 'HELLO' && cmd.some((a) => a.toUpperCase() === 'AUTH')))
            sock.write('-WRONGPASS invalid username-password pair or user is disabled.\r\n');
          else sock.write('-NOAUTH Authentication required.\r\n');
        }
      });
      function takeCommand(): string[] | null {
        const m = /^\*(\d+)\r\n/.exec(buf);
        if (!m) return null;
        let pos = m[0].length;
        const out: string[] = [];
        for (let i = 0; i < Number(m[1]); i++) {
          const h = /^\$(\d+)\r\n/.exec(buf.slice(pos));
          if (!h) return null;
          const start = pos + h[0].length;
          const len = Number(h[1]);
          if (buf.length < start + len + 2) return null;
          out.push(buf.slice(start, start + len));
          pos = start + len + 2;
        }
        buf = buf.slice(pos);
        return out;
      }
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    try {
      await assert.rejects(
        RedisStore.open({ url: `redis://127.0.0.1:${port}`, password: 's3cret-pw', connectTimeoutMs: 2000 }),
        (err: Error) => {
          assert.match(err.message, /check the Redis password/);
          assert.doesNotMatch(err.message, /s3cret-pw/);
          return true;
        },
      );
    } finally {
      srv.close();
    }
  });

  it('refuses a URL that is not redis:// or rediss://', async function () {
    await assert.rejects(RedisStore.open({ url: 'http://127.0.0.1:6379' }), /not valid/);
  });

  it('names the server without user or password', function () {
    assert.equal(redisWhere('redis://user:pw@10.0.0.5:6380/3'), '10.0.0.5:6380/3');
    assert.equal(redisWhere('redis://localhost'), 'localhost:6379');
  });

  it('rejects use after close with a clear error', async function () {
    const s = await RedisStore.open({ url: REDIS_URL, keyPrefix: `${prefix}closed:` });
    await s.close();
    await assert.rejects(s.get('x'), /closed/);
  });

  it('two processes racing setIfAbsent on 2000 keys: exactly one winner per key', async function () {
    const p = `${prefix}race:`;
    const script = path.join(__dirname, 'store-redis-child.js');
    const a = spawnChild(script, ['dedupe', p, '2000']);
    const b = spawnChild(script, ['dedupe', p, '2000']);
    await a.waitFor((l) => l.includes('ready'));
    await b.waitFor((l) => l.includes('ready'));
    a.send('go');
    b.send('go');
    await a.waitFor((l) => l.includes('finished'));
    await b.waitFor((l) => l.includes('finished'));
    const won = (l: string[]): number[] =>
      l.filter((x) => x.startsWith('won ')).map((x) => Number(x.slice(4)));
    const wa = won(a.lines);
    const wb = won(b.lines);
    assert.equal(wa.length + wb.length, 2000);
    assert.equal(new Set([...wa, ...wb]).size, 2000);
    assert.ok(wa.length > 0 && wb.length > 0, 'both processes took part');
    console.log(`      process A won ${wa.length}, process B won ${wb.length}`);
    await Promise.all([a.exited, b.exited]);
  });
});
