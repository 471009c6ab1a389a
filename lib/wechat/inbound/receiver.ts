/**
 * The webhook's request handling, free of Node-RED: wechat-in supplies the account's secrets, the store, and
 * what to do with an accepted push.
 *
 * A POST goes through these steps, each a method here so later work can extend one without touching the others:
 *
 *   accept      signature → XML → decrypt → fields → conversation message      (or answer 4xx/5xx, emit nothing)
 *   journal     with a `journal` (wechat-in always has one): the push is made durable AND deduped in one atomic
 *               step (lib/journal `append`, keyed on FromUserName+MsgId; events: +CreateTime+Event+EventKey)
 *               before WeChat is told "success"; a failure answers 500 so WeChat retries
 *   dedupe      without a journal only: atomic setIfAbsent on the same key
 *   acknowledge answer "success" at once, or hold the response for a passive reply up to the reply budget
 *   emit        hand the push to the flow, with the journal reference
 *
 * WeChat retries a push up to three more times, sometimes while the first is still running; the journal (or the
 * dedupe step) makes each push emitted once (a retry is answered "success" and nothing else happens). Dedupe and
 * journal are one step on purpose: "marked as seen" then "journaled" would lose a push whose process died
 * between the two (WeChat's retry would be taken for a duplicate). See docs/adr/0006-nothing-lost.md.
 */
import type { ServerResponse } from 'node:http';
import type { ConversationMessage } from '../../conversation';
import { mediaType } from '../../http/body';
import type { RouteContext } from '../../http/registry';
import { sendEmpty, sendText } from '../../http/respond';
import type { Store } from '../../store/types';
import { WXBizMsgCrypt } from '../crypto';
import type { XmlLimits } from '../xml';
import { dedupeKeyOf, toConversation, type MediaRef } from './normalize';
import { openPush, PushError, verifyUrl, type OpenedPush, type PushSecrets } from './push';
import { encryptedReplyXml } from './reply';

/** Longest passive-reply budget: WeChat gives up after 5 s, and the answer must reach it before that. */
export const MAX_REPLY_TIMEOUT_MS = 4500;
/** How long a push id is remembered; WeChat's retries end within about 20 s. */
export const DEFAULT_DEDUPE_TTL_MS = 5 * 60 * 1000;
export const MIN_DEDUPE_TTL_MS = 60 * 1000;
/** Largest push accepted (bytes). A compatible-mode push is about 3× the message; real ones are < 4 KiB. */
export const PUSH_BODY_LIMIT = 256 * 1024;

export interface AcceptedPush extends OpenedPush {
  /** The conversation message (`msg.payload`). */
  payload: ConversationMessage;
  /** Hashed FromUserName+MsgId (or the event equivalent): what dedupe and the journal key on. */
  dedupeKey: string;
  /** When we received it (epoch ms). */
  receivedAt: number;
}

/** An open passive-reply window (nodes/wechat-passive.ts keeps them). */
export interface ReplyWindow {
  id: string;
  close(): void;
}

export interface ReceiverEvents {
  /** A new push was accepted (after dedupe). */
  received?(p: AcceptedPush): void;
  /** A push seen before (a retry) was answered "success" and dropped. */
  duplicate?(p: AcceptedPush): void;
  rejected?(err: PushError): void;
  /** How the push was answered: "success" (acknowledged) or "passive" (a reply from the flow). */
  answered?(p: AcceptedPush, how: 'success' | 'passive'): void;
  /** Holding the response for a passive reply (count changes). */
  holding?(count: number): void;
  /** Something went wrong that the node should raise (safe words only). */
  problem?(code: 'dedupe' | 'journal' | 'emit' | 'reply', err: unknown, p?: AcceptedPush): void;
  debug?(text: string): void;
}

export interface ReceiverOptions {
  /** The account's secrets, read at request time (they may change on redeploy). Throws PushError when missing. */
  secrets(): PushSecrets;
  store: Pick<Store, 'setIfAbsent' | 'delete'>;
  /** Store key prefix of the account, e.g. `wxcx:wechat:<appId>:`. */
  keyPrefix: string;
  dedupeTtlMs?: number;
  /**
   * Refuse (401) a push whose signed `timestamp` is further than this many seconds from our clock: a captured push
   * replayed after the dedupe window is then refused too. 0 or absent: no window (WeChat documents none, and
   * WeChat's retries of one push carry its first timestamp).
   */
  timestampWindowS?: number;
  /**
   * Refuse (401) pushes that are not encrypted. A plain-mode signature covers the Token, timestamp and nonce but not
   * the body, so whoever holds one signed query string can post any XML with it; compatible and safe mode sign the
   * ciphertext. For accounts set to compatible or safe mode in the WeChat console.
   */
  encryptedOnly?: boolean;
  /** Passive-reply budget, ms; 0 answers "success" at once. */
  replyTimeoutMs: number;
  xmlLimits?: XmlLimits;
  /** The URL that serves a media reference (signed link), given the request the push came in. */
  mediaUrl?(ref: MediaRef, ctx: RouteContext, p: OpenedPush): string | undefined;
  /**
   * Makes the push durable before it is acknowledged, and is its dedupe: resolves with a reference for the
   * emitted msg (`msg._wxcx.journal`), or null when the push was seen before (a retry: answered, not emitted).
   * A rejection answers 500 so WeChat retries. Without it, the push is deduped with `store` and not journaled.
   */
  journal?(p: AcceptedPush): Promise<string | null>;
  /**
   * Hands the push to the flow; `replyId` when a passive-reply window is open for it, `journalRef` when it was
   * journaled.
   */
  emit(p: AcceptedPush, replyId: string | undefined, journalRef?: string): void;
  /** Opens a passive-reply window; `deliver` writes the reply and says whether it could. */
  openWindow?(p: AcceptedPush, deliver: (xml: string) => boolean): ReplyWindow;
  events?: ReceiverEvents;
}

/** Media types that are never a WeChat push. */
function refusedContentType(ct: string): boolean {
  return (
    ct === 'application/json' ||
    ct.endsWith('+json') ||
    ct === 'application/x-www-form-urlencoded' ||
    ct.startsWith('multipart/')
  );
}

export class PushReceiver {
  private readonly pending = new Set<() => void>();
  private closed = false;

  constructor(private readonly o: ReceiverOptions) {}

  /** GET: URL verification. `echostr` back as text/plain, or 401 with no body. */
  handleGet = (ctx: RouteContext): void => {
    let token = '';
    try {
      token = this.o.secrets().token;
    } catch {
      /* no token: nothing verifies */
    }
    const echo = token ? verifyUrl(token, ctx.query) : null;
    if (echo === null) {
      this.o.events?.rejected?.(new PushError(401, 'signature', 'URL verification with a wrong signature'));
      sendEmpty(ctx.res, 401);
      return;
    }
    sendText(ctx.res, 200, echo, { 'Cache-Control': 'no-store' });
  };

  /** POST: a push. */
  handlePost = async (ctx: RouteContext): Promise<void> => {
    let push: AcceptedPush;
    try {
      push = this.accept(ctx);
    } catch (err) {
      this.reject(ctx.res, err);
      return;
    }
    let ref: string | undefined;
    if (this.o.journal) {
      let r: string | null;
      try {
        r = await this.journal(push);
      } catch (err) {
        // Not acknowledged and not marked as seen: WeChat's retry is taken as new.
        this.o.events?.problem?.('journal', err, push);
        sendText(ctx.res, 500, 'the push could not be stored; WeChat will retry');
        return;
      }
      if (r === null) {
        this.o.events?.duplicate?.(push);
        this.acknowledge(ctx.res);
        return;
      }
      ref = r;
    } else if (!(await this.dedupe(push))) {
      this.o.events?.duplicate?.(push);
      this.acknowledge(ctx.res);
      return;
    }
    this.o.events?.received?.(push);
    this.acknowledgeAndEmit(ctx, push, ref);
  };

  /** Step 1: authenticate, decrypt, parse, normalise. Throws PushError. */
  accept(ctx: RouteContext): AcceptedPush {
    const ct = mediaType(ctx.req);
    if (refusedContentType(ct)) {
      throw new PushError(415, 'content-type', 'a WeChat push is XML (text/xml)');
    }
    let body: Buffer | string;
    if (ctx.rawBody) body = ctx.rawBody;
    else if (typeof ctx.parsedBody === 'string' || Buffer.isBuffer(ctx.parsedBody)) body = ctx.parsedBody;
    else throw new PushError(415, 'content-type', 'a WeChat push is XML (text/xml)');
    const opened = openPush(this.o.secrets(), ctx.query, body, this.o.xmlLimits);
    if (this.o.encryptedOnly && opened.mode === 'plain')
      // After the signature, like the window: only the holder of the Token learns that plain pushes are refused.
      throw new PushError(
        401,
        'plain',
        'a plain (unencrypted) push, and this endpoint takes encrypted ones only',
      );
    const win = this.o.timestampWindowS ?? 0;
    if (win > 0) {
      // Checked after the signature, so only the holder of the Token learns that the window exists.
      const ts = Number(opened.query.timestamp);
      if (!Number.isFinite(ts) || Math.abs(Date.now() / 1000 - ts) > win)
        throw new PushError(
          401,
          'timestamp',
          `the push's timestamp is more than ${win} s from this server's clock`,
        );
    }
    const payload = toConversation(opened.fields, {
      mediaUrl: this.o.mediaUrl ? (ref) => this.o.mediaUrl?.(ref, ctx, opened) : undefined,
    });
    return { ...opened, payload, dedupeKey: dedupeKeyOf(opened.fields), receivedAt: Date.now() };
  }

  private storeKey(p: AcceptedPush): string {
    return `${this.o.keyPrefix}in:dedupe:${p.dedupeKey}`;
  }

  /** Step 2 without a journal: true the first time this push is seen (across instances sharing the store). */
  async dedupe(p: AcceptedPush): Promise<boolean> {
    const ttl = Math.max(MIN_DEDUPE_TTL_MS, this.o.dedupeTtlMs ?? DEFAULT_DEDUPE_TTL_MS);
    try {
      return await this.o.store.setIfAbsent(this.storeKey(p), String(p.receivedAt), ttl);
    } catch (err) {
      // A store that cannot answer must not lose the message: emit (at least once) and say so.
      this.o.events?.problem?.('dedupe', err, p);
      return true;
    }
  }

  /** Step 2 with a journal: durable and deduped in one; null for a push seen before. */
  async journal(p: AcceptedPush): Promise<string | null> {
    if (!this.o.journal) return null;
    return this.o.journal(p);
  }

  /** Answers "success": WeChat neither retries nor shows the user anything. */
  acknowledge(res: ServerResponse): void {
    sendText(res, 200, 'success');
  }

  /** Steps 4 and 5: acknowledge at once and emit, or emit and hold the answer for a passive reply. */
  acknowledgeAndEmit(ctx: RouteContext, p: AcceptedPush, journalRef?: string): void {
    const budget = Math.min(MAX_REPLY_TIMEOUT_MS, Math.max(0, this.o.replyTimeoutMs || 0));
    if (budget === 0 || !this.o.openWindow || this.closed) {
      this.acknowledge(ctx.res);
      this.o.events?.answered?.(p, 'success');
      this.emit(p, undefined, journalRef);
      return;
    }
    const res = ctx.res;
    let settled = false;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      this.pending.delete(expire);
      window.close();
      this.o.events?.holding?.(this.pending.size);
      return true;
    };
    const expire = (): void => {
      if (!settle()) return;
      this.acknowledge(res);
      this.o.events?.answered?.(p, 'success');
    };
    const deliver = (xml: string): boolean => {
      if (settled || res.headersSent || res.destroyed || !res.writable) return false;
      let body: string;
      try {
        body = this.sealReply(p, xml);
      } catch (err) {
        this.o.events?.problem?.('reply', err, p);
        return false;
      }
      settle();
      const buf = Buffer.from(body, 'utf8');
      res.writeHead(200, { 'Content-Type': 'text/xml; charset=utf-8', 'Content-Length': String(buf.length) });
      res.end(buf);
      this.o.events?.answered?.(p, 'passive');
      return true;
    };
    // `settle` uses `window` and `timer`; it cannot run before both exist (nothing calls it synchronously).
    const window = this.o.openWindow(p, deliver);
    this.pending.add(expire);
    this.o.events?.holding?.(this.pending.size);
    const timer = setTimeout(expire, budget);
    res.once('close', () => settle());
    this.emit(p, window.id, journalRef);
  }

  /** The reply as WeChat must receive it: encrypted and signed when the push was decrypted. */
  private sealReply(p: AcceptedPush, xml: string): string {
    if (p.mode === 'plain' || !p.decrypted) return xml;
    const s = this.o.secrets();
    const crypt = new WXBizMsgCrypt(s.token, s.encodingAESKey ?? '', s.appId);
    return encryptedReplyXml(crypt, xml);
  }

  /** Step 5: hand the push to the flow. */
  emit(p: AcceptedPush, replyId: string | undefined, journalRef?: string): void {
    try {
      this.o.emit(p, replyId, journalRef);
    } catch (err) {
      this.o.events?.problem?.('emit', err, p);
    }
  }

  private reject(res: ServerResponse, err: unknown): void {
    const e =
      err instanceof PushError ? err : new PushError(500, 'not-configured', 'the push could not be handled');
    this.o.events?.rejected?.(e);
    if (e.silent) sendEmpty(res, e.status);
    else sendText(res, e.status, e.message);
  }

  /** Answers every held push "success" and stops holding (node close). */
  close(): void {
    this.closed = true;
    for (const expire of [...this.pending]) expire();
  }

  /** How many pushes are waiting for a passive reply. */
  get holding(): number {
    return this.pending.size;
  }
}
