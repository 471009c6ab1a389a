/**
 * The file store's part of a message, alone: `node <build>/bench/store-path.js` (not part of the unit tests).
 *
 * A WeChat push through the pack with the default file store makes six store changes: the inbound journal's entry,
 * the outbox job (with the msg kept as JSON text), the journal's completion, the attempt's state, and the job's and
 * state's removal. This runs exactly those, through the pack's own Journal, outbox and FileStore, at a steady rate
 * (open loop, as messages arrive), with an attempt that answers after 5 ms, and reports the process's CPU per
 * message (user and system, all threads: the durable writes' system calls count) and the number of writes to the
 * log. Each setting runs in a fresh child process, the settings interleaved round by round (the machines this
 * runs on change speed between minutes); the table gives medians.
 *
 *   --settings a,b          the FileStore settings to compare, each `d<ms>` (deferMs: how long the outbox's and the
 *                           journal completion's writes may wait for an acknowledgement's) and/or `g<ms>`
 *                           (groupCommitMs), e.g. `d0g2` (default d0,d5: no deferring, and the store's default)
 *   --rate N                messages per second (default 500)
 *   --messages N            measured messages per trial, after 2,000 of warm-up (default 10000)
 *   --rounds N              (default 3)
 */
import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { completeJournal, Journal } from '../lib/journal';
import { createOutbox } from '../lib/outbox';
import { JsonText } from '../lib/outbox/codec';
import { FileStore } from '../lib/store/file';

interface Setting {
  name: string;
  groupCommitMs: number;
  deferMs: number;
}

function parseSetting(spec: string): Setting {
  const g = /g(\d+(?:\.\d+)?)/.exec(spec);
  const d = /d(\d+(?:\.\d+)?)/.exec(spec);
  if (!g && !d) throw new Error(`setting "${spec}": expected d<ms> and/or g<ms>`);
  return { name: spec, groupCommitMs: g ? Number(g[1]) : 0, deferMs: d ? Number(d[1]) : 5 };
}

interface Trial {
  setting: string;
  userUs: number;
  sysUs: number;
  cpuUs: number;
  writesPerMsg: number;
  /** Median time from the journal append's start until it was durable (what an acknowledgement waits for), ms. */
  appendP50Ms: number;
  appendP99Ms: number;
}

/** A push's msg as wechat-in emits it (text message, Chinese content), about 1.5 KB of JSON. */
function messageOf(i: number): Record<string, unknown> {
  const openid = `oBench_${(i % 5000).toString(36).padStart(8, '0')}_user`;
  const text = `你好，请问我的订单什么时候发货？谢谢 hello ${i}`;
  const msgId = String(24412345678900000 + i);
  return {
    _msgid: `m${i.toString(16)}`,
    payload: { type: 'text', text, openid },
    topic: openid,
    wechat: {
      appId: 'wx1234567890abcdef',
      openid,
      toUserName: 'gh_0123456789ab',
      msgType: 'text',
      msgId,
      createTime: 1795345158,
      xml:
        `<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><FromUserName><![CDATA[${openid}]]></FromUserName>` +
        `<CreateTime>1795345158</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[${text}]]></Content>` +
        `<MsgId>${msgId}</MsgId></xml>`,
      query: {
        signature: 'f21891de399b4e33a1a93c9a7b8a8f0b2e0f0a11',
        timestamp: '1795345158',
        nonce: '1234567890',
        openid,
      },
    },
    cxone: {
      thread: { idOnExternalPlatform: openid, threadName: 'WeChat' },
      message: {
        idOnExternalPlatform: `wechat:gh_0123456789ab:${msgId}`,
        direction: 'inbound',
        messageContent: { type: 'TEXT', payload: { text } },
      },
      endUser: { idOnExternalPlatform: openid, firstName: 'WeChat user' },
    },
  };
}

async function trial(setting: Setting, rate: number, messages: number): Promise<Trial> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxcx-store-path-'));
  // Writes to the log, counted where the store makes them (one per batch, unless the system takes less).
  const fsMod = require('node:fs') as typeof fs; // eslint-disable-line @typescript-eslint/no-require-imports
  let writes = 0;
  for (const name of ['write', 'writev'] as const) {
    const orig = fsMod[name] as (...a: unknown[]) => void;
    (fsMod as unknown as Record<string, unknown>)[name] = (...args: unknown[]): void => {
      writes++;
      orig(...args);
    };
  }
  const store = await FileStore.open(dir, {
    groupCommitMs: setting.groupCommitMs,
    deferMs: setting.deferMs,
  });
  const runtime = {};
  const journal = new Journal({ runtime, name: 'wxcx:wechat:wx1234567890abcdef:in:bench', store });
  const outbox = createOutbox<{ body: unknown; msg: JsonText }>({ name: 'wxcx:cxone:out:bench', store });
  let delivered = 0;
  outbox.start(
    async () => {
      await new Promise((r) => setTimeout(r, 5));
      return { kind: 'delivered' };
    },
    () => {
      delivered++;
    },
  );
  const appendMs: number[] = [];
  const one = async (i: number, timed: boolean): Promise<void> => {
    const msg = messageOf(i);
    const t = performance.now();
    const ref = await journal.append(String(i), msg);
    if (timed) appendMs.push(performance.now() - t);
    msg._wxcx = { journal: ref };
    const id = `msg:chat_1:wechat:${i}`;
    await outbox.enqueue({
      id,
      key: String(msg.topic),
      payload: { body: (msg.cxone as { message: unknown }).message, msg: new JsonText(JSON.stringify(msg)) },
    });
    if (await completeJournal(runtime, ref)) outbox.release(id);
  };
  const run = async (from: number, n: number, timed: boolean): Promise<void> => {
    const t0 = performance.now();
    const all: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const wait = t0 + (i * 1000) / rate - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      all.push(one(from + i, timed));
    }
    await Promise.all(all);
    while (delivered < from + n) await new Promise((r) => setTimeout(r, 5));
  };
  await run(0, 2000, false);
  const w0 = writes;
  const c0 = process.cpuUsage();
  await run(2000, messages, true);
  const c = process.cpuUsage(c0);
  const w = writes - w0;
  await outbox.stop();
  await journal.stop();
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
  appendMs.sort((a, b) => a - b);
  return {
    setting: setting.name,
    userUs: c.user / messages,
    sysUs: c.system / messages,
    cpuUs: (c.user + c.system) / messages,
    writesPerMsg: w / messages,
    appendP50Ms: appendMs[Math.floor(appendMs.length * 0.5)],
    appendP99Ms: appendMs[Math.floor(appendMs.length * 0.99)],
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const arg = (name: string, def: string): string => {
    const i = argv.indexOf(name);
    return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : def;
  };
  if (argv[0] === '--child') {
    const t = await trial(parseSetting(argv[1]), Number(argv[2]), Number(argv[3]));
    process.send?.(t);
    return;
  }
  if (argv.includes('--help')) {
    console.log(fs.readFileSync(__filename, 'utf8').split('*/')[0]);
    return;
  }
  const settings = arg('--settings', 'd0,d5').split(',');
  settings.forEach(parseSetting);
  const rate = Number(arg('--rate', '500'));
  const messages = Number(arg('--messages', '10000'));
  const rounds = Number(arg('--rounds', '3'));
  console.log(
    `store path: ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, ${process.version}; ${rate} msg/s, ` +
      `${messages} messages a trial, ${rounds} round(s), load average ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
  );
  const results = new Map<string, Trial[]>(settings.map((g) => [g, []]));
  for (let r = 0; r < rounds; r++) {
    // Alternate the order each round.
    const order = r % 2 ? [...settings].reverse() : settings;
    for (const g of order) {
      const t = await new Promise<Trial>((resolve, reject) => {
        const child = fork(__filename, ['--child', String(g), String(rate), String(messages)], {
          stdio: 'inherit',
        });
        child.once('message', (m) => resolve(m as Trial));
        child.once('exit', (code) => (code ? reject(new Error(`trial exited with ${code}`)) : undefined));
      });
      results.get(g)?.push(t);
      console.log(
        `  round ${r + 1}: ${g}  CPU ${t.cpuUs.toFixed(0)} µs/msg (user ${t.userUs.toFixed(0)}, ` +
          `system ${t.sysUs.toFixed(0)})  ${t.writesPerMsg.toFixed(2)} writes/msg  append p50 ${t.appendP50Ms.toFixed(2)} ms ` +
          `p99 ${t.appendP99Ms.toFixed(2)} ms`,
      );
    }
  }
  console.log(
    '\n| setting | CPU µs/msg | user | system | log writes per message | journal append p50 / p99 (ms) |',
  );
  console.log('|---:|---:|---:|---:|---:|---:|');
  for (const [g, ts] of results) {
    const m = (f: (t: Trial) => number, d = 0): string => median(ts.map(f)).toFixed(d);
    console.log(
      `| ${g} | ${m((t) => t.cpuUs)} | ${m((t) => t.userUs)} | ${m((t) => t.sysUs)} | ${m((t) => t.writesPerMsg, 2)} | ` +
        `${m((t) => t.appendP50Ms, 2)} / ${m((t) => t.appendP99Ms, 2)} |`,
    );
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
