/**
 * wechat-in's media links end to end, against the whole WeChat simulator (API side and push side): a user's image,
 * voice and video arrive as attachment URLs on the node, and fetching those URLs streams the file from WeChat's
 * `media/get` through the config node's API client (token and all); video through its `video_url`; media that
 * WeChat has dropped after 3 days answers 410. Also: the catalogs of wechat-in have the same keys and help
 * structure in both languages.
 */
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { WechatSimulator } from '../../sandbox/sim/wechat';
import { repoRoot } from '../harness/paths';
import { loadFlow, startHelper, stopHelper, type TestRuntime } from '../harness/helper';

const OPENID = 'oMediaUser0000000000000001';

describe('wechat-in media links, against the WeChat simulator', function () {
  this.timeout(30_000);
  let sim: WechatSimulator;
  let rt: TestRuntime | undefined;
  before(async () => {
    await startHelper();
    sim = new WechatSimulator({ followers: [OPENID], mode: 'safe' });
    await sim.start();
  });
  after(async () => {
    await sim.stop();
    await stopHelper();
  });
  afterEach(async () => {
    await rt?.close();
    rt = undefined;
  });

  async function load(): Promise<any[]> {
    const a = sim.account();
    rt = await loadFlow(
      [
        { id: 'wc', type: 'wechat-config', name: 'Sim', appId: a.appId, apiBase: a.apiBase },
        { id: 'wi', type: 'wechat-in', wechat: 'wc', path: '/wx', wires: [['out']] },
        { id: 'out', type: 'helper' },
      ],
      { wc: a.credentials },
    );
    const got: any[] = [];
    rt.getNode('out').on('input', (m: any) => got.push(m));
    return got;
  }

  async function receive(got: any[], xml: string): Promise<any> {
    const n = got.length;
    const rec = await sim.push.push(`${rt?.url}/wx`, xml);
    assert.equal(rec.attempts[0].body, 'success');
    const t0 = Date.now();
    while (got.length === n) {
      if (Date.now() - t0 > 3000) throw new Error('nothing emitted');
      await new Promise((r) => setTimeout(r, 10));
    }
    return got[n];
  }

  it('an image a user sent is served at its link, bytes and type as WeChat has them', async () => {
    const got = await load();
    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(200_000)]);
    const id = sim.api.addMedia(jpeg, { type: 'image', contentType: 'image/jpeg' });
    const m = await receive(got, sim.push.image(OPENID, id));
    const att = m.payload.attachments[0];
    assert.equal(att.mediaId, id);
    const res = await fetch(att.url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/jpeg');
    assert.match(String(res.headers.get('content-disposition')), /^inline; filename=/);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), jpeg);
  });

  it('voice with its AMR type; video through the video_url WeChat answers with', async () => {
    const got = await load();
    const amr = Buffer.concat([Buffer.from('#!AMR\n'), randomBytes(3000)]);
    const vid = sim.api.addMedia(amr, { type: 'voice', contentType: 'audio/amr' });
    const v = await receive(got, sim.push.voice(OPENID, vid, { recognition: '你好' }));
    assert.equal(v.payload.text, '你好');
    const vr = await fetch(v.payload.attachments[0].url);
    assert.equal(vr.headers.get('content-type'), 'audio/amr');
    assert.deepEqual(Buffer.from(await vr.arrayBuffer()), amr);

    const mp4 = Buffer.concat([Buffer.from('....ftypisom'), randomBytes(50_000)]);
    const mid = sim.api.addMedia(mp4, { type: 'video', contentType: 'video/mp4' });
    const m = await receive(got, sim.push.video(OPENID, mid));
    assert.equal(m.payload.type, 'video');
    const r = await fetch(m.payload.attachments[0].url);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'video/mp4');
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), mp4);
  });

  it('media WeChat no longer has (3 days later) answers 410 with words, not a broken file', async () => {
    const got = await load();
    const id = sim.api.addMedia(randomBytes(100), { type: 'image', contentType: 'image/png' });
    const m = await receive(got, sim.push.image(OPENID, id));
    sim.api.advance(3 * 24 * 3600 * 1000 + 1000);
    const res = await fetch(m.payload.attachments[0].url);
    assert.equal(res.status, 410);
    assert.match(await res.text(), /expired/);
  });
});

describe('wechat-in catalogs', () => {
  const dir = path.join(repoRoot, 'nodes', 'locales');
  const keys = (o: any, p = ''): string[] =>
    Object.entries(o).flatMap(([k, v]) => (v && typeof v === 'object' ? keys(v, `${p}${k}.`) : [`${p}${k}`]));
  it('en-US and zh-CN have the same message keys and the same placeholders', () => {
    const en = JSON.parse(fs.readFileSync(path.join(dir, 'en-US', 'wechat-in.json'), 'utf8'));
    const zh = JSON.parse(fs.readFileSync(path.join(dir, 'zh-CN', 'wechat-in.json'), 'utf8'));
    assert.deepEqual(keys(zh).sort(), keys(en).sort());
    const get = (o: any, k: string): string => k.split('.').reduce((x, p) => x[p], o);
    for (const k of keys(en)) {
      const ph = (s: string): string[] => (s.match(/__\w+__/g) ?? []).sort();
      assert.deepEqual(ph(get(zh, k)), ph(get(en, k)), k);
    }
  });
  it('the help has the same sections and message properties in both languages', () => {
    const shape = (lang: string): string[] => {
      const html = fs.readFileSync(path.join(dir, lang, 'wechat-in.html'), 'utf8');
      return [...html.matchAll(/<(h3|dt)>([^<]*)|<dt>(\w+)/g)].map((m) =>
        m[1] === 'dt' ? `dt:${m[2].trim()}` : 'h3',
      );
    };
    assert.deepEqual(shape('zh-CN'), shape('en-US'));
    assert.equal(shape('en-US').filter((s) => s === 'h3').length, 4);
  });
});
