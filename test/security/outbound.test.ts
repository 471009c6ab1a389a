/**
 * Outbound fetches under the rules of lib/http/outbound-guard.ts, where the pack fetches a URL someone else named:
 * attachment URLs wechat-out uploads to WeChat (from CXone agents), the video_url WeChat answers media/get with
 * (wechat-in's media links), and attachment URLs cxone-dfo-out uploads to CXone. https only, public addresses only,
 * the hosts the config allows, every redirect checked, size and time limits; the config's "Local URLs"
 * (`allowPrivateNetwork`) opens http:// and private addresses (the sandbox), `allowedHosts` narrows the hosts.
 * Real loopback servers count what reaches them, so "refused" also means "nothing was sent".
 */
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { outboundPolicyOf } from '../../lib/http/outbound-guard';
import { MediaService } from '../../lib/wechat/api/media';
import { WechatApiError } from '../../lib/wechat/api/http';
import { MemoryStore } from '../../lib/store/memory';
import { WechatSimulator } from '../../sandbox/sim/wechat';
import { CxoneSimulator } from '../../sandbox/sim/cxone';
import { loadFlow, startHelper, stopHelper, type TestRuntime } from '../harness/helper';

const OPENID = 'oSecOutbound00000000000001';
const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(3000, 7)]);

interface Files {
  url: string;
  hits: string[];
  close(): Promise<void>;
}

/** A loopback file server; `routes` answer by path, and every request is counted. */
async function files(
  routes: Record<string, (res: http.ServerResponse, url: string) => void>,
): Promise<Files> {
  const hits: string[] = [];
  const srv = http.createServer((req, res) => {
    hits.push(req.url ?? '');
    const r = routes[(req.url ?? '').split('?')[0]];
    if (r) r(res, url);
    else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  return {
    url,
    hits,
    close: async () => {
      srv.closeAllConnections();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

function service(outbound: ReturnType<typeof outboundPolicyOf>, fetchTimeoutMs = 5000): MediaService {
  return new MediaService({
    appId: 'wx5ec0000000000009',
    store: new MemoryStore(),
    call: () => Promise.reject(new Error('no upload in this test')),
    outbound,
    fetchTimeoutMs,
  });
}

async function refusal(p: Promise<unknown>): Promise<WechatApiError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof WechatApiError, String(err));
    return err;
  }
  throw new Error('expected a refusal');
}

describe('security: outbound fetches (attachment URLs, WeChat video links)', function () {
  this.timeout(30_000);

  it('parses the node properties: Local URLs opens http and private addresses; hosts are a list', () => {
    assert.deepEqual(outboundPolicyOf({}), { allowHttp: false, allowPrivateNetwork: false });
    assert.deepEqual(
      outboundPolicyOf({ allowPrivateNetwork: 'true', allowedHosts: ' .qpic.cn, Files.Example.org  x.y' }),
      {
        allowHttp: true,
        allowPrivateNetwork: true,
        allowedHosts: ['.qpic.cn', 'files.example.org', 'x.y'],
      },
    );
  });

  describe('wechat-out attachment URLs (MediaService)', () => {
    let f: Files;
    before(async () => {
      f = await files({
        '/pic.jpg': (res) => {
          res.writeHead(200, { 'Content-Type': 'image/jpeg' });
          res.end(JPEG);
        },
        '/to-localhost': (res, url) => {
          res.writeHead(302, { Location: url.replace('127.0.0.1', 'localhost') + '/pic.jpg' });
          res.end();
        },
        '/loop': (res) => {
          res.writeHead(302, { Location: '/loop' });
          res.end();
        },
        '/huge': (res) => {
          res.writeHead(200, { 'Content-Type': 'video/mp4' });
          res.end(Buffer.alloc(11 * 1024 * 1024));
        },
        '/slow': (res) => {
          res.writeHead(200, { 'Content-Type': 'image/jpeg' });
          res.write(JPEG.subarray(0, 10)); // and never more
        },
      });
    });
    after(() => f.close());

    it('by default fetches nothing over http, from a private address, with credentials or another scheme', async () => {
      const svc = service(outboundPolicyOf({}));
      try {
        const before = f.hits.length;
        for (const url of [
          `${f.url}/pic.jpg?access_token=SECRET-IN-QUERY`,
          f.url.replace('http:', 'https:') + '/pic.jpg',
          'https://169.254.169.254/latest/meta-data/',
          'https://[::1]/x',
          'https://user:pw@example.com/a.jpg',
          'file:///etc/passwd',
          'gopher://127.0.0.1:25/x',
        ]) {
          const e = await refusal(svc.upload({ url }));
          assert.equal(e.code, 'refused-url', url);
          assert.equal(e.retryable, false);
          assert.doesNotMatch(e.message, /SECRET-IN-QUERY|pw@/);
        }
        const nothing = await refusal(svc.upload({ url: 'not a url' }));
        assert.equal(nothing.code, 'bad-url');
        assert.equal(f.hits.length, before, 'no request reached the server');
      } finally {
        svc.close();
      }
    });

    it('fetches only from the allowed hosts, and checks every redirect again', async () => {
      const svc = service(outboundPolicyOf({ allowPrivateNetwork: true, allowedHosts: '127.0.0.1' }));
      try {
        const other = await refusal(svc.upload({ url: 'http://localhost:9/pic.jpg' }));
        assert.match(other.message, /localhost is not in the allowed hosts/);
        const before = f.hits.length;
        const hop = await refusal(svc.upload({ url: `${f.url}/to-localhost` }));
        assert.equal(hop.code, 'refused-url');
        assert.match(hop.message, /localhost is not in the allowed hosts/);
        assert.deepEqual(f.hits.slice(before), ['/to-localhost'], 'the redirect target was not asked');
        const loop = await refusal(svc.upload({ url: `${f.url}/loop` }));
        assert.match(loop.message, /too many redirects/);
      } finally {
        svc.close();
      }
    });

    it('cuts a file larger than WeChat takes, and a download that stalls, with words', async () => {
      const svc = service(outboundPolicyOf({ allowPrivateNetwork: true }), 1500);
      try {
        const big = await refusal(svc.upload({ url: `${f.url}/huge` }));
        assert.equal(big.code, 'too-large');
        const t0 = Date.now();
        const slow = await refusal(svc.upload({ url: `${f.url}/slow` }));
        assert.ok(Date.now() - t0 < 5000, 'the time limit holds');
        assert.match(slow.message, /could not be downloaded from 127\.0\.0\.1/);
      } finally {
        svc.close();
      }
    });

    it('the public-address check happens at connect time: a name that resolves to loopback is refused', async () => {
      const svc = service(outboundPolicyOf({ allowedHosts: 'localhost' }));
      try {
        const before = f.hits.length;
        const port = new URL(f.url).port;
        const e = await refusal(svc.upload({ url: `https://localhost:${port}/pic.jpg` }));
        assert.equal(e.code, 'refused-url');
        assert.match(e.message, /non-public address/);
        assert.equal(f.hits.length, before);
      } finally {
        svc.close();
      }
    });
  });

  describe('in a Node-RED runtime', () => {
    let wx: WechatSimulator;
    let rt: TestRuntime | undefined;
    let f: Files;
    before(async () => {
      await startHelper();
      wx = new WechatSimulator({ followers: [OPENID], mode: 'safe' });
      await wx.start();
      wx.userWrote(OPENID);
      f = await files({
        '/pic.jpg': (res) => {
          res.writeHead(200, { 'Content-Type': 'image/jpeg' });
          res.end(JPEG);
        },
      });
    });
    after(async () => {
      await f.close();
      await wx.stop();
      await stopHelper();
    });
    afterEach(async () => {
      await rt?.close();
      rt = undefined;
    });

    async function wechatOut(cfg: Record<string, unknown>): Promise<{ ok: any[]; failed: any[] }> {
      rt = await loadFlow(
        [
          { id: 'tab', type: 'tab' },
          { id: 'wc', type: 'wechat-config', appId: wx.appId, apiBase: wx.url, store: 'memory', ...cfg },
          { id: 'wo', type: 'wechat-out', z: 'tab', wechat: 'wc', wires: [['ok'], ['failed']] },
          { id: 'ok', type: 'helper', z: 'tab' },
          { id: 'failed', type: 'helper', z: 'tab' },
        ],
        { wc: { appSecret: wx.appSecret } },
      );
      const got = { ok: [] as any[], failed: [] as any[] };
      rt.getNode('ok').on('input', (m: any) => got.ok.push(m));
      rt.getNode('failed').on('input', (m: any) => got.failed.push(m));
      return got;
    }

    const image = (url: string): Record<string, unknown> => ({
      direction: 'outbound',
      channel: 'cxone',
      account: 'chat_1',
      conversationId: OPENID,
      messageId: 'img-' + randomBytes(4).toString('hex'),
      timestamp: Date.now(),
      from: { id: 'agent-1' },
      type: 'image',
      attachments: [{ url, name: 'pic.jpg', mimeType: 'image/jpeg' }],
    });

    async function until(cond: () => boolean, what: string): Promise<void> {
      const end = Date.now() + 10_000;
      while (!cond()) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }

    it('wechat-out refuses an agent attachment on a local http URL (output 2, in words); Local URLs allows it', async () => {
      const before = f.hits.length;
      const got = await wechatOut({});
      rt!.getNode('wo').receive({ payload: image(`${f.url}/pic.jpg`) });
      await until(() => got.failed.length === 1, 'the failure');
      assert.equal(got.failed[0].delivery.status, 'failed');
      assert.match(got.failed[0].delivery.error.message, /not fetched: only https URLs are fetched/);
      assert.equal(f.hits.length, before, 'the file server was not asked');
      await rt!.close();
      const open = await wechatOut({ allowPrivateNetwork: true });
      rt!.getNode('wo').receive({ payload: image(`${f.url}/pic.jpg`) });
      await until(() => open.ok.length === 1, 'the delivery');
      assert.equal(f.hits.length, before + 1);
    });

    it("wechat-in's media link refuses a video_url on a private address that is not the API host (502); Local URLs allows it", async () => {
      const mp4 = Buffer.concat([Buffer.from('....ftypisom'), randomBytes(5000)]);
      for (const [allow, status] of [
        [false, 502],
        [true, 200],
      ] as [boolean, number][]) {
        const a = wx.account();
        // The API through "localhost": the simulator's video_url names 127.0.0.1, another origin.
        const apiBase = a.apiBase.replace('127.0.0.1', 'localhost');
        rt = await loadFlow(
          [
            { id: 'tab', type: 'tab' },
            {
              id: 'wc',
              type: 'wechat-config',
              appId: a.appId,
              apiBase,
              store: 'memory',
              allowPrivateNetwork: allow,
            },
            { id: 'wi', type: 'wechat-in', z: 'tab', wechat: 'wc', path: '/sec/out/wx', wires: [['out']] },
            { id: 'out', type: 'helper', z: 'tab' },
          ],
          { wc: a.credentials },
        );
        const got: any[] = [];
        rt.getNode('out').on('input', (m: any) => got.push(m));
        const id = wx.api.addMedia(mp4, { type: 'video', contentType: 'video/mp4' });
        const rec = await wx.push.push(`${rt.url}/sec/out/wx`, wx.push.video(OPENID, id));
        assert.equal(rec.attempts[0].body, 'success');
        await until(() => got.length === 1, 'the video message');
        const res = await fetch(got[0].payload.attachments[0].url);
        assert.equal(res.status, status, `allowPrivateNetwork ${allow}`);
        if (status === 200) assert.deepEqual(Buffer.from(await res.arrayBuffer()), mp4);
        else assert.doesNotMatch(await res.text(), /127\.0\.0\.1|access_token/);
        await rt.close();
        rt = undefined;
      }
    });

    it('cxone-dfo-out leaves out an attachment from a host not in its Media hosts, and says so to the agent', async () => {
      const cx = new CxoneSimulator({ channels: ['chat_1'] });
      await cx.start();
      try {
        const s = cx.integration();
        rt = await loadFlow(
          [
            { id: 'tab', type: 'tab' },
            { id: 'cc', type: 'cxone-dfo-config', authIssuer: s.authIssuer, apiBase: '', store: 'memory' },
            {
              id: 'co',
              type: 'cxone-dfo-out',
              z: 'tab',
              cxone: 'cc',
              channelId: 'chat_1',
              allowPrivateNetwork: true,
              allowedHosts: 'files.example.org',
              wires: [['ok'], ['failed']],
            },
            { id: 'ok', type: 'helper', z: 'tab' },
            { id: 'failed', type: 'helper', z: 'tab' },
          ],
          {
            cc: {
              ...s.credentials,
              boxClientId: 'b',
              boxClientSecret: 'sec-outbound-box-secret',
              jwtSecret: '',
            },
          },
        );
        const ok: any[] = [];
        rt.getNode('ok').on('input', (m: any) => ok.push(m));
        const before = f.hits.length;
        rt.getNode('co').receive({
          payload: {
            direction: 'inbound',
            channel: 'wechat',
            account: 'gh_5ec000000009',
            conversationId: OPENID,
            messageId: 'm-' + randomBytes(4).toString('hex'),
            timestamp: Date.now(),
            from: { id: OPENID },
            type: 'image',
            attachments: [{ url: `${f.url}/pic.jpg`, mimeType: 'image/jpeg', name: 'pic.jpg' }],
          },
        });
        await until(() => ok.length === 1, 'the message in CXone');
        const m = cx.dfo.messages('chat_1')[0];
        assert.equal(m.attachments.length, 0);
        assert.match(
          m.text,
          /pic\.jpg could not be forwarded: host 127\.0\.0\.1 is not in the allowed hosts/,
        );
        assert.equal(f.hits.length, before, 'the file server was not asked');
      } finally {
        await rt?.close();
        rt = undefined;
        await cx.stop();
      }
    });
  });
});
