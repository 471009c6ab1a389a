/**
 * The one HTTP route registry every endpoint node of the pack uses.
 *
 * One dispatcher is mounted on Node-RED's `httpNode` app per runtime, once. Nodes *claim* a base path with a
 * table of routes and *release* it on close, so a redeploy or a removed node leaves nothing behind: a path
 * nobody owns falls through (404, or a core `http in` node that serves it). Two nodes claiming one path: the
 * first keeps it, the second is told who holds it (its node turns red) and takes over when the first lets go.
 *
 * Bodies are read here, as raw bytes, with a per-route limit. When Node-RED serves the editor and the node
 * endpoints on one root (its default), the editor's JSON and form body parsers see every request first and
 * would consume the bytes: a pre-hook placed ahead of those parsers reads our routes' bodies itself and marks
 * them parsed so the editor's parsers leave them alone (see docs/adr/0002-route-registry.md). Unless Node-RED puts
 * its node-endpoint authentication (`httpNodeAuth`) between the editor's app and the node app, the pre-hook also
 * serves the request right there, instead of passing it through the rest of the editor's middleware and the node
 * app's (docs/adr/0010-serve-from-the-pre-hook.md).
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { HttpError, readBody } from './body';
import { sendText } from './respond';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';

export interface RouteContext {
  method: HttpMethod;
  /** The path below the claimed base ('' for the base itself), e.g. '/1.0/token'. */
  subPath: string;
  /** Values of the route's `:name` segments, URI-decoded. */
  params: Record<string, string>;
  /** The query string as sent (no `qs` object expansion: signatures are checked on these exact values). */
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** The request body as bytes, for routes that read a body. */
  rawBody?: Buffer;
  /**
   * Set instead of `rawBody` when a body parser ahead of us already consumed the stream (only when our pre-hook
   * could not be placed ahead of it); the value that parser produced.
   */
  parsedBody?: unknown;
  /** Client address as seen by Node-RED (honours Express's `trust proxy` when set). */
  remoteAddress: string;
  /** The full path of the request, including `httpNodeRoot`. */
  fullPath: string;
  req: IncomingMessage;
  res: ServerResponse;
}

export type RouteHandler = (ctx: RouteContext) => void | Promise<void>;

export interface RouteDef {
  method: HttpMethod;
  /** Relative to the claimed base: '' for the base, or like '/1.0/posts/:postId/messages'. */
  pattern: string;
  /** Largest body accepted, bytes. Default 1 MiB for POST/PUT/PATCH; GET and DELETE read no body. */
  bodyLimit?: number;
  /** Time allowed for the body to arrive, ms (default 10 s). */
  bodyTimeoutMs?: number;
  handler: RouteHandler;
}

export interface ClaimState {
  /** True while this claim serves its path. */
  active: boolean;
  /** The base path as claimed (normalised), e.g. '/wechat/webhook'. */
  path: string;
  /** The same path under Node-RED's `httpNodeRoot`, e.g. '/api/wechat/webhook'. */
  fullPath: string;
  /** When not active: the label of the node that holds the path. */
  heldBy?: string;
}

export interface ClaimOptions {
  /** Node id of the claimant. */
  owner: string;
  /** How to name the claimant in messages to other nodes ("wechat-in "Support"" …). */
  label: string;
  basePath: string;
  routes: RouteDef[];
  /** Told when the claim becomes active or is waiting behind another node. */
  onState?: (state: ClaimState) => void;
  /** Told when a handler throws; the client has been answered 500. */
  onError?: (err: unknown) => void;
}

export interface Claim {
  readonly state: ClaimState;
  release(): void;
}

export const DEFAULT_BODY_LIMIT = 1024 * 1024;
const PRE_READ = Symbol.for('wxcx.preReadBody');
/** The route the pre-hook matched, set on requests it lets go on. */
const PRE_SEEN = Symbol.for('wxcx.preHookSaw');

interface CompiledRoute {
  def: RouteDef;
  /** Lower-case literal segments, or null for a `:param` segment. */
  segments: (string | null)[];
  names: string[];
}

interface Entry {
  opts: ClaimOptions;
  key: string;
  path: string;
  routes: CompiledRoute[];
  released: boolean;
}

/** A request's route, found by `match`. */
interface Matched {
  entry: Entry;
  route: CompiledRoute;
  params: Record<string, string>;
  subPath: string;
}

/** A claimed request of a full URL: its route, the path below `httpNodeRoot`, the query string. */
interface Claimed {
  m: Matched;
  rel: string;
  query: string;
}

type Next = (err?: unknown) => void;
type Middleware = (req: IncomingMessage, res: ServerResponse, next: Next) => void;

/** Something Express-like that we can mount a middleware on. */
export interface MountableApp {
  use(fn: Middleware): unknown;
}

/** Normalises a base path: leading '/', no trailing '/', no empty segments. Throws on characters URLs cannot carry. */
export function normalizeBasePath(p: string): string {
  const raw = String(p ?? '').trim();
  if (!/^[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/.test(raw)) {
    throw new Error(`path "${raw.slice(0, 80)}" has characters that cannot appear in a URL path`);
  }
  const segs = raw.split('/').filter((s) => s.length > 0);
  if (segs.some((s) => s === '.' || s === '..'))
    throw new Error(`path "${raw}" must not contain "." or ".." segments`);
  return '/' + segs.join('/');
}

function compile(def: RouteDef): CompiledRoute {
  const segs = def.pattern.split('/').filter((s) => s.length > 0);
  const names: string[] = [];
  const segments = segs.map((s) => {
    if (s.startsWith(':')) {
      names.push(s.slice(1));
      return null;
    }
    return s.toLowerCase();
  });
  return { def, segments, names };
}

function joinRoot(root: string, path: string): string {
  const r = root.endsWith('/') ? root.slice(0, -1) : root;
  return path === '/' ? r || '/' : r + path;
}

export interface RegistryOptions {
  /**
   * Serve matched requests from the pre-hook (in the editor's app) instead of letting them run on through the
   * editor's remaining middleware to the dispatcher on `httpNode`. Only safe when nothing Node-RED mounts between
   * the two apps applies to node endpoints, i.e. without `httpNodeAuth`. Even then a route is served there only
   * after one of its requests was seen to pass the editor's app untouched (an admin route on the same path keeps
   * its requests), and again only once the editor's apps have not changed since (`adminVersion`).
   */
  serveFromPreHook?: boolean;
  /** Changes whenever a route is added to the editor's apps (their router stacks' lengths). */
  adminVersion?: () => number;
}

export class RouteRegistry {
  /** Claims by lower-cased base path; index 0 is the active one, the rest wait in order. */
  private readonly claims = new Map<string, Entry[]>();
  /** Active entries sorted longest base first, rebuilt on every change (claims change only on deploy). */
  private active: Entry[] = [];
  private readonly serveFromPreHook: boolean;
  private readonly adminVersion: () => number;
  /** Routes seen to reach the dispatcher through the editor's app, as of `passedAt` (an `adminVersion`). */
  private passed = new WeakSet<CompiledRoute>();
  private passedAt = NaN;

  constructor(
    private readonly nodeRoot: string,
    opts: RegistryOptions = {},
  ) {
    this.serveFromPreHook = opts.serveFromPreHook === true;
    this.adminVersion = opts.adminVersion ?? (() => 0);
  }

  /** Whether the pre-hook may serve requests of `route` now. */
  private servesEarly(route: CompiledRoute): boolean {
    if (!this.serveFromPreHook) return false;
    const v = this.adminVersion();
    if (v !== this.passedAt) {
      // An admin route may have appeared in front of ours: learn again.
      this.passed = new WeakSet();
      this.passedAt = v;
      return false;
    }
    return this.passed.has(route);
  }

  /** The full path (with `httpNodeRoot`) of a base path. */
  fullPath(basePath: string): string {
    return joinRoot(this.nodeRoot, normalizeBasePath(basePath));
  }

  claim(opts: ClaimOptions): Claim {
    const path = normalizeBasePath(opts.basePath);
    const key = path.toLowerCase();
    const entry: Entry = { opts, key, path, routes: opts.routes.map(compile), released: false };
    const list = this.claims.get(key) ?? [];
    list.push(entry);
    this.claims.set(key, list);
    this.rebuild();
    const state = (): ClaimState => {
      const l = this.claims.get(key) ?? [];
      const isActive = !entry.released && l[0] === entry;
      return {
        active: isActive,
        path,
        fullPath: joinRoot(this.nodeRoot, path),
        heldBy: isActive || entry.released ? undefined : l[0]?.opts.label,
      };
    };
    opts.onState?.(state());
    return {
      get state() {
        return state();
      },
      release: () => {
        if (entry.released) return;
        entry.released = true;
        const l = this.claims.get(key) ?? [];
        const wasActive = l[0] === entry;
        const rest = l.filter((e) => e !== entry);
        if (rest.length) this.claims.set(key, rest);
        else this.claims.delete(key);
        this.rebuild();
        if (wasActive && rest[0]) {
          const next = rest[0];
          next.opts.onState?.({
            active: true,
            path: next.path,
            fullPath: joinRoot(this.nodeRoot, next.path),
          });
        }
      },
    };
  }

  /** Which claims are active, for the editor and the health endpoint. */
  list(): { path: string; fullPath: string; owner: string; label: string; waiting: string[] }[] {
    return [...this.claims.values()].map((l) => ({
      path: l[0].path,
      fullPath: joinRoot(this.nodeRoot, l[0].path),
      owner: l[0].opts.owner,
      label: l[0].opts.label,
      waiting: l.slice(1).map((e) => e.opts.owner),
    }));
  }

  private rebuild(): void {
    this.active = [...this.claims.values()].map((l) => l[0]).sort((a, b) => b.path.length - a.path.length);
  }

  /**
   * Finds the route for a path relative to `httpNodeRoot`. `undefined`: no claimant owns the path;
   * `{allow}`: the path is ours but not for this method.
   */
  match(relPath: string, method: string): Matched | { allow: string[] } | undefined {
    const lower = relPath.toLowerCase();
    for (const entry of this.active) {
      const base = entry.key;
      let rest: string;
      if (base === '/') rest = lower;
      else if (lower === base) rest = '';
      else if (lower.startsWith(base) && lower.charCodeAt(base.length) === 47 /* / */)
        rest = lower.slice(base.length);
      else continue;
      const segs = rest.split('/').filter((s) => s.length > 0);
      const origSegs = relPath
        .slice(base === '/' ? 0 : base.length)
        .split('/')
        .filter((s) => s.length > 0);
      const allow: string[] = [];
      for (const r of entry.routes) {
        if (r.segments.length !== segs.length) continue;
        let ok = true;
        for (let i = 0; i < segs.length; i++) {
          const s = r.segments[i];
          if (s !== null && s !== segs[i]) {
            ok = false;
            break;
          }
        }
        if (!ok) continue;
        if (r.def.method !== method && !(method === 'HEAD' && r.def.method === 'GET')) {
          allow.push(r.def.method);
          continue;
        }
        const params: Record<string, string> = {};
        let pi = 0;
        for (let i = 0; i < segs.length; i++) {
          if (r.segments[i] === null) {
            let v = origSegs[i];
            try {
              v = decodeURIComponent(v);
            } catch {
              /* keep the raw segment */
            }
            params[r.names[pi++]] = v;
          }
        }
        return { entry, route: r, params, subPath: segs.length ? '/' + origSegs.join('/') : '' };
      }
      if (allow.length) return { allow };
      // The base is ours but no route matches: let it fall through (404).
      return undefined;
    }
    return undefined;
  }

  /** The middleware mounted on `httpNode`; `req.url` there is relative to `httpNodeRoot`. */
  readonly dispatcher: Middleware = (req, res, next) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const relPath = q >= 0 ? url.slice(0, q) : url;
    const m = this.match(relPath, req.method ?? 'GET');
    if (!m) {
      next();
      return;
    }
    if ('allow' in m) {
      sendText(res, 405, 'method not allowed', { Allow: [...new Set(m.allow)].join(', ') });
      return;
    }
    // It went through the editor's app untouched: the pre-hook may serve this route itself from now on.
    if ((req as unknown as Record<symbol, unknown>)[PRE_SEEN] === m.route) this.passed.add(m.route);
    void this.serve(req, res, m, relPath, q >= 0 ? url.slice(q + 1) : '');
  };

  /**
   * The middleware placed first in the outermost app, ahead of Express's own query parser and request set-up
   * (`routeRegistry` places it only when nothing mounted in front of the editor's app applies to node endpoints:
   * docs/adr/0016-serve-from-the-front.md). It serves the routes the pre-hook would serve, a few Express layers
   * sooner; everything else, and every route not learned yet, goes on as before.
   */
  readonly frontHook: Middleware = (req, res, next) => {
    const found = this.claimedFull(req.url ?? '/', req.method);
    if (!found || !this.servedEarly(req, res, found)) next();
  };

  /**
   * Serves a claimed request at once when its route is learned (true). Otherwise marks it, so that the route is
   * learned when the request reaches the dispatcher untouched (also when the editor's app is not on its way).
   */
  private servedEarly(req: IncomingMessage, res: ServerResponse, found: Claimed): boolean {
    if (this.servesEarly(found.m.route)) {
      void this.serve(req, res, found.m, found.rel, found.query);
      return true;
    }
    (req as unknown as Record<symbol, unknown>)[PRE_SEEN] = found.m.route;
    return false;
  }

  /** The claimed route of a full URL (with `httpNodeRoot`), with the path below the root and the query string. */
  private claimedFull(full: string, method: string | undefined): Claimed | undefined {
    const q = full.indexOf('?');
    const fullPath = q >= 0 ? full.slice(0, q) : full;
    const root = this.nodeRoot.endsWith('/') ? this.nodeRoot.slice(0, -1) : this.nodeRoot;
    if (root && fullPath !== root && !fullPath.startsWith(root + '/')) return undefined;
    const rel = fullPath.slice(root.length) || '/';
    const m = this.match(rel, method ?? 'GET');
    if (!m || 'allow' in m) return undefined;
    return { m, rel, query: q >= 0 ? full.slice(q + 1) : '' };
  }

  /**
   * The middleware placed ahead of the editor's body parsers (see the file comment). `originalUrl` there is
   * the full path; only requests for our routes are touched: served here when `serveFromPreHook`, otherwise their
   * body is read here and they go on to the dispatcher.
   */
  readonly preHook: Middleware = (req, res, next) => {
    const r = req as IncomingMessage & { originalUrl?: string; _body?: boolean };
    const found = this.claimedFull(r.originalUrl ?? req.url ?? '/', req.method);
    if (!found) {
      next();
      return;
    }
    if (this.servedEarly(req, res, found)) return;
    const m = found.m;
    if (!readsBody(m.route.def) || r._body) {
      next();
      return;
    }
    const p = readBody(req, {
      limit: m.route.def.bodyLimit ?? DEFAULT_BODY_LIMIT,
      timeoutMs: m.route.def.bodyTimeoutMs,
    });
    p.catch(() => undefined); // the dispatcher reports it; never an unhandled rejection
    (r as unknown as Record<symbol, Promise<Buffer>>)[PRE_READ] = p;
    r._body = true; // body-parser's own flag: "already parsed", so it leaves the stream to us
    next();
  };

  private async serve(
    req: IncomingMessage,
    res: ServerResponse,
    m: Matched,
    relPath: string,
    queryString: string,
  ): Promise<void> {
    const def = m.route.def;
    const r = req as IncomingMessage & {
      _body?: boolean;
      body?: unknown;
      ip?: string;
      originalUrl?: string;
    };
    let rawBody: Buffer | undefined;
    let parsedBody: unknown;
    try {
      if (readsBody(def)) {
        const pre = (r as unknown as Record<symbol, Promise<Buffer> | undefined>)[PRE_READ];
        if (pre) rawBody = await pre;
        else if (r._body) parsedBody = r.body;
        else
          rawBody = await readBody(req, {
            limit: def.bodyLimit ?? DEFAULT_BODY_LIMIT,
            timeoutMs: def.bodyTimeoutMs,
          });
      }
    } catch (err) {
      const e = err instanceof HttpError ? err : new HttpError(400, 'request body could not be read');
      sendText(res, e.status, e.message, e.headers);
      return;
    }
    const ctx: RouteContext = {
      method: def.method,
      subPath: m.subPath,
      params: m.params,
      query: new URLSearchParams(queryString),
      headers: req.headers,
      rawBody,
      parsedBody,
      remoteAddress: r.ip ?? req.socket.remoteAddress ?? '',
      fullPath: r.originalUrl ? r.originalUrl.split('?', 1)[0] : joinRoot(this.nodeRoot, relPath),
      req,
      res,
    };
    try {
      await def.handler(ctx);
    } catch (err) {
      if (err instanceof HttpError) {
        sendText(res, err.status, err.message, err.headers);
        return;
      }
      if (!res.headersSent) sendText(res, 500, 'internal error');
      else res.destroy();
      try {
        m.entry.opts.onError?.(err);
      } catch {
        /* a reporter that throws must not take the runtime down */
      }
    }
  }
}

function readsBody(def: RouteDef): boolean {
  return def.method === 'POST' || def.method === 'PUT' || def.method === 'PATCH';
}

interface AppLike extends MountableApp {
  _router?: { stack?: { name?: string; handle?: unknown }[] };
  router?: { stack?: { name?: string; handle?: unknown }[] };
  /** Express sets this on an app mounted in another one. */
  parent?: AppLike;
  /** Express's setting getter (one argument). */
  get?: (setting: string) => unknown;
}

const registries = new WeakMap<object, RouteRegistry>();

/**
 * The registry of one Node-RED runtime, created and mounted on first use. Keyed by the runtime's `httpNode`
 * app, so each runtime (and each test runtime) has its own and nothing outlives it.
 */
export function routeRegistry(
  httpNode: MountableApp,
  httpAdmin: MountableApp | null | undefined,
  settings: {
    httpNodeRoot?: string | false | undefined;
    httpNodeAuth?: unknown;
    httpAuth?: unknown;
    httpAdminAuth?: unknown;
    httpAdminMiddleware?: unknown;
  },
): RouteRegistry {
  const existing = registries.get(httpNode);
  if (existing) return existing;
  const root = typeof settings.httpNodeRoot === 'string' ? settings.httpNodeRoot : '/';
  // red.js mounts `httpNodeAuth` (defaulting to `httpAuth`) between the editor's app and httpNode: requests must
  // then go the whole way, through it.
  const adminApps: AppLike[] = [];
  for (let app = httpAdmin as AppLike | undefined, depth = 0; app && depth < 4; app = app.parent, depth++) {
    if (app === (httpNode as AppLike)) break;
    adminApps.push(app);
  }
  const reg = new RouteRegistry(root, {
    serveFromPreHook: !settings.httpNodeAuth && !settings.httpAuth,
    adminVersion: () => {
      let n = 0;
      for (const app of adminApps) n += (app._router?.stack ?? app.router?.stack)?.length ?? 0;
      return n;
    },
  });
  registries.set(httpNode, reg);
  httpNode.use(reg.dispatcher);
  // `RED.httpAdmin` is the runtime's admin app, itself mounted inside the editor's app, whose body parsers run
  // first. Walk up the apps it is mounted in and put the hook ahead of the parsers wherever they are.
  for (const app of adminApps) placeAheadOfBodyParsers(app, reg.preHook);
  // The outermost app (red.js's, whose request handler the server calls): the front hook goes first in it when
  // nothing in front of the editor's body parsers applies to node endpoints: no authentication (red.js mounts
  // `httpAdminAuth` on this app, ahead of the editor's), no `httpAdminMiddleware` (the editor's app runs it
  // ahead of its parsers), and no `trust proxy` (the client address would be the proxy's).
  const top = adminApps[adminApps.length - 1];
  if (
    top &&
    !top.parent &&
    !settings.httpNodeAuth &&
    !settings.httpAuth &&
    !settings.httpAdminAuth &&
    !settings.httpAdminMiddleware &&
    adminApps.every((app) => typeof app.get !== 'function' || !app.get('trust proxy'))
  ) {
    placeFirst(top, reg.frontHook);
  }
  return reg;
}

/** Puts `hook` first on `app`, ahead of Express's query parser and request set-up. */
function placeFirst(app: AppLike, hook: Middleware): boolean {
  app.use(hook);
  const stack = app._router?.stack ?? app.router?.stack;
  if (!Array.isArray(stack)) return false;
  const mine = stack.findIndex((l) => l.handle === hook);
  if (mine < 0) return false;
  const [layer] = stack.splice(mine, 1);
  stack.unshift(layer);
  return true;
}

/**
 * Puts `hook` on `app` just ahead of its first JSON/form body parser. Returns false, leaving the app untouched,
 * when the app has no such parser.
 */
function placeAheadOfBodyParsers(app: AppLike, hook: Middleware): boolean {
  const stackOf = (): { name?: string; handle?: unknown }[] | undefined =>
    app._router?.stack ?? app.router?.stack;
  const stack = stackOf();
  if (!Array.isArray(stack)) return false;
  const at = stack.findIndex((l) => l.name === 'jsonParser' || l.name === 'urlencodedParser');
  if (at < 0) return false;
  app.use(hook);
  const mine = stack.findIndex((l) => l.handle === hook);
  if (mine < 0) return false;
  const [layer] = stack.splice(mine, 1);
  stack.splice(at, 0, layer);
  return true;
}
