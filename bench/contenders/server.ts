/**
 * Contenders (c) and (d): the bridge as a small server, in its own process.
 *
 *   node bench/contenders/server.js --stack express|bare --direction wechat|cxone --far http://127.0.0.1:PORT
 *        [--ack-first]
 *
 * Both serve the same paths as the pack (`/wechat/webhook`, `/integration/box/2.0/channel/:channelId/outbound`),
 * with a body limit, and do the same work (work.ts). They tell the driver their port over IPC.
 */
import * as http from 'node:http';
import express from 'express';
import { BOX_PATH, WECHAT_PATH } from '../common';
import { Work, type Answer } from './work';

const BODY_LIMIT = 256 * 1024;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const stack = arg('stack') === 'express' ? 'express' : 'bare';
const direction = arg('direction') === 'cxone' ? 'cxone' : 'wechat';
const farUrl = arg('far') ?? 'http://127.0.0.1:0';
const work = new Work({ farUrl, ackFirst: process.argv.includes('--ack-first') });
const replyRoute = new RegExp(`^${BOX_PATH}/2\\.0/channel/([^/]+)/outbound$`);

function write(res: http.ServerResponse, a: Answer): void {
  res.writeHead(a.status, {
    'Content-Type': a.contentType ?? 'text/plain; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(a.body)),
  });
  res.end(a.body);
}

function bare(): http.Server {
  return http.createServer((req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q >= 0 ? url.slice(0, q) : url;
    const isPush = direction === 'wechat' && path === WECHAT_PATH;
    const isReply = direction === 'cxone' && replyRoute.test(path);
    if (!isPush && !isReply) {
      write(res, { status: 404, body: 'not found' });
      return;
    }
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      write(res, { status: 405, body: 'method not allowed' });
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > BODY_LIMIT) over = true;
      else chunks.push(c);
    });
    req.on('end', () => {
      if (over) {
        write(res, { status: 413, body: 'too large' });
        return;
      }
      const body = Buffer.concat(chunks).toString('utf8');
      const p = isPush
        ? work.wechatPush(new URLSearchParams(q >= 0 ? url.slice(q + 1) : ''), body)
        : work.cxoneReply(req.headers.authorization, body);
      p.then(
        (a) => write(res, a),
        () => write(res, { status: 500, body: 'internal error' }),
      );
    });
  });
}

function viaExpress(): http.Server {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  if (direction === 'wechat') {
    app.post(WECHAT_PATH, express.text({ type: () => true, limit: BODY_LIMIT }), (req, res) => {
      const url = req.originalUrl;
      const q = url.indexOf('?');
      work
        .wechatPush(
          new URLSearchParams(q >= 0 ? url.slice(q + 1) : ''),
          typeof req.body === 'string' ? req.body : '',
        )
        .then(
          (a) =>
            res
              .status(a.status)
              .type(a.contentType ?? 'text/plain')
              .send(a.body),
          () => res.status(500).send('internal error'),
        );
    });
  } else {
    app.post(
      `${BOX_PATH}/2.0/channel/:channelId/outbound`,
      express.json({ limit: BODY_LIMIT }),
      (req, res) => {
        work.cxoneReply(req.headers.authorization, req.body).then(
          (a) =>
            res
              .status(a.status)
              .type(a.contentType ?? 'application/json')
              .send(a.body),
          () => res.status(500).json({ error: 'internal' }),
        );
      },
    );
  }
  return http.createServer(app);
}

async function main(): Promise<void> {
  await work.init(direction);
  const server = stack === 'express' ? viaExpress() : bare();
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => {
    const a = server.address();
    process.send?.({ ready: true, port: typeof a === 'object' && a ? a.port : 0 });
  });
  const stop = (): void => {
    server.close();
    server.closeAllConnections();
    work.close();
    setTimeout(() => process.exit(0), 100).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err: unknown) => {
  console.error(
    `contender ${stack}/${direction} could not start: ${err instanceof Error ? err.message : String(err)}`,
  );
  process.exit(1);
});
