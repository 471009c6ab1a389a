/**
 * The CXone simulator: the platform side the pack calls (dfo-api.ts: auth, discovery, DFO 3.0) and, once
 * attached, the box caller (CXone calling the pack's integration box: agent replies, typing; box-caller.ts,
 * owned by the box work). One object for the tests and the sandbox: `start()` → its URL, `stop()`.
 */
import { CxoneBoxCaller, type AgentReply, type BoxAnswer, type BoxCallerOptions } from './box-caller';
import { CxoneDfoSim, type ConsoleMessage, type CxoneDfoSimOptions } from './dfo-api';

export { CxoneBoxCaller } from './box-caller';
export type { AgentReply, BoxAnswer, BoxCallerOptions } from './box-caller';

export { CxoneDfoSim, EXTERNAL_PLATFORM_ICONS } from './dfo-api';
export type {
  ConsoleAttachment,
  ConsoleMessage,
  CxoneDfoSimOptions,
  RequestRecord,
  SenderActionRecord,
  SimAccessKey,
  StatusRecord,
  TokenRequestRecord,
} from './dfo-api';

export type CxoneSimulatorOptions = CxoneDfoSimOptions;

/** What a `cxone-dfo-config` pointed at the simulator needs (authIssuer, and credentials the sim accepts). */
export interface SimIntegrationSettings {
  authIssuer: string;
  apiBase: string;
  credentials: { clientId: string; clientSecret: string; accessKeyId: string; accessKeySecret: string };
}

export class CxoneSimulator {
  /** The platform side (auth, discovery, DFO API, agent console). */
  readonly dfo: CxoneDfoSim;

  constructor(opts: CxoneSimulatorOptions = {}) {
    this.dfo = new CxoneDfoSim(opts);
  }

  /** CXone calling the pack's integration box, once `attachBox` was called. */
  box: CxoneBoxCaller | null = null;

  get url(): string {
    return this.dfo.url;
  }

  async start(port = 0): Promise<string> {
    return this.dfo.start(port);
  }

  async stop(): Promise<void> {
    this.box?.stop();
    this.box = null;
    await this.dfo.stop();
  }

  /** Points the simulated CXone at an integration box (the BYOC settings entered in CXone). */
  attachBox(opts: BoxCallerOptions): CxoneBoxCaller {
    this.box?.stop();
    this.box = new CxoneBoxCaller(opts);
    return this.box;
  }

  /**
   * An agent replies in a thread: CXone calls the box, and a reply the box accepts (200 with its
   * idOnExternalPlatform) appears in the agent console, where delivery statuses reported later attach to it.
   */
  async agentReply(r: AgentReply): Promise<{ answer: BoxAnswer; message?: ConsoleMessage }> {
    if (!this.box) throw new Error('no integration box attached (attachBox)');
    const answer = await this.box.sendReply(r);
    if (answer.status !== 200 || !answer.body || typeof answer.body !== 'object') return { answer };
    const b = answer.body as { idOnExternalPlatform?: unknown; message?: { idOnExternalPlatform?: unknown } };
    const id =
      typeof b.message?.idOnExternalPlatform === 'string'
        ? b.message.idOnExternalPlatform
        : b.idOnExternalPlatform;
    if (typeof id !== 'string' || !id) return { answer };
    const message = this.dfo.recordOutbound(r.channelId ?? this.box.channelId, r.threadId, {
      idOnExternalPlatform: id,
      text: r.text ?? '',
      attachments: r.attachments,
    });
    return { answer, message };
  }

  /** The agent starts or stops typing in a thread (CXone → box). */
  agentTyping(threadId: string, typing: boolean, channelId?: string): Promise<BoxAnswer> {
    if (!this.box) throw new Error('no integration box attached (attachBox)');
    return this.box.senderAction(threadId, typing, channelId);
  }

  /** Settings for a cxone-dfo-config that talks to this simulator; `discover` leaves apiBase empty. */
  integration(discover = true): SimIntegrationSettings {
    const k = this.dfo.opts.accessKeys[0];
    return {
      authIssuer: this.dfo.url,
      apiBase: discover ? '' : this.dfo.apiBase,
      credentials: {
        clientId: this.dfo.opts.clientId,
        clientSecret: this.dfo.opts.clientSecret,
        accessKeyId: k.id,
        accessKeySecret: k.secret,
      },
    };
  }
}
