/**
 * The example flows of the Import menu, each deployed by the sandbox in a real Node-RED against the simulators,
 * doing what their comment says. (No browser here: the sandbox's own API plays the WeChat user and the agent.)
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildRoot, repoRoot } from '../harness/paths';
import { startNodeRed, type NodeRedProcess } from '../harness/process';
import { nodeRedBin } from '../harness/runtime';
import type { FlowNode } from '../../sandbox/flows';
import { Sandbox } from '../../sandbox/sandbox';

async function until<T>(what: string, f: () => T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function start(example: string, transform?: (flow: FlowNode[]) => FlowNode[]): Promise<Sandbox> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxcx-example-'));
  const sb = new Sandbox({
    port: 0,
    nodeRedPort: 0,
    wechatPort: 0,
    cxonePort: 0,
    userDir: path.join(dir, 'node-red'),
    example,
    transform,
    redJs: nodeRedBin(),
    nodeBin: process.execPath,
    buildRoot,
    log: () => undefined,
  });
  await sb.start();
  return sb;
}

function textsIn(sb: Sandbox, channelId: string): string[] {
  return sb.cxone.dfo.messages(channelId).map((m) => m.text);
}

describe('the example flows in examples/', () => {
  const files = fs.readdirSync(path.join(repoRoot, 'examples')).filter((f) => f.endsWith('.json'));
  const flows = files.map((f) => ({
    f,
    nodes: JSON.parse(fs.readFileSync(path.join(repoRoot, 'examples', f), 'utf8')) as FlowNode[],
  }));

  it('each starts with a comment that says what to fill in, and explains the steps', () => {
    for (const { f, nodes } of flows) {
      assert.equal(nodes[0].type, 'comment', `${f} starts with a comment`);
      assert.match(String(nodes[0].name), /^Fill in:/, f);
      assert.ok(String(nodes[0].info).split('\n').length >= 4, `${f}: the comment's info gives the steps`);
    }
  });

  it('together they use every node type of the pack; the bridge has no function node', () => {
    const used = new Set(flows.flatMap(({ nodes }) => nodes.map((n) => n.type)));
    for (const t of [
      'wechat-config',
      'wechat-in',
      'wechat-out',
      'cxone-dfo-config',
      'cxone-dfo-in',
      'cxone-dfo-out',
    ])
      assert.ok(used.has(t), `${t} is in an example`);
    for (const { f, nodes } of flows)
      assert.ok(!nodes.some((n) => n.type === 'function'), `${f} has no function node`);
  });

  it('every wire points at a node of the same example, and ids are unique', () => {
    for (const { f, nodes } of flows) {
      const ids = new Set(nodes.map((n) => n.id));
      assert.equal(ids.size, nodes.length, `${f}: unique ids`);
      for (const n of nodes)
        for (const w of (n.wires as string[][] | undefined) ?? [])
          for (const t of w) assert.ok(ids.has(t), `${f}: ${n.id} is wired to a missing node ${t}`);
    }
  });

  it('in the bridge, both outputs of wechat-out go to a cxone-dfo-out (delivery status to the agent)', () => {
    const bridge = flows.find((x) => x.f === 'WeChat to CXone bridge.json')!.nodes;
    const out = bridge.find((n) => n.type === 'wechat-out')!;
    const targets = (out.wires as string[][]).map((w) =>
      w.map((id) => bridge.find((n) => n.id === id)?.type),
    );
    assert.deepEqual(targets, [['cxone-dfo-out'], ['cxone-dfo-out']]);
  });
});

describe('the example flows, deployed against the simulators', function () {
  this.timeout(120_000);
  let sb: Sandbox | undefined;
  afterEach(async () => {
    await sb?.stop();
    sb = undefined;
  });

  it('Keyword auto-reply: known questions answered at once in the push, a follow welcomed, the rest to an agent', async () => {
    sb = await start('Keyword auto-reply with hand-over to an agent');
    const s = sb;
    const u = s.user.openid;
    const hours = await s.wechat.push.push(
      s.webhookUrl,
      s.wechat.push.text(u, 'What are your opening hours?'),
      {
        mode: 'safe',
      },
    );
    assert.equal(hours.acknowledged, true, hours.problems.join('; '));
    assert.equal(hours.reply?.encrypted, true, 'a passive reply, encrypted in safe mode');
    assert.match(String(hours.reply?.fields.Content), /Monday to Saturday/);

    const where = await s.wechat.push.push(s.webhookUrl, s.wechat.push.text(u, '你们的地址在哪？'), {
      mode: 'plain',
    });
    assert.match(String(where.reply?.fields.Content), /上海市示例路/);

    const follow = await s.wechat.push.push(s.webhookUrl, s.wechat.push.event(u, 'subscribe'), {
      mode: 'safe',
    });
    assert.match(String(follow.reply?.fields.Content), /Welcome/);

    const other = await s.wechat.push.push(s.webhookUrl, s.wechat.push.text(u, 'My lamp arrived broken'), {
      mode: 'safe',
    });
    assert.equal(other.acknowledged, true);
    assert.equal(other.reply, undefined, 'no automatic answer');
    await until('the message at the agent', () => textsIn(s, s.channelId).includes('My lamp arrived broken'));
    assert.ok(
      !textsIn(s, s.channelId).some((t) => /opening hours|地址/.test(t)),
      'questions answered automatically are not handed to an agent',
    );
    assert.equal(s.wechat.api.sentTo(u).length, 0, 'automatic answers did not use customer-service messages');

    const r = await s.agentReply(u, 'Sorry to hear that, we will send a new one.');
    assert.equal(r.status, 200, r.error);
    await until('the reply at the user', () => s.wechat.api.sentTo(u).length === 1);
    await until('the status in CXone', () =>
      s.cxone.dfo.messages(s.channelId).find((m) => m.direction === 'outbound' && m.statuses.length),
    );
  });

  it('Two Official Accounts: each account’s messages reach its own channel, and replies go back by channel', async () => {
    sb = await start('Two Official Accounts to two CXone channels');
    const s = sb;
    const u = s.user.openid;
    const shop = `${s.nodeRedUrl}/wechat/shop`;
    const support = `${s.nodeRedUrl}/wechat/support`;
    assert.equal((await s.wechat.push.verifyUrl(shop)).ok, true);
    assert.equal((await s.wechat.push.verifyUrl(support)).ok, true);
    await s.wechat.push.push(shop, s.wechat.push.text(u, 'Do you have the lamp in blue?'), { mode: 'safe' });
    await s.wechat.push.push(support, s.wechat.push.text(u, 'My invoice is wrong'), { mode: 'safe' });
    await until(
      'both messages in CXone',
      () => textsIn(s, 'wechat_shop').length && textsIn(s, 'wechat_support').length,
    );
    assert.deepEqual(textsIn(s, 'wechat_shop'), ['Do you have the lamp in blue?']);
    assert.deepEqual(textsIn(s, 'wechat_support'), ['My invoice is wrong']);

    for (const [channel, text] of [
      ['wechat_support', 'We will correct the invoice.'],
      ['wechat_shop', 'Yes, in blue too.'],
    ] as const) {
      const r = await s.agentReply(u, text, undefined, channel);
      assert.equal(r.status, 200, r.error);
      await until(`the ${channel} reply at the user`, () =>
        s.wechat.api.sentTo(u).some((b) => (b.text as { content?: string })?.content === text),
      );
      const m = await until(`the status of the ${channel} reply`, () =>
        s.cxone.dfo.messages(channel).find((x) => x.direction === 'outbound' && x.statuses.length),
      );
      assert.equal(m.statuses[m.statuses.length - 1].status, 'delivered');
    }
  });

  it('Error handling: CXone out of reach → the user is told; 45015 → the agent sees it and a template goes out', async () => {
    sb = await start('Error handling', (flow) =>
      flow.map((n) => {
        // Give up on CXone after two attempts (the default tries for over a minute).
        if (n.id === 'e4cxoneout000001') return { ...n, maxAttempts: 2 };
        if (n.type === 'change' && n.name === 'template instead') {
          const rules = (n.rules as { p: string; to: string }[]).map((r) =>
            r.p === 'wechatMessage'
              ? { ...r, to: r.to.replace('"template_id":""', '"template_id":"tmpl-agent-replied"') }
              : r,
          );
          return { ...n, rules };
        }
        return n;
      }),
    );
    const s = sb;
    const u = s.user.openid;
    s.wechat.api.addTemplate('tmpl-agent-replied');

    s.cxone.dfo.down(60_000);
    const rec = await s.wechat.push.push(s.webhookUrl, s.wechat.push.text(u, 'Hello?'), { mode: 'safe' });
    assert.equal(rec.acknowledged, true, 'WeChat is answered at once even while CXone is down');
    const sorry = await until('the apology', () =>
      s.wechat.api
        .sentTo(u)
        .find((b) => /cannot be reached/.test(String((b.text as { content?: string })?.content))),
    );
    assert.ok(sorry);
    s.cxone.dfo.clearInjections();

    await s.wechat.push.push(s.webhookUrl, s.wechat.push.text(u, 'Anyone there now?'), { mode: 'safe' });
    await until('the message at the agent', () => textsIn(s, s.channelId).includes('Anyone there now?'));
    s.jumpHours(49);
    const r = await s.agentReply(u, 'Sorry for the wait!');
    assert.equal(r.status, 200, r.error);
    const failed = await until('the failed status in CXone', () =>
      s.cxone.dfo
        .messages(s.channelId)
        .find((m) => m.direction === 'outbound' && m.statuses.some((x) => x.status === 'failed')),
    );
    assert.match(String(failed.statuses.find((x) => x.status === 'failed')?.reason), /45015/);
    const tmpl = await until('the template message', () =>
      s.wechat.api.templates.find((t) => t.body.touser === u),
    );
    assert.equal(tmpl.body.template_id, 'tmpl-agent-replied');
  });

  it('a Node-RED of one’s own (the pack as from the palette) pointed at the simulators with the settings shown', async () => {
    let nr: NodeRedProcess | undefined;
    try {
      nr = await startNodeRed({ flows: [{ id: 'mytab', type: 'tab', label: 'My flow' }] });
      sb = new Sandbox({ port: 0, wechatPort: 0, cxonePort: 0, nodeRedUrl: nr.url, log: () => undefined });
      const s = sb;
      await s.start();
      // What the page and the terminal show, entered in the example's config nodes as a user would.
      const shown = s.ownNodeRedSettings();
      const wx = shown['wechat-config'];
      const cx = shown['cxone-dfo-config'];
      const example = JSON.parse(
        fs.readFileSync(path.join(repoRoot, 'examples', 'WeChat to CXone bridge.json'), 'utf8'),
      ) as FlowNode[];
      const flow = example.map((n) => {
        if (n.type === 'wechat-config') return { ...n, appId: wx.AppID, apiBase: wx['API host'] };
        if (n.type === 'cxone-dfo-config') return { ...n, authIssuer: cx['Auth issuer'], apiBase: '' };
        if (n.type === 'cxone-dfo-out')
          return {
            ...n,
            z: 'mytab',
            channelId: shown['cxone-dfo-out']['Channel id'],
            allowPrivateNetwork: true,
          };
        return 'wires' in n ? { ...n, z: 'mytab' } : n;
      });
      const ids = (t: string): string => example.find((n) => n.type === t)!.id;
      await nr.deploy([{ id: 'mytab', type: 'tab', label: 'My flow' }, ...flow], {
        [ids('wechat-config')]: {
          appSecret: wx.AppSecret,
          token: wx.Token,
          encodingAESKey: wx.EncodingAESKey,
        },
        [ids('cxone-dfo-config')]: {
          clientId: cx['Client id'],
          clientSecret: cx['Client secret'],
          accessKeyId: cx['Access key id'],
          accessKeySecret: cx['Access key secret'],
          boxClientId: cx['Box client id'],
          boxClientSecret: cx['Box client secret'],
          jwtSecret: cx['Token signing key'],
        },
      });
      assert.equal(
        (await s.wechat.push.verifyUrl(s.webhookUrl)).ok,
        true,
        'the webhook answers the verification',
      );
      s.userText('Hello from my own Node-RED');
      await until('the message at the agent', () =>
        textsIn(s, s.channelId).includes('Hello from my own Node-RED'),
      );
      const r = await s.agentReply(s.user.openid, 'Hello back');
      assert.equal(r.status, 200, r.error);
      await until('the reply at the user', () => s.wechat.api.sentTo(s.user.openid).length === 1);
    } finally {
      await sb?.stop();
      sb = undefined;
      await nr?.stop();
    }
  });
});
