/**
 * The WeChat simulator: the API side the pack calls (api.ts: token, custom/send, typing, template, media) and the
 * push side that plays WeChat's server calling the pack's webhook (push.ts, owned by the wechat-in work). One object
 * for the tests and the sandbox: `start()` → the API's URL, `stop()`.
 *
 * The two sides meet in one place: when the push side delivers a user's message or event to the webhook, the API
 * side opens that user's 48-hour window (5 replies) or 1-minute grant (3 replies), as WeChat does.
 */
import { randomBytes } from 'node:crypto';
import { WechatApiSim, type WechatApiSimOptions } from './api';
import { WechatPushSimulator, type SimPushMode, type UserInteraction } from './push';

export { WechatApiSim, parseMultipart } from './api';
export type { CallRecord, InboxMessage, Injection, InjectionKind, WechatApiSimOptions } from './api';
export { WechatPushSimulator } from './push';

export interface WechatSimulatorOptions extends WechatApiSimOptions {
  /** The account's original id, gh_… (ToUserName of pushes). */
  originalId?: string;
  /** The webhook Token. */
  token?: string;
  /** 43 characters; generated when absent. */
  encodingAESKey?: string;
  /** Push mode (default plain). */
  mode?: SimPushMode;
  /** Push directory of fixtures (default test/fixtures/wechat). */
  fixturesDir?: string;
}

/** What a `wechat-config` pointed at the simulator needs. */
export interface SimAccountSettings {
  appId: string;
  apiBase: string;
  credentials: { appSecret: string; token: string; encodingAESKey: string };
}

/** A 43-character EncodingAESKey. */
function newAesKey(): string {
  return randomBytes(32)
    .toString('base64')
    .replace(/[^A-Za-z0-9]/g, 'A')
    .slice(0, 43);
}

export class WechatSimulator {
  /** The API side (what the pack calls). */
  readonly api: WechatApiSim;
  /** The push side (WeChat calling the pack's webhook). */
  readonly push: WechatPushSimulator;

  constructor(opts: WechatSimulatorOptions = {}) {
    this.api = new WechatApiSim(opts);
    this.push = new WechatPushSimulator({
      account: {
        appId: this.api.appId,
        originalId: opts.originalId ?? 'gh_3ab2c1d0e9f8',
        token: opts.token ?? randomBytes(8).toString('hex'),
        encodingAESKey: opts.encodingAESKey ?? newAesKey(),
        mode: opts.mode ?? 'plain',
      },
      // A push that reaches the webhook opens the user's reply window on the API side.
      onUserMessage: (openid: string, kind: UserInteraction) => {
        if (kind === 'message') this.api.onUserMessage(openid);
        else this.api.onUserEvent(openid, kind === 'menu' ? 'click' : kind);
      },
      ...(opts.fixturesDir ? { fixturesDir: opts.fixturesDir } : {}),
    });
  }

  get url(): string {
    return this.api.url;
  }

  get appId(): string {
    return this.api.appId;
  }

  get appSecret(): string {
    return this.api.appSecret;
  }

  async start(port = 0): Promise<string> {
    return this.api.start(port);
  }

  async stop(): Promise<void> {
    this.push.close();
    await this.api.stop();
  }

  /** A user wrote to the account (without a push through the webhook). */
  userWrote(openid: string): void {
    this.api.onUserMessage(openid);
  }

  /** Settings for a wechat-config that talks to this simulator. */
  account(): SimAccountSettings {
    const a = this.push.account;
    return {
      appId: this.api.appId,
      apiBase: this.api.url,
      credentials: { appSecret: this.api.appSecret, token: a.token, encodingAESKey: a.encodingAESKey ?? '' },
    };
  }
}
