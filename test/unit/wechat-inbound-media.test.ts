/**
 * Serving inbound media through signed links (lib/wechat/inbound/media-link.ts `serveMedia`) over real HTTP:
 * streaming without buffering, video through its `video_url` (with a redirect), WeChat's "expired" answer as 410,
 * failures as 502/504, HEAD.
 */
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough, Readable } from 'node:stream';
import {
  serveMedia,
  type MediaClaims,
  type MediaFetcher,
  type ServeMediaOptions,
} from '../../lib/wechat/inbound/media-link';

const claims = (kind: MediaClaims['kind'] = 'image'): MediaClaims => ({ mediaId: 'MID', kind, exp: 2e9 });

async function serve(
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void | Promise<void>,
): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => void handler(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

class WechatApiLikeError extends Error {
  constructor(readonly errcode: number) {
    super(`WeChat /cgi-bin/media/get: refused (${errcode})`);
  }
}

describe('serving media links', function () {
  this.timeout(15_000);
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0)) await c();
  });

  async function link(
    fetcher: MediaFetcher,
    kind: MediaClaims['kind'] = 'image',
    errors: string[] = [],
    extra: ServeMediaOptions = {},
  ): Promise<string> {
    const s = await serve((req, res) =>
      serveMedia(
        res,
        claims(kind),
        fetcher,
        { timeoutMs: 1500, idleTimeoutMs: 400, onError: (r) => errors.push(r), ...extra },
        req.method === 'HEAD',
      ),
    );
    closers.push(() => s.close());
    return s.url;
  }

  it('streams the file with its type, length and a safe Content-Disposition', async () => {
    const data = Buffer.alloc(300_000, 7);
    const url = await link((id) => {
      assert.equal(id, 'MID');
      return Promise.resolve({
        kind: 'file',
        stream: Readable.from([data.subarray(0, 100_000), data.subarray(100_000)]),
        contentType: 'image/jpeg',
        filename: 'MID "x".jpg',
        contentLength: data.length,
      });
    });
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/jpeg');
    assert.equal(res.headers.get('content-length'), String(data.length));
    assert.match(
      String(res.headers.get('content-disposition')),
      /^inline; filename="MID_x_.jpg"; filename\*=UTF-8''/,
    );
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), data);
  });

  it('sends the first bytes before the download from WeChat has finished (no buffering)', async () => {
    const src = new PassThrough();
    const url = await link(
      () => Promise.resolve({ kind: 'file', stream: src, contentType: 'audio/amr' }),
      'voice',
    );
    src.write(Buffer.from('#!AMR\n'));
    const res = await fetch(url);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    assert.equal(Buffer.from(first.value!).toString(), '#!AMR\n');
    assert.equal(res.headers.get('content-disposition')?.startsWith('inline; filename="voice.amr"'), true);
    src.end(Buffer.from('rest'));
    let rest = '';
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      rest += Buffer.from(r.value).toString();
    }
    assert.equal(rest, 'rest');
  });

  it('video: fetches the video_url WeChat answers with (following a redirect) and streams it', async () => {
    const cdn = await serve((req, res) => {
      if (req.url === '/v/start') {
        res.writeHead(302, { Location: '/v/file.mp4' });
        res.end();
        return;
      }
      res.writeHead(200, { 'Content-Type': 'video/mp4', 'Content-Length': '11' });
      res.end('MP4-CONTENT');
    });
    closers.push(() => cdn.close());
    // The CDN here is on loopback: allowed only because the policy says so (as the sandbox's does).
    const url = await link(
      () => Promise.resolve({ kind: 'video', videoUrl: `${cdn.url}/v/start` }),
      'video',
      [],
      { outbound: { allowPrivateNetwork: true } },
    );
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'video/mp4');
    assert.match(String(res.headers.get('content-disposition')), /filename="video\.mp4"/);
    assert.equal(await res.text(), 'MP4-CONTENT');
  });

  it('video: a video_url on loopback (or redirecting there) is refused by default, and nothing is fetched', async () => {
    let hits = 0;
    const cdn = await serve((_req, res) => {
      hits++;
      res.writeHead(200, { 'Content-Type': 'video/mp4' });
      res.end('SECRET-INTERNAL');
    });
    closers.push(() => cdn.close());
    const errors: string[] = [];
    const url = await link(
      () => Promise.resolve({ kind: 'video', videoUrl: `${cdn.url}/v/file.mp4` }),
      'video',
      errors,
    );
    const res = await fetch(url);
    assert.equal(res.status, 502);
    assert.doesNotMatch(await res.text(), /SECRET-INTERNAL/);
    assert.equal(hits, 0);
    assert.equal(errors.length, 1);
  });

  it('WeChat saying the media is gone (40007, 46001) is 410; other refusals 502; no answer in time 504', async () => {
    for (const code of [40007, 46001]) {
      const url = await link(() => Promise.reject(new WechatApiLikeError(code)));
      const res = await fetch(url);
      assert.equal(res.status, 410);
      assert.match(await res.text(), /expired/);
    }
    const errors: string[] = [];
    const url = await link(() => Promise.reject(new WechatApiLikeError(40001)), 'image', errors);
    assert.equal((await fetch(url)).status, 502);
    assert.deepEqual(errors, ['WeChat did not provide the media (40001)']);
    const slow = await link(
      (_id, opts) =>
        new Promise((_, reject) =>
          opts?.signal?.addEventListener('abort', () => reject(new Error('aborted'))),
        ),
    );
    const t0 = Date.now();
    assert.equal((await fetch(slow)).status, 504);
    assert.ok(Date.now() - t0 < 5000);
  });

  it('a video_url that answers an error is 502', async () => {
    const cdn = await serve((_req, res) => {
      res.writeHead(404);
      res.end();
    });
    closers.push(() => cdn.close());
    const url = await link(() => Promise.resolve({ kind: 'video', videoUrl: `${cdn.url}/gone` }), 'video');
    assert.equal((await fetch(url)).status, 502);
    const bad = await link(() => Promise.resolve({ kind: 'video', videoUrl: 'file:///etc/passwd' }), 'video');
    assert.equal((await fetch(bad)).status, 502);
  });

  it('HEAD answers the headers without the body and releases the download', async () => {
    let destroyed = false;
    const src = new PassThrough();
    src.on('close', () => (destroyed = true));
    const url = await link(() =>
      Promise.resolve({
        kind: 'file',
        stream: src,
        contentType: 'image/png',
        contentLength: 5,
      }),
    );
    const res = await fetch(url, { method: 'HEAD' });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/png');
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(destroyed);
  });

  it('a client that goes away stops the download from WeChat', async () => {
    let closed = false;
    const src = new PassThrough();
    src.on('close', () => (closed = true));
    const url = await link(
      () => Promise.resolve({ kind: 'file', stream: src, contentType: 'video/mp4' }),
      'video',
    );
    src.write(Buffer.alloc(1000));
    const ac = new AbortController();
    const res = await fetch(url, { signal: ac.signal });
    await (res.body as ReadableStream<Uint8Array>).getReader().read();
    ac.abort();
    const t0 = Date.now();
    while (!closed && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 20));
    assert.ok(closed);
  });

  it('a download that stalls in the middle is cut, and the slow start limit does not cut a long transfer', async () => {
    const stalled = new PassThrough();
    let stalledClosed = false;
    stalled.on('close', () => (stalledClosed = true));
    const errors: string[] = [];
    const url = await link(
      () => Promise.resolve({ kind: 'file', stream: stalled, contentType: 'video/mp4' }),
      'video',
      errors,
    );
    stalled.write(Buffer.alloc(10));
    const res = await fetch(url);
    await assert.rejects(res.arrayBuffer());
    assert.ok(stalledClosed);
    assert.deepEqual(errors, ['the media transfer broke off']);
    // 2 s of steady trickle (longer than the 1.5 s start limit, no pause longer than the 0.4 s idle limit).
    const trickle = new PassThrough();
    const slowUrl = await link(
      () => Promise.resolve({ kind: 'file', stream: trickle, contentType: 'video/mp4' }),
      'video',
    );
    let n = 0;
    const iv = setInterval(() => {
      trickle.write(Buffer.from('x'));
      if (++n === 20) {
        clearInterval(iv);
        trickle.end();
      }
    }, 100);
    const body = await (await fetch(slowUrl)).text();
    assert.equal(body, 'x'.repeat(20));
  });
});
