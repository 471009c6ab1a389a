/**
 * The sandbox page's server, on 127.0.0.1 only: the static page (sandbox/page), its JSON API, and the media the
 * simulated WeChat holds (so the page can show pictures). No external resource: the page loads nothing but this.
 *
 * The API only takes `application/json` POSTs (a cross-site form cannot send one without a preflight this server
 * does not answer) and only for a Host of 127.0.0.1 or localhost (no DNS rebinding).
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import * as path from 'node:path';
import type { Sandbox } from './sandbox';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};
const BODY_LIMIT = 12 * 1024 * 1024;
const IMAGE_TYPES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/bmp']);

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
      reject(new HttpError(415, 'send JSON (Content-Type: application/json)'));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > BODY_LIMIT) {
        reject(new HttpError(413, 'body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      try {
        const v = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as unknown;
        if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
        resolve(v as Record<string, unknown>);
      } catch {
        reject(new HttpError(400, 'the body is not a JSON object'));
      }
    });
    req.on('error', reject);
  });
}

function str(v: unknown, max = 4000): string {
  return typeof v === 'string' ? v.slice(0, max) : '';
}

/** An uploaded picture `{dataBase64, mimeType}`; undefined when none was sent. */
function pictureOf(b: Record<string, unknown>): { data: Buffer; mimeType: string; name: string } | undefined {
  const d = str(b.dataBase64, BODY_LIMIT);
  if (!d) return undefined;
  const mimeType = str(b.mimeType, 100).toLowerCase();
  if (!IMAGE_TYPES.has(mimeType)) throw new HttpError(400, 'send a PNG, JPEG, GIF or BMP picture');
  const data = Buffer.from(d, 'base64');
  if (data.length === 0) throw new HttpError(400, 'the picture is empty');
  if (data.length > 10 * 1024 * 1024) throw new HttpError(413, 'WeChat takes pictures up to 10 MB');
  return { data, mimeType, name: str(b.name, 200) || 'picture' };
}

export class PageServer {
  private server: http.Server | null = null;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly sb: Sandbox,
    private readonly pageDir: string,
  ) {}

  async start(preferredPort: number): Promise<string> {
    const server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        const status = err instanceof HttpError ? err.status : 500;
        const message = err instanceof Error ? err.message : String(err);
        if (!res.headersSent) res.writeHead(status, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ error: message }));
      });
    });
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    const listen = (p: number): Promise<void> =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(p, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
    await listen(preferredPort).catch(() => listen(0));
    this.server = server;
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = null;
    for (const sock of this.sockets) sock.destroy();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  private json(res: http.ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Cache-Control': 'no-store',
      'Content-Length': String(Buffer.byteLength(text)),
    });
    res.end(text);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const host = (req.headers.host ?? '').replace(/:\d+$/, '');
    if (host !== '127.0.0.1' && host !== 'localhost' && host !== '[::1]') {
      throw new HttpError(421, 'the sandbox answers only at 127.0.0.1 or localhost');
    }
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const p = url.pathname;
    const sb = this.sb;

    if (req.method === 'GET') {
      if (p === '/api/state') {
        const since = Number(url.searchParams.get('since'));
        if (Number.isFinite(since) && since === sb.version) await sb.waitForChange(since, 15_000);
        return this.json(res, 200, sb.state());
      }
      if (p === '/api/settings') return this.json(res, 200, sb.ownNodeRedSettings());
      const media = /^\/media\/wechat\/([^/]+)$/.exec(p);
      if (media) {
        const m = sb.wechat.api.mediaOf(decodeURIComponent(media[1]));
        if (!m) throw new HttpError(404, 'no such media (WeChat keeps temporary media 3 days)');
        res.writeHead(200, { 'Content-Type': m.contentType, 'Cache-Control': 'max-age=3600' });
        res.end(m.data);
        return;
      }
      return this.file(res, p === '/' ? '/index.html' : p);
    }
    if (req.method !== 'POST') throw new HttpError(405, 'GET or POST');
    const b = await readJson(req);
    switch (p) {
      case '/api/user/text': {
        const text = str(b.text).trim();
        if (!text) throw new HttpError(400, 'write something first');
        return this.json(res, 200, sb.userText(text));
      }
      case '/api/user/image': {
        const pic = pictureOf(b);
        return this.json(res, 200, sb.userImage(pic?.data, pic?.mimeType));
      }
      case '/api/user/location':
        return this.json(res, 200, sb.userLocation());
      case '/api/agent/reply': {
        const threadId = str(b.threadId, 200);
        const text = str(b.text).trim();
        const pic = pictureOf(b);
        const withSample = b.attachSample === true;
        if (!threadId) throw new HttpError(400, 'choose a conversation');
        if (!text && !pic && !withSample) throw new HttpError(400, 'write a reply or attach a picture');
        const attachment = pic
          ? { data: pic.data, mimeType: pic.mimeType, name: pic.name }
          : withSample
            ? {}
            : undefined;
        const channelId = str(b.channelId, 200) || undefined;
        const r = await sb.agentReply(threadId, text, attachment, channelId);
        return this.json(res, r.status === 200 ? 200 : 502, r);
      }
      case '/api/agent/typing': {
        const threadId = str(b.threadId, 200);
        if (!threadId) throw new HttpError(400, 'choose a conversation');
        const channelId = str(b.channelId, 200) || undefined;
        return this.json(res, 200, { status: await sb.agentTyping(threadId, b.typing !== false, channelId) });
      }
      case '/api/clock/jump': {
        const hours = Number(b.hours);
        if (!Number.isFinite(hours) || hours <= 0 || hours > 24 * 30)
          throw new HttpError(400, 'hours: 0 to 720');
        sb.jumpHours(hours);
        return this.json(res, 200, { ok: true });
      }
      case '/api/cxone/outage': {
        const seconds = Number(b.seconds);
        if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 600)
          throw new HttpError(400, 'seconds: 1 to 600');
        sb.outage(seconds);
        return this.json(res, 200, { ok: true });
      }
      case '/api/safe-mode':
        sb.setSafeMode(b.on !== false);
        return this.json(res, 200, { ok: true });
      default:
        throw new HttpError(404, 'no such API');
    }
  }

  private file(res: http.ServerResponse, p: string): void {
    const rel = path.normalize(decodeURIComponent(p)).replace(/^([/\\])+/, '');
    const file = path.join(this.pageDir, rel);
    if (!file.startsWith(this.pageDir + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      throw new HttpError(404, 'not found');
    }
    const type = TYPES[path.extname(file)] ?? 'application/octet-stream';
    res.writeHead(200, {
      'Content-Type': type,
      'Cache-Control': 'no-cache',
      'X-Content-Type-Options': 'nosniff',
      // Only this server; pictures also from the simulators and Node-RED's media links (all on 127.0.0.1).
      'Content-Security-Policy':
        "default-src 'self'; img-src 'self' data: blob: http://127.0.0.1:* http://localhost:*; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    });
    res.end(fs.readFileSync(file));
  }
}
