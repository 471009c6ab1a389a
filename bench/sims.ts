/**
 * The WeChat and CXone simulators (sandbox/sim) in a process of their own, for the token test: the pack's token
 * managers talk to them over loopback, and the simulators count the token requests they answered.
 *
 * IPC: {cmd:'info'} → urls and the settings a config needs; {cmd:'counts'} → token fetches and messages received;
 *      {cmd:'open', openids} → those users wrote to the account (opens their 48-hour window); {cmd:'stop'}.
 */
import { CxoneSimulator } from '../sandbox/sim/cxone';
import { WechatSimulator } from '../sandbox/sim/wechat';
import { CXONE } from './common';

const wechat = new WechatSimulator({ strictOpenids: false });
const cxone = new CxoneSimulator({
  channels: [CXONE.channelId],
  duplicates: 'idempotent',
  fetchAttachments: false,
});

async function main(): Promise<void> {
  await wechat.start();
  await cxone.start();
  process.on('message', (m: { cmd?: string; id?: number; openids?: string[] }) => {
    const reply = (data: unknown): void => {
      process.send?.({ id: m.id, data });
    };
    switch (m.cmd) {
      case 'info':
        reply({ wechat: wechat.account(), cxone: cxone.integration(false) });
        break;
      case 'open':
        for (const o of m.openids ?? []) wechat.userWrote(o);
        reply(true);
        break;
      case 'counts':
        reply({
          wechatTokenFetches: wechat.api.calls.filter((c) => /\/cgi-bin\/(stable_)?token$/.test(c.path))
            .length,
          wechatSends: wechat.api.calls.filter(
            (c) => c.path === '/cgi-bin/message/custom/send' && c.errcode === 0,
          ).length,
          wechatRefused: wechat.api.calls.filter(
            (c) => c.path === '/cgi-bin/message/custom/send' && c.errcode !== 0,
          ).length,
          cxoneTokenFetches: cxone.dfo.tokenFetches,
          cxoneMessages: cxone.dfo.createRequests.filter((r) => r.status === 200).length,
          cxoneRefused: cxone.dfo.createRequests.filter((r) => r.status !== 200).length,
        });
        break;
      case 'stop':
        void Promise.all([wechat.stop(), cxone.stop()]).then(() => {
          reply(true);
          setTimeout(() => process.exit(0), 50);
        });
        break;
      default:
        reply(null);
    }
  });
  process.send?.({ ready: true, port: 0 });
}

main().catch((err: unknown) => {
  console.error(`simulators could not start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
