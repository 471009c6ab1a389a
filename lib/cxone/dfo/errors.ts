/**
 * Errors of the CXone DFO client, and the words they are shown with.
 *
 * Every error carries a catalog key (`key`, looked up by the nodes as `cxone-dfo-out.dfo.<key>`) with its
 * substitutions, and an English message built here from the same template, for code that has no catalog (tests,
 * the admin pages). Templates use Node-RED's `__name__` placeholders so the catalogs can copy them verbatim.
 * Substitutions are built from safe parts only: statuses, error codes, field names, host names. Never a token,
 * a secret, or a URL with its query string.
 */

/** English templates; the keys are the catalog keys under `cxone-dfo-out.dfo`. */
export const DFO_MESSAGES = {
  'auth-client':
    'CXone refused the application credentials (__error__): check Client ID and Client secret of the integration',
  'auth-grant':
    'CXone refused the access key (__error__): check Access key ID and Access key secret of the integration',
  'auth-status': 'CXone’s token endpoint answered HTTP __status____detail__',
  'auth-no-token': 'CXone’s token endpoint answered without an access_token',
  'auth-missing': 'The integration has no __what__: fill it in the cxone-dfo-config node and deploy',
  'auth-insecure':
    'CXone’s discovery document names a token endpoint that is not https (__host__); refusing to send credentials there',
  'no-tenant':
    'The CXone token carries no tenantId claim, so the DFO API address cannot be discovered: set “DFO API base” in the integration',
  'discovery-failed':
    'CXone API discovery failed (__reason__): set “DFO API base” in the integration, e.g. https://api-na1.niceincontact.com/dfo/3.0',
  rejected: 'CXone rejected the __what__ (400): __fields__',
  unauthorized:
    'CXone refused a fresh token for the __what__ (401): check that the access key’s user may use Digital Engagement',
  refused: 'CXone refused the __what__ (HTTP __status__): __fields__',
  forbidden:
    'CXone refused the __what__ (403): the API user lacks the permission, or the channel belongs to another tenant',
  'not-found':
    'CXone answered 404 (not found) for the __what__: check the channel id __channel__ and the DFO API base',
  conflict: 'CXone refused the __what__ as a conflict (409)',
  throttled: 'CXone is throttling calls (429) for the __what__; trying again later',
  server: 'CXone answered HTTP __status__ for the __what__; trying again later',
  unexpected: 'CXone answered HTTP __status__ for the __what__',
  network: 'Could not reach CXone at __host__ (__reason__); trying again later',
  timeout: 'CXone at __host__ did not answer within __seconds__ s; trying again later',
  'bad-response': 'CXone answered the __what__ with a body that could not be read (__reason__)',
  'attachment-fetch': 'The attachment “__name__” could not be fetched from __host__ (__reason__)',
  'attachment-too-large': 'The attachment “__name__” is larger than __limit__ bytes and was not forwarded',
  'attachment-missing': 'The attachment “__name__” has neither bytes nor a URL that can be fetched',
  'invalid-message': 'The message cannot be sent to CXone: __reason__',
  'no-channel': 'No CXone channel id: set one on the node, or send msg.cxone.channelId or msg.channelId',
} as const;

export type DfoMessageKey = keyof typeof DFO_MESSAGES;

/** Replaces `__name__` placeholders; unknown names become ''. */
export function formatMessage(template: string, subs: Record<string, unknown> = {}): string {
  return template.replace(/__([A-Za-z0-9_]+?)__/g, (_m, k: string) => {
    const v = subs[k];
    return typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : '';
  });
}

export interface DfoErrorInit {
  key: DfoMessageKey;
  subs?: Record<string, string | number>;
  /** HTTP status CXone answered, when there was one. */
  status?: number;
  /** Our short code, or the far side's ('invalid_client', 'ECONNREFUSED', …); defaults to the status. */
  code?: string | number;
  retryable: boolean;
  /** From Retry-After, ms. */
  retryAfterMs?: number;
  /** The fields CXone named in a 400. */
  fields?: { field?: string; message: string }[];
}

/** A failed call to CXone, classified. Its message is safe to log and to show. */
export class DfoError extends Error {
  readonly key: DfoMessageKey;
  readonly subs: Record<string, string | number>;
  readonly status?: number;
  readonly code: string | number;
  readonly retryable: boolean;
  readonly retryAfterMs?: number;
  readonly fields?: { field?: string; message: string }[];

  constructor(init: DfoErrorInit) {
    super(formatMessage(DFO_MESSAGES[init.key], init.subs));
    this.name = 'DfoError';
    this.key = init.key;
    this.subs = init.subs ?? {};
    this.status = init.status;
    this.code = init.code ?? init.status ?? init.key;
    this.retryable = init.retryable;
    this.retryAfterMs = init.retryAfterMs;
    this.fields = init.fields;
  }
}

export function isDfoError(e: unknown): e is DfoError {
  return e instanceof DfoError;
}

/**
 * CXone's error collection `{errors:[{field?, message, …}], uid?}`, read defensively: also a bare array, a single
 * `{message}` or `{error, error_description}` (OAuth), or text. Returns [] when nothing readable is there.
 */
export function parseErrorBody(body: unknown): { field?: string; message: string }[] {
  let b = body;
  if (typeof b === 'string') {
    const t = b.trim();
    if (!t) return [];
    try {
      b = JSON.parse(t);
    } catch {
      return [
        {
          message: clip(
            t
              .replace(/<[^>]*>/g, ' ')
              .replace(/\s+/g, ' ')
              .trim(),
            200,
          ),
        },
      ];
    }
  }
  const list = Array.isArray(b)
    ? b
    : b && typeof b === 'object' && Array.isArray((b as { errors?: unknown }).errors)
      ? (b as { errors: unknown[] }).errors
      : b && typeof b === 'object'
        ? [b]
        : [];
  const out: { field?: string; message: string }[] = [];
  for (const e of list.slice(0, 20)) {
    if (!e || typeof e !== 'object') {
      if (typeof e === 'string') out.push({ message: clip(e, 200) });
      continue;
    }
    const o = e as Record<string, unknown>;
    const field =
      typeof o.field === 'string'
        ? o.field
        : Array.isArray(o.path)
          ? o.path.map(String).join('.')
          : typeof o.property === 'string'
            ? o.property
            : undefined;
    const message =
      typeof o.message === 'string'
        ? o.message
        : typeof o.error_description === 'string'
          ? o.error_description
          : typeof o.error === 'string'
            ? o.error
            : typeof o.title === 'string'
              ? o.title
              : '';
    if (field || message)
      out.push({ field: field ? clip(field, 100) : undefined, message: clip(message, 200) });
  }
  return out;
}

/** "messageContent.type: This value should not be blank.; thread: …" */
export function describeFields(fields: { field?: string; message: string }[]): string {
  if (!fields.length) return 'no reason given';
  return fields
    .map((f) => (f.field ? `${f.field}: ${f.message || 'invalid'}` : f.message))
    .join('; ')
    .slice(0, 600);
}

export function clip(s: string, n: number): string {
  return s.length > n ? s.slice(0, n) + '…' : s;
}

/** The catalog key of a `what` substitution: 'delivery status' → 'delivery-status'. */
export function whatKey(what: string): string {
  return what.toLowerCase().replace(/[^a-z0-9]+/g, '-');
}

/**
 * Words for an error from a node's catalog (`<ns>.dfo.<key>`, `<ns>.dfo.what.<what>`), falling back to the English
 * template when the catalog has no such key (`t` returns the key itself then, as Node-RED's `RED._` does).
 */
export function localizeDfoMessage(
  key: string,
  subs: Record<string, string | number>,
  fallback: string,
  t: (key: string, subs?: Record<string, unknown>) => string,
  ns: string,
): string {
  const tr = (k: string, s?: Record<string, unknown>): string | undefined => {
    const full = `${ns}.dfo.${k}`;
    let v: unknown;
    try {
      v = t(full, s);
    } catch {
      return undefined;
    }
    return typeof v === 'string' && v && v !== full && !v.endsWith(`.dfo.${k}`) ? v : undefined;
  };
  const s: Record<string, unknown> = { ...subs };
  if (typeof s.what === 'string') s.what = tr(`what.${whatKey(s.what)}`) ?? s.what;
  return tr(key, s) ?? fallback;
}
