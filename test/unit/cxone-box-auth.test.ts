/**
 * The box's authentication pieces on their own: reading token requests (JSON, form, Basic), the constant-time
 * credential check, the failure throttle, and the JWTs we issue and verify.
 */
import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { createHmac } from 'node:crypto';
import jwt from 'jsonwebtoken';
import {
  credentialsMatch,
  parseTokenRequest,
  readBasic,
  requestAuthenticates,
  TokenRequestError,
} from '../../lib/cxone/box/client-auth';
import { FailureThrottle } from '../../lib/cxone/box/throttle';
import {
  bearerToken,
  issueToken,
  signingKey,
  signingKeyObject,
  TOKEN_ISSUER,
  tokenAudience,
  verifyToken,
  type BoxSecrets,
} from '../../lib/cxone/box/tokens';
import { fixture } from '../harness/paths';

const tokenRequest = JSON.parse(fixture('cxone', 'box-token-request.json')) as Record<string, string>;
const secrets: BoxSecrets = { clientId: tokenRequest.client_id, clientSecret: tokenRequest.client_secret };

const b64url = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
const basic = (id: string, secret: string): string =>
  'Basic ' + Buffer.from(`${id}:${secret}`).toString('base64');

describe('box token requests', () => {
  it('reads the fixture JSON body (what CXone is seen to send)', () => {
    const r = parseTokenRequest(
      { rawBody: Buffer.from(JSON.stringify(tokenRequest)) },
      {},
      'application/json',
    );
    assert.deepEqual(
      { grantType: r.grantType, clientId: r.clientId, clientSecret: r.clientSecret, via: r.via },
      {
        grantType: 'client_credentials',
        clientId: tokenRequest.client_id,
        clientSecret: tokenRequest.client_secret,
        via: 'body',
      },
    );
    assert.equal(requestAuthenticates(secrets, r), true);
  });

  it('reads a JSON body sent with no or the wrong content type', () => {
    const r = parseTokenRequest({ rawBody: Buffer.from(JSON.stringify(tokenRequest)) }, {}, 'text/plain');
    assert.equal(r.clientSecret, tokenRequest.client_secret);
  });

  it('reads a form body, decoding + and %XX', () => {
    const body = 'grant_type=client_credentials&client_id=a%2Bb&client_secret=s+p%3D%3D';
    const r = parseTokenRequest({ rawBody: Buffer.from(body) }, {}, 'application/x-www-form-urlencoded');
    assert.equal(r.clientId, 'a+b');
    assert.equal(r.clientSecret, 's p==');
  });

  it('refuses a form body that repeats a parameter (RFC 6749 §3.2)', () => {
    assert.throws(
      () =>
        parseTokenRequest(
          { rawBody: Buffer.from('client_id=a&client_id=b&client_secret=x') },
          {},
          'application/x-www-form-urlencoded',
        ),
      (e: unknown) => e instanceof TokenRequestError && e.status === 400 && e.error === 'invalid_request',
    );
  });

  it('reads a body another parser already produced (the registry fallback)', () => {
    const r = parseTokenRequest({ parsedBody: { ...tokenRequest } }, {}, 'application/json');
    assert.equal(requestAuthenticates(secrets, r), true);
  });

  it('reads HTTP Basic, form-encoded (RFC 6749 §2.3.1) or not', () => {
    const plain = parseTokenRequest(
      { rawBody: Buffer.from('grant_type=client_credentials') },
      { authorization: basic(secrets.clientId, secrets.clientSecret) },
      'application/x-www-form-urlencoded',
    );
    assert.equal(plain.via, 'basic');
    assert.equal(requestAuthenticates(secrets, plain), true);
    const odd: BoxSecrets = { clientId: 'id with space', clientSecret: 'p@ss:word+1' };
    const encoded = parseTokenRequest(
      { rawBody: Buffer.from('grant_type=client_credentials') },
      { authorization: basic('id+with+space', 'p%40ss%3Aword%2B1') },
      'application/x-www-form-urlencoded',
    );
    assert.equal(requestAuthenticates(odd, encoded), true, 'form-encoded Basic');
    const raw = parseTokenRequest({}, { authorization: basic('id with space', 'p@ss:word+1') }, '');
    assert.equal(raw.clientSecret, 'p@ss:word+1', 'the secret may contain ":"');
    assert.equal(requestAuthenticates(odd, raw), true, 'raw Basic');
  });

  it('refuses credentials sent both in the body and with Basic', () => {
    assert.throws(
      () =>
        parseTokenRequest(
          { rawBody: Buffer.from(JSON.stringify(tokenRequest)) },
          { authorization: basic(secrets.clientId, secrets.clientSecret) },
          'application/json',
        ),
      (e: unknown) => e instanceof TokenRequestError && e.status === 400,
    );
  });

  it('refuses Basic credentials without a colon as invalid_client', () => {
    assert.throws(
      () => readBasic('Basic ' + Buffer.from('no-colon').toString('base64')),
      (e: unknown) => e instanceof TokenRequestError && e.status === 401 && e.error === 'invalid_client',
    );
    assert.equal(readBasic('Bearer abc'), undefined, 'another scheme is not Basic');
  });

  it('turns malformed JSON into invalid_request without quoting the body', () => {
    const body = `{"client_secret":"${secrets.clientSecret}" oops}`;
    try {
      parseTokenRequest({ rawBody: Buffer.from(body) }, {}, 'application/json');
      assert.fail('should throw');
    } catch (e) {
      assert.ok(e instanceof TokenRequestError);
      assert.equal(e.status, 400);
      assert.ok(!e.message.includes(secrets.clientSecret), e.message);
    }
  });

  it('credentialsMatch: both parts must match, and empty expectations never match', () => {
    assert.equal(
      credentialsMatch(secrets, { clientId: secrets.clientId, clientSecret: secrets.clientSecret }),
      true,
    );
    assert.equal(credentialsMatch(secrets, { clientId: secrets.clientId, clientSecret: 'x' }), false);
    assert.equal(credentialsMatch(secrets, { clientId: 'x', clientSecret: secrets.clientSecret }), false);
    assert.equal(credentialsMatch(secrets, { clientId: secrets.clientId }), false);
    assert.equal(
      credentialsMatch(secrets, { clientId: secrets.clientId, clientSecret: secrets.clientSecret + 'x' }),
      false,
      'a longer secret',
    );
    assert.equal(
      credentialsMatch({ clientId: '', clientSecret: '' }, { clientId: '', clientSecret: '' }),
      false,
    );
  });
});

describe('token-failure throttle', () => {
  it('refuses after `limit` failures in the window and lets the key in again as they age out', () => {
    let t = 1_000_000;
    const th = new FailureThrottle({ limit: 3, windowMs: 10_000, now: () => t });
    assert.equal(th.retryAfterMs('k'), 0);
    th.fail('k');
    t += 1000;
    th.fail('k');
    t += 1000;
    assert.equal(th.retryAfterMs('k'), 0, 'two failures are allowed');
    th.fail('k');
    assert.equal(th.retryAfterMs('k'), 8000, 'blocked until the first failure is 10 s old');
    assert.equal(th.retryAfterMs('other'), 0, 'keys are separate');
    t += 8000;
    assert.equal(th.retryAfterMs('k'), 0, 'the oldest failure left the window');
    th.fail('k');
    assert.ok(th.retryAfterMs('k') > 0, 'the window slides: three failures in the last 10 s again');
  });

  it('forgets a key on clear, and bounds the number of keys', () => {
    const th = new FailureThrottle({ limit: 1, windowMs: 60_000, maxKeys: 100 });
    th.fail('a');
    assert.ok(th.retryAfterMs('a') > 0);
    th.clear('a');
    assert.equal(th.retryAfterMs('a'), 0);
    for (let i = 0; i < 1000; i++) th.fail('k' + i);
    assert.equal(th.size, 100);
    assert.ok(th.retryAfterMs('k999') > 0, 'the newest keys are kept');
  });
});

describe('box tokens (JWT, HS256 pinned)', () => {
  const now = Math.floor(Date.now() / 1000);

  it('issues {access_token, token_type:"Bearer", expires_in} with iss, aud, sub, exp and jti', () => {
    const t = issueToken(secrets, 600, now);
    assert.equal(t.token_type, 'Bearer');
    assert.equal(t.expires_in, 600);
    const header = JSON.parse(Buffer.from(t.access_token.split('.')[0], 'base64url').toString()) as Record<
      string,
      unknown
    >;
    assert.deepEqual(header, { alg: 'HS256', typ: 'JWT' });
    const v = verifyToken(t.access_token, secrets, now);
    assert.ok(v.ok);
    assert.equal(v.claims.iss, TOKEN_ISSUER);
    assert.equal(v.claims.aud, tokenAudience(secrets.clientId));
    assert.equal(v.claims.sub, secrets.clientId);
    assert.equal(v.claims.exp, now + 600);
    assert.match(String(v.claims.jti), /^[0-9a-f-]{36}$/);
    assert.notEqual(issueToken(secrets, 600, now).access_token, t.access_token, 'each token has its own jti');
  });

  it('derives the key from the client secret when jwtSecret is empty, and uses jwtSecret when set', () => {
    const derived = signingKey(secrets);
    assert.equal(derived.length, 32);
    assert.notDeepEqual(derived, Buffer.from(secrets.clientSecret), 'never the secret itself');
    const withJwt = { ...secrets, jwtSecret: 'a separate signing secret' };
    assert.notDeepEqual(signingKey(withJwt), derived);
    const t = issueToken(withJwt, 600, now);
    assert.equal(verifyToken(t.access_token, withJwt, now).ok, true);
    assert.deepEqual(
      verifyToken(t.access_token, secrets, now),
      { ok: false, problem: 'invalid' },
      'other key',
    );
  });

  it('refuses a token after the client secret changes (derived key) or the client id changes', () => {
    const t = issueToken(secrets, 600, now).access_token;
    assert.equal(verifyToken(t, { ...secrets, clientSecret: 'rotated' }, now).ok, false);
    assert.equal(verifyToken(t, { ...secrets, clientId: 'other-client' }, now).ok, false);
  });

  it('makes the signing KeyObject once per secrets object, and a new one when the secret in it changes', () => {
    const s: BoxSecrets = { ...secrets };
    assert.equal(signingKeyObject(s), signingKeyObject(s), 'made once');
    assert.deepEqual(signingKeyObject(s).export(), signingKey(s));
    const t = issueToken(s, 600, now).access_token;
    assert.equal(verifyToken(t, s, now).ok, true);
    s.clientSecret = 'rotated in place';
    assert.deepEqual(signingKeyObject(s).export(), signingKey(s));
    assert.deepEqual(verifyToken(t, s, now), { ok: false, problem: 'invalid' });
    s.jwtSecret = 'now a separate signing secret';
    assert.deepEqual(signingKeyObject(s).export(), signingKey(s));
  });

  it('refuses an expired token, within a small clock tolerance', () => {
    const t = issueToken(secrets, 60, now - 120).access_token;
    assert.deepEqual(verifyToken(t, secrets, now), { ok: false, problem: 'expired' });
    const justExpired = issueToken(secrets, 60, now - 62).access_token;
    assert.equal(verifyToken(justExpired, secrets, now).ok, true, '2 s late is tolerated');
  });

  it('refuses alg:none, another HMAC algorithm with the right key, and other issuers, audiences, subjects', () => {
    const payload = {
      iss: TOKEN_ISSUER,
      aud: tokenAudience(secrets.clientId),
      sub: secrets.clientId,
      iat: now,
      exp: now + 600,
      jti: 'x',
    };
    const none = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(payload)}.`;
    assert.equal(verifyToken(none, secrets, now).ok, false, 'alg none');
    const noneSigned = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(payload)}.${createHmac('sha256', signingKey(secrets)).update('x').digest('base64url')}`;
    assert.equal(verifyToken(noneSigned, secrets, now).ok, false, 'alg none with a signature');
    const hs512 = jwt.sign(payload, signingKey(secrets), { algorithm: 'HS512' });
    assert.equal(verifyToken(hs512, secrets, now).ok, false, 'HS512 with our key');
    for (const [k, v] of [
      ['iss', 'someone-else'],
      ['aud', 'another-box'],
      ['sub', 'another-client'],
    ]) {
      const forged = jwt.sign({ ...payload, [k]: v }, signingKey(secrets), { algorithm: 'HS256' });
      assert.deepEqual(verifyToken(forged, secrets, now), { ok: false, problem: 'invalid' }, k);
    }
    const noJti = jwt.sign({ ...payload, jti: undefined }, signingKey(secrets), { algorithm: 'HS256' });
    assert.equal(verifyToken(noJti, secrets, now).ok, false, 'no jti');
    const tampered = issueToken(secrets, 600, now).access_token.replace(/\.([^.]+)\./, (_m, p: string) => {
      const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
      return '.' + b64url({ ...claims, exp: now + 99999 }) + '.';
    });
    assert.equal(verifyToken(tampered, secrets, now).ok, false, 'payload changed after signing');
  });

  it('calls garbage malformed, and refuses everything when no credentials are configured', () => {
    assert.deepEqual(verifyToken('abc', secrets, now), { ok: false, problem: 'malformed' });
    assert.deepEqual(verifyToken('a.b.c', secrets, now), { ok: false, problem: 'malformed' });
    const t = issueToken(secrets, 600, now).access_token;
    assert.deepEqual(verifyToken(t, { clientId: '', clientSecret: '' }, now), {
      ok: false,
      problem: 'not-configured',
    });
  });

  it('reads Authorization: Bearer headers (RFC 6750 §2.1)', () => {
    assert.deepEqual(bearerToken(undefined), { problem: 'missing' });
    assert.deepEqual(bearerToken('Basic abc'), { problem: 'missing' });
    assert.deepEqual(bearerToken('Bearer'), { problem: 'malformed' });
    assert.deepEqual(bearerToken('Bearer a b'), { problem: 'malformed' });
    assert.deepEqual(bearerToken('Bearer ' + 'a'.repeat(5000)), { problem: 'malformed' });
    assert.deepEqual(bearerToken('bearer abc.def.ghi'), { token: 'abc.def.ghi' });
  });
});

describe('box auth against arbitrary input (fast-check)', () => {
  it('never accepts, and never throws on, a bearer header that is not a token we issued', () => {
    const issued = issueToken(secrets, 600).access_token;
    const [h, p] = issued.split('.');
    const near = fc.oneof(
      fc.string(),
      fc.tuple(fc.string(), fc.string(), fc.string()).map(([a, b, c]) => `${a}.${b}.${c}`),
      fc.string().map((sig) => `${h}.${p}.${sig}`),
      fc.jsonValue().map((v) => `${h}.${b64url(v)}.${issued.split('.')[2]}`),
      fc.jsonValue().map((v) => `${b64url(v)}.${p}.${issued.split('.')[2]}`),
    );
    fc.assert(
      fc.property(near, (t) => {
        fc.pre(t !== issued);
        const b = bearerToken('Bearer ' + t);
        if ('token' in b) assert.equal(verifyToken(b.token, secrets).ok, false);
      }),
      { numRuns: 500 },
    );
  });

  it('parses any token request body into a request or a TokenRequestError, never anything else', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.jsonValue().map((v) => JSON.stringify(v)),
        ),
        fc.constantFrom('application/json', 'application/x-www-form-urlencoded', ''),
        fc.option(fc.string(), { nil: undefined }),
        (body, ct, auth) => {
          try {
            const r = parseTokenRequest(
              { rawBody: Buffer.from(body) },
              auth === undefined ? {} : { authorization: auth },
              ct,
            );
            assert.equal(requestAuthenticates(secrets, r), false);
          } catch (e) {
            if (!(e instanceof TokenRequestError)) throw e;
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
