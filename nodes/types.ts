/**
 * The part of Node-RED's runtime API this pack uses, typed by hand: the public `@types/node-red` describes
 * Node-RED 1.x, and the subset below is stable across Node-RED 4 and 5.
 */
import type { RequestHandler, Express } from 'express';

export interface NodeStatus {
  fill?: 'red' | 'green' | 'yellow' | 'blue' | 'grey';
  shape?: 'ring' | 'dot';
  text?: string;
}

export interface NodeMessage {
  _msgid?: string;
  payload?: unknown;
  topic?: string;
  [key: string]: unknown;
}

export type SendFn = (msg: NodeMessage | null | (NodeMessage | NodeMessage[] | null)[]) => void;
export type DoneFn = (err?: Error) => void;

export interface Node<TCreds = Record<string, string | undefined>> {
  id: string;
  type: string;
  name?: string;
  z?: string;
  credentials: TCreds;
  on(event: 'input', listener: (msg: NodeMessage, send: SendFn, done: DoneFn) => void | Promise<void>): void;
  on(event: 'close', listener: (removed: boolean, done: () => void) => void | Promise<void>): void;
  on(event: string, listener: (...args: never[]) => void): void;
  send: SendFn;
  receive(msg?: NodeMessage): void;
  status(status: NodeStatus | Record<string, never>): void;
  log(msg: unknown): void;
  warn(msg: unknown): void;
  error(msg: unknown, nodeMsg?: NodeMessage): void;
  debug(msg: unknown): void;
  trace(msg: unknown): void;
}

export interface NodeDef {
  id: string;
  type: string;
  name?: string;
  z?: string;
  [key: string]: unknown;
}

export interface CredentialsDef {
  [key: string]: { type: 'text' | 'password' };
}

export interface NodeRedSettings {
  httpNodeRoot?: string | false;
  httpAdminRoot?: string | false;
  userDir?: string;
  [key: string]: unknown;
}

export interface NodeAPI {
  nodes: {
    createNode(node: object, def: NodeDef): void;
    registerType<N extends Node<object>, D extends NodeDef>(
      type: string,
      ctor: (this: N, def: D) => void,
      opts?: {
        credentials?: CredentialsDef;
        settings?: Record<string, { value: unknown; exportable?: boolean }>;
      },
    ): void;
    getNode(id: string): Node | null;
    eachNode?(cb: (n: NodeDef) => void): void;
  };
  httpNode: Express;
  httpAdmin: Express;
  auth: { needsPermission(permission: string): RequestHandler };
  settings: NodeRedSettings;
  log: {
    info(msg: unknown): void;
    warn(msg: unknown): void;
    error(msg: unknown): void;
    debug(msg: unknown): void;
    trace(msg: unknown): void;
  };
  util: { cloneMessage<T>(msg: T): T; generateId(): string };
  events?: {
    on(ev: string, cb: (...a: unknown[]) => void): void;
    removeListener(ev: string, cb: (...a: unknown[]) => void): void;
  };
  _(key: string, subs?: Record<string, unknown>): string;
  version(): string;
}
