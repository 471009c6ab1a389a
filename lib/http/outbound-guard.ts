/**
 * Rules for URLs the pack fetches because someone else named them (attachment URLs in CXone replies, media
 * links in conversation messages): https only, hosts the config allows, no loopback/private/link-local
 * addresses unless the user allows them (the sandbox does), and the address that was checked is the address
 * connected to (no DNS rebinding between check and connect).
 */
import * as dns from 'node:dns';
import * as net from 'node:net';
import type { LookupFunction } from 'node:net';

export interface OutboundPolicy {
  /** Allow plain http:// (default false). */
  allowHttp?: boolean;
  /** Allow loopback, private, link-local and other non-public addresses (default false). */
  allowPrivateNetwork?: boolean;
  /**
   * Host names allowed; empty or undefined = any public host. An entry matches the host exactly or, when it
   * starts with '.', as a domain suffix ('.qpic.cn' matches 'mmbiz.qpic.cn' and 'qpic.cn').
   */
  allowedHosts?: string[];
}

/**
 * The policy a node's properties ask for: `allowPrivateNetwork` (true or "true": also http:// and loopback/private
 * addresses, for a sandbox or an intranet) and `allowedHosts` (host names separated by commas or spaces; a leading
 * "." for a domain and its subdomains; empty: any public host).
 */
export function outboundPolicyOf(props: {
  allowPrivateNetwork?: unknown;
  allowedHosts?: unknown;
}): OutboundPolicy {
  const open = props.allowPrivateNetwork === true || props.allowPrivateNetwork === 'true';
  const hosts =
    typeof props.allowedHosts === 'string'
      ? props.allowedHosts
          .split(/[\s,]+/)
          .map((h) => h.trim().toLowerCase())
          .filter((h) => h.length > 0)
      : [];
  return { allowHttp: open, allowPrivateNetwork: open, ...(hosts.length ? { allowedHosts: hosts } : {}) };
}

export class OutboundRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OutboundRefused';
  }
}

/** The eight 16-bit groups of an IPv6 address (with an embedded dotted IPv4 tail, and a zone id dropped). */
function ipv6Hextets(ip: string): number[] | null {
  let v = ip.toLowerCase().replace(/%.*$/, '');
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(v);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number);
    v = v.slice(0, dotted.index) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16);
  }
  const halves = v.split('::');
  if (halves.length > 2) return null;
  const part = (x: string): number[] => (x ? x.split(':').map((g) => parseInt(g, 16)) : []);
  const head = part(halves[0]);
  const tail = halves.length === 2 ? part(halves[1]) : [];
  const fill = 8 - head.length - tail.length;
  if (fill < 0 || (halves.length === 1 && fill !== 0)) return null;
  const out = [...head, ...new Array<number>(fill).fill(0), ...tail];
  return out.length === 8 && out.every((x) => Number.isInteger(x) && x >= 0 && x <= 0xffff) ? out : null;
}

/** Whether an IP address (v4 or v6) is outside the public internet. */
export function isNonPublicAddress(ip: string): boolean {
  if (net.isIPv4(ip)) {
    const [a, b] = ip.split('.').map(Number);
    return (
      a === 0 ||
      a === 10 ||
      a === 127 ||
      (a === 100 && b >= 64 && b <= 127) || // carrier-grade NAT
      (a === 169 && b === 254) ||
      (a === 172 && b >= 16 && b <= 31) ||
      (a === 192 && b === 168) ||
      (a === 192 && b === 0) ||
      (a === 198 && (b === 18 || b === 19)) ||
      a >= 224 // multicast, reserved, broadcast
    );
  }
  if (net.isIPv6(ip)) {
    const h = ipv6Hextets(ip);
    if (!h) return true;
    const first96Zero = h.slice(0, 5).every((x) => x === 0);
    const v4 = (a: number, b: number): string => `${a >> 8}.${a & 255}.${b >> 8}.${b & 255}`;
    // ::ffff:a.b.c.d (IPv4-mapped, in any spelling: ::ffff:7f00:1 is 127.0.0.1) and ::a.b.c.d (IPv4-compatible,
    // deprecated; :: and ::1 are among them): the IPv4 rules decide.
    if (first96Zero && (h[5] === 0xffff || h[5] === 0)) {
      if (h[5] === 0 && h[6] === 0) return true; // ::, ::1 and the rest of ::/112
      return isNonPublicAddress(v4(h[6], h[7]));
    }
    if (h[0] === 0x2002) return isNonPublicAddress(v4(h[1], h[2])); // 6to4 carries an IPv4 address
    return (
      (h[0] & 0xfe00) === 0xfc00 || // unique local fc00::/7
      (h[0] & 0xffc0) === 0xfe80 || // link-local fe80::/10
      (h[0] & 0xffc0) === 0xfec0 || // site-local (deprecated) fec0::/10
      (h[0] & 0xff00) === 0xff00 || // multicast
      (h[0] === 0x64 && h[1] === 0xff9b) || // NAT64 can reach anything
      (h[0] === 0x2001 && h[1] === 0) || // Teredo
      (h[0] === 0x2001 && h[1] === 0xdb8) || // documentation
      h[0] === 0x100 // discard-only 100::/64
    );
  }
  return true;
}

function hostAllowed(host: string, allowed: string[] | undefined): boolean {
  if (!allowed || allowed.length === 0) return true;
  const h = host.toLowerCase().replace(/\.$/, '');
  return allowed.some((a) => {
    const e = a.trim().toLowerCase();
    if (!e) return false;
    return e.startsWith('.') ? h.endsWith(e) || h === e.slice(1) : h === e;
  });
}

/**
 * Checks a URL against the policy before anything is sent. Throws OutboundRefused with a reason that names the
 * host (never the query, which may carry tokens).
 */
export function checkUrl(raw: string, policy: OutboundPolicy): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new OutboundRefused('not a valid URL');
  }
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && policy.allowHttp)) {
    throw new OutboundRefused(
      `only https URLs are fetched (got ${u.protocol.replace(':', '')}://${u.hostname})`,
    );
  }
  if (u.username || u.password)
    throw new OutboundRefused(`URLs with credentials are not fetched (${u.hostname})`);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (!hostAllowed(host, policy.allowedHosts)) {
    throw new OutboundRefused(`host ${host} is not in the allowed hosts`);
  }
  if (net.isIP(host) && !policy.allowPrivateNetwork && isNonPublicAddress(host)) {
    throw new OutboundRefused(
      `address ${host} is not public; allow private networks in the config to fetch it`,
    );
  }
  return u;
}

/**
 * A `lookup` for http(s) agents / axios that resolves the host once, refuses non-public addresses unless the
 * policy allows them, and connects to exactly the address it checked.
 */
export function guardedLookup(policy: OutboundPolicy): LookupFunction {
  return (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) {
        callback(err, '', 4);
        return;
      }
      const list = Array.isArray(addresses) ? addresses : [addresses];
      const ok = policy.allowPrivateNetwork ? list : list.filter((a) => !isNonPublicAddress(a.address));
      if (ok.length === 0) {
        const e = new OutboundRefused(
          `${hostname} resolves to a non-public address; allow private networks to fetch it`,
        );
        (e as NodeJS.ErrnoException).code = 'EWXCXPRIVATE';
        callback(e, '', 4);
        return;
      }
      if (options.all) {
        (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, ok);
      } else {
        callback(null, ok[0].address, ok[0].family);
      }
    });
  };
}
