/**
 * The lean HTTP client of the hot path (lib/http/lean.ts) against real servers on loopback: what it sends, the
 * deadline, the answer's size limit (also after decompression), cancellation, and errors that carry a code only.
 */
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as zlib from 'node:zlib';
import { LeanHttpError, leanRequest, type LeanRequest } from '../../lib/http/lean';

describe('lean HTTP client', function () {
  this.timeout(20_000);
  let server: http.Server;
  let base = '';
  const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };
  const seen: { method?: string; url?: string; headers: http.IncomingHttpHeaders; body: string }[] = [];

  before(async function () {
    server = http.createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (c: Buffer) => parts.push(c));
      req.on('end', () => {
        seen.push({
          method: req.method,
          url: req.url,
          headers: req.headers,
          body: Buffer.concat(parts).toString(),
        });
        const u = new URL(req.url ?? '/', 'http://x');
        switch (u.pathname) {
          case '/json':
            res.writeHead(201, { 'Content-Type': 'application/json', 'Retry-After': '7' });
            res.end(JSON.stringify({ ok: true, echo: Buffer.concat(parts).toString() }));
            return;
          case '/gzip':
            res.writeHead(200, { 'Content-Encoding': 'gzip' });
            res.end(zlib.gzipSync(Buffer.from(u.searchParams.get('text') ?? '')));
            return;
          case '/bomb':
            res.writeHead(200, { 'Content-Encoding': 'gzip' });
            res.end(zlib.gzipSync(Buffer.alloc(5_000_000)));
            return;
          case '/big':
            res.end(Buffer.alloc(200_000, 'a'));
            return;
          case '/bad-gzip':
            res.writeHead(200, { 'Content-Encoding': 'gzip' });
            res.end('not gzip at all');
            return;
          case '/slow':
            setTimeout(() => res.end('late'), 2_000);
            return;
          default:
            res.writeHead(404);
            res.end();
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async function () {
    agents.http.destroy();
    agents.https.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const call = (o: Partial<LeanRequest> & { url: string }): ReturnType<typeof leanRequest> =>
    leanRequest({ method: 'GET', timeoutMs: 5_000, maxResponseBytes: 100_000, agents, ...o });

  async function code(p: Promise<unknown>): Promise<string> {
    try {
      await p;
    } catch (err) {
      assert.ok(err instanceof LeanHttpError, String(err));
      assert.doesNotMatch(err.message, /127\.0\.0\.1|secret-token/, 'no URL in the message');
      return err.code;
    }
    throw new Error('expected a failure');
  }

  it('sends method, path with query, headers and a Content-Length body; answers status, headers and bytes', async function () {
    const body = JSON.stringify({ text: '你好 👍🏽' });
    const res = await call({
      method: 'POST',
      url: `${base}/json?access_token=secret-token&x=1`,
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer t' },
      body,
    });
    assert.equal(res.status, 201);
    assert.equal(res.headers['retry-after'], '7');
    assert.deepEqual(JSON.parse(res.body.toString()), { ok: true, echo: body });
    const s = seen[seen.length - 1];
    assert.equal(s.method, 'POST');
    assert.equal(s.url, '/json?access_token=secret-token&x=1');
    assert.equal(s.headers['content-length'], String(Buffer.byteLength(body)));
    assert.equal(s.headers.authorization, 'Bearer t');
    assert.equal(s.body, body);
    // Any status is an answer, not an error.
    assert.equal((await call({ url: `${base}/nothing` })).status, 404);
  });

  it('decompresses an answer a server compressed unasked, within the size limit', async function () {
    const res = await call({ url: `${base}/gzip?text=${encodeURIComponent('{"errcode":0}')}` });
    assert.equal(res.body.toString(), '{"errcode":0}');
    assert.equal(await code(call({ url: `${base}/bomb` })), 'ERR_FR_MAX_CONTENT_LENGTH_EXCEEDED');
    assert.equal(await code(call({ url: `${base}/bad-gzip` })), 'ERR_BAD_RESPONSE');
  });

  it('refuses an answer larger than allowed', async function () {
    assert.equal(await code(call({ url: `${base}/big` })), 'ERR_FR_MAX_CONTENT_LENGTH_EXCEEDED');
    assert.equal((await call({ url: `${base}/big`, maxResponseBytes: 200_000 })).body.length, 200_000);
  });

  it('gives up at the deadline (ETIMEDOUT) and when cancelled (ERR_CANCELED), before and during the call', async function () {
    const t0 = Date.now();
    assert.equal(await code(call({ url: `${base}/slow`, timeoutMs: 300 })), 'ETIMEDOUT');
    assert.ok(Date.now() - t0 < 1_500);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    assert.equal(await code(call({ url: `${base}/slow`, signal: ac.signal })), 'ERR_CANCELED');
    assert.equal(await code(call({ url: `${base}/json`, signal: ac.signal })), 'ERR_CANCELED');
  });

  it('names a network failure by its code only', async function () {
    const s = http.createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as AddressInfo).port;
    await new Promise((r) => s.close(r));
    assert.equal(
      await code(call({ url: `http://127.0.0.1:${port}/x?access_token=secret-token` })),
      'ECONNREFUSED',
    );
    assert.equal(await code(call({ url: 'ftp://127.0.0.1/x' })), 'ERR_BAD_REQUEST');
    assert.equal(await code(call({ url: 'not a url' })), 'ERR_INVALID_URL');
  });
});
