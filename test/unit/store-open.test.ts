/** openStore: one backend per (kind, location) per runtime, reference-counted handles, prefixes, open errors. */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as net from 'node:net';
import { FileStore } from '../../lib/store/file';
import { openStore } from '../../lib/store/open';
import { RedisStore } from '../../lib/store/redis';
import { storeOpenMessage, storeSpecFor } from '../../nodes/store';
import { repoRoot } from '../harness/paths';

/** RED._ over the real catalog of `type` in `lang`, with Node-RED's __name__ substitution. */
function catalog(type: string, lang: string): (key: string, subs?: Record<string, unknown>) => string {
  const json = JSON.parse(
    fs.readFileSync(path.join(repoRoot, 'nodes', 'locales', lang, `${type}.json`), 'utf8'),
  ) as Record<string, unknown>;
  return (key, subs = {}) => {
    let v: unknown = json;
    for (const part of key.split('.')) v = (v as Record<string, unknown> | undefined)?.[part];
    if (typeof v !== 'string') throw new Error(`${lang}/${type}.json has no ${key}`);
    return v.replace(/__(\w+)__/g, (_m, k: string) => (k in subs ? String(subs[k]) : `__${k}__`));
  };
}

describe('store: openStore', function () {
  const dirs: string[] = [];
  const tmp = (): string => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'wxcx-open-'));
    dirs.push(d);
    return d;
  };
  after(function () {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it('gives two config nodes of one runtime one file store, and closes it with the last handle', async function () {
    const runtime = {};
    const dir = tmp();
    const a = openStore(runtime, { kind: 'file', dir });
    const b = openStore(runtime, { kind: 'file', dir });
    assert.equal(a.backendId, b.backendId);
    await a.set('k', 'v');
    assert.equal(await b.get('k'), 'v');
    const backend = await a.backend();
    await a.close();
    assert.equal(await b.get('k'), 'v', 'still open while b holds it');
    await b.close();
    await assert.rejects(backend.get('k'), /closed/);
    assert.equal(fs.existsSync(path.join(dir, 'lock')), false, 'lock released');
    // Reopened by the next config node (a redeploy): same data.
    const c = openStore(runtime, { kind: 'file', dir });
    assert.equal(await c.get('k'), 'v');
    assert.notEqual(c.backendId, a.backendId);
    await c.close();
  });

  it('a handle opened while the last one is closing waits for the close, then reopens the directory', async function () {
    const runtime = {};
    const dir = tmp();
    const a = openStore(runtime, { kind: 'file', dir });
    await a.set('x', '1');
    const closing = a.close();
    const b = openStore(runtime, { kind: 'file', dir });
    assert.equal(await b.get('x'), '1');
    await closing;
    await b.close();
  });

  it('keeps runtimes apart: a second runtime on the same directory is refused with the lock error', async function () {
    const dir = tmp();
    const a = openStore({}, { kind: 'file', dir });
    await a.backend();
    const b = openStore({}, { kind: 'file', dir });
    await assert.rejects(b.get('x'), /already open in this process/);
    await a.close();
    await b.close();
  });

  it('prefixes keys per handle and strips the prefix from scan results', async function () {
    const runtime = {};
    const dir = tmp();
    const a = openStore(runtime, { kind: 'file', dir, keyPrefix: 'A:' });
    const b = openStore(runtime, { kind: 'file', dir, keyPrefix: 'B:' });
    await a.set('k', '1');
    await b.set('k', '2');
    assert.equal(await a.get('k'), '1');
    assert.deepEqual(await b.scan(''), [['k', '2']]);
    const raw = (await a.backend()) as FileStore;
    assert.deepEqual((await raw.scan('')).sort(), [
      ['A:k', '1'],
      ['B:k', '2'],
    ]);
    await a.close();
    await b.close();
  });

  it('retain() keeps the backend open after the config node let go', async function () {
    const runtime = {};
    const dir = tmp();
    const cfg = openStore(runtime, { kind: 'file', dir });
    const outbox = cfg.retain();
    await cfg.close();
    await outbox.set('still', 'open');
    await outbox.close();
    assert.equal(fs.existsSync(path.join(dir, 'lock')), false);
  });

  it('one memory store per runtime that outlives every handle (a redeploy keeps it)', async function () {
    const runtime = {};
    const a = openStore(runtime, { kind: 'memory' });
    await a.set('k', 'v');
    await a.close();
    const b = openStore(runtime, { kind: 'memory' });
    assert.equal(await b.get('k'), 'v');
    assert.equal(await openStore({}, { kind: 'memory' }).get('k'), undefined, 'another runtime');
  });

  it('a handle whose backend cannot open rejects every call with the clear open error, and the next open tries again', async function () {
    const runtime = {};
    const file = path.join(tmp(), 'file');
    fs.writeFileSync(file, 'x');
    const warnings: string[] = [];
    const bad = openStore(
      runtime,
      { kind: 'file', dir: path.join(file, 'sub') },
      { onWarning: (m) => warnings.push(m) },
    );
    await assert.rejects(bad.get('k'), /cannot create the file store directory/);
    assert.match(warnings.join(), /cannot create/);
    assert.ok(bad.openError);
    await bad.close();
    const good = openStore(runtime, { kind: 'file', dir: path.join(path.dirname(file), 'ok') });
    await good.set('k', 'v');
    await good.close();
  });

  it("says why a store cannot open in the config node's language, with every placeholder filled and no secret", async function () {
    const dir = tmp();
    const held = await FileStore.open(dir);
    const errors: unknown[] = [];
    errors.push(await FileStore.open(dir).catch((e: unknown) => e)); // locked in this process
    const file = path.join(tmp(), 'not-a-dir');
    fs.writeFileSync(file, 'x');
    errors.push(await FileStore.open(path.join(file, 'sub')).catch((e: unknown) => e)); // mkdir fails
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    errors.push(
      await RedisStore.open({
        url: `redis://127.0.0.1:${port}`,
        password: 'pw-never-shown',
        connectTimeoutMs: 1000,
      }).catch((e: unknown) => e),
    );
    errors.push(await RedisStore.open({ url: 'http://nope' }).catch((e: unknown) => e));
    errors.push(new Error('something else'));
    await held.close();
    for (const type of ['wechat-config', 'cxone-dfo-config']) {
      const texts: Record<string, string[]> = {};
      for (const lang of ['en-US', 'zh-CN']) {
        const RED = { _: catalog(type, lang) };
        texts[lang] = errors.map((e) => storeOpenMessage(RED, type, e));
      }
      const [locked, mkdir, unreachable, url, other] = texts['en-US'];
      assert.match(locked, /is already open in this Node-RED/);
      assert.ok(locked.includes(dir));
      assert.match(mkdir, /cannot be created \(ENOTDIR\)/);
      assert.match(unreachable, new RegExp(`Cannot reach Redis at 127\\.0\\.0\\.1:${port} \\(`));
      assert.match(url, /The Redis URL is not valid/);
      assert.match(other, /could not be opened: something else/);
      assert.match(texts['zh-CN'][2], /无法连接 127\.0\.0\.1:\d+ 上的 Redis/);
      for (const t of [...texts['en-US'], ...texts['zh-CN']]) {
        assert.doesNotMatch(t, /__\w+__|pw-never-shown/, t);
      }
    }
  });

  it('picks the backend from the editor properties: file by default with a user directory, memory without', function () {
    assert.deepEqual(storeSpecFor({ id: 'c', type: 't' }, {}, '/home/u/.node-red'), {
      kind: 'file',
      dir: path.join('/home/u/.node-red', 'wechat-cxone', 'default'),
      keyPrefix: '',
    });
    assert.deepEqual(storeSpecFor({ id: 'c', type: 't' }, {}, undefined), { kind: 'memory', keyPrefix: '' });
    assert.deepEqual(storeSpecFor({ id: 'c', type: 't', store: 'memory' }, {}, '/x'), {
      kind: 'memory',
      keyPrefix: '',
    });
    assert.deepEqual(
      storeSpecFor(
        { id: 'c', type: 't', store: 'redis', redisUrl: ' redis://10.0.0.2:6380/1 ', keyPrefix: 'prod:' },
        { redisPassword: 'pw' },
        '/x',
      ),
      { kind: 'redis', url: 'redis://10.0.0.2:6380/1', password: 'pw', keyPrefix: 'prod:' },
    );
    assert.deepEqual(storeSpecFor({ id: 'c', type: 't', store: 'redis' }, {}, '/x'), {
      kind: 'redis',
      url: 'redis://127.0.0.1:6379',
      password: undefined,
      keyPrefix: '',
    });
    assert.equal(storeSpecFor({ id: 'c', type: 't', store: 'bogus' }, {}, '/x').kind, 'file');
  });
});
