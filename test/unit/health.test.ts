/** The health registry: merged figures, statuses, the public view without error texts, Prometheus text. */
import * as assert from 'node:assert/strict';
import { HealthRegistry, prometheusText, publicView, RECENT_ERROR_MS } from '../../lib/health/registry';
import type { OutboxStats } from '../../lib/outbox/types';

const outbox = (o: Partial<OutboxStats> = {}): OutboxStats => ({
  depth: 0,
  retrying: 0,
  delivered: 0,
  dead: 0,
  retries: 0,
  inFlight: 0,
  oldestAgeMs: 0,
  ...o,
});

describe('health registry', function () {
  it('merges several registrations of one node and reports each node once', function () {
    const r = new HealthRegistry();
    r.register({ id: 'cfg', type: 'wechat-config', name: 'Acme' }, () => ({
      store: { kind: 'file', connected: true },
    }));
    r.register({ id: 'cfg', type: 'wechat-config' }, () => ({ token: { ageMs: 120_000 } }));
    r.register({ id: 'out', type: 'wechat-out' }, () => ({ outbox: outbox({ depth: 3, delivered: 10 }) }));
    const s = r.snapshot();
    assert.equal(s.status, 'ok');
    assert.equal(s.nodes.length, 2);
    const cfg = s.nodes.find((n) => n.id === 'cfg')!;
    assert.equal(cfg.name, 'Acme');
    assert.deepEqual(cfg.figures, { store: { kind: 'file', connected: true }, token: { ageMs: 120_000 } });
    assert.equal(s.nodes.find((n) => n.id === 'out')!.figures.outbox!.depth, 3);
  });

  it('is degraded with retries waiting or a recent error, down when a store is unreachable', function () {
    const now = Date.now();
    const r = new HealthRegistry();
    const rep = r.register({ id: 'a', type: 'wechat-out' }, () => ({ outbox: outbox() }));
    assert.equal(r.snapshot(now).status, 'ok');
    rep.error(new Error('WeChat refused the reply: outside the 48 h window (45015)'));
    // The error is stamped with the clock at rep.error(), which may be a few ms after `now` on a slow machine:
    // "old" is measured from a time taken after it.
    const later = Date.now() + RECENT_ERROR_MS + 1;
    assert.equal(r.snapshot(now).status, 'degraded');
    assert.equal(r.snapshot(later).status, 'ok', 'an old error no longer degrades');
    r.register({ id: 'b', type: 'cxone-dfo-out' }, () => ({ outbox: outbox({ retrying: 2 }) }));
    assert.equal(r.snapshot(later).status, 'degraded');
    r.register({ id: 'c', type: 'cxone-dfo-config' }, () => ({
      store: { kind: 'redis', connected: false, error: 'cannot reach Redis at 10.0.0.1:6379' },
    }));
    const s = r.snapshot(now);
    assert.equal(s.status, 'down');
    assert.equal(s.nodes.find((n) => n.id === 'c')!.status, 'down');
  });

  it('takes the newest error from the node, its outbox and its journal; a failing collector is an error, not a crash', function () {
    const r = new HealthRegistry();
    const at = Date.now();
    r.register({ id: 'a', type: 'wechat-out' }, () => ({
      outbox: outbox({ lastError: { at: at - 10, message: 'older' } }),
      journal: {
        pending: 0,
        appended: 0,
        completed: 0,
        replayed: 0,
        dropped: 0,
        lastError: { at, message: 'newer' },
      },
    }));
    r.register({ id: 'b', type: 'wechat-in' }, () => {
      throw new Error('boom');
    });
    const s = r.snapshot(at);
    assert.equal(s.nodes.find((n) => n.id === 'a')!.lastError!.message, 'newer');
    assert.match(s.nodes.find((n) => n.id === 'b')!.lastError!.message, /unavailable: boom/);
  });

  it('tells when the first node registers and the last one leaves', function () {
    const r = new HealthRegistry();
    const seen: boolean[] = [];
    r.onUsage = (u) => seen.push(u);
    const a = r.register({ id: 'a', type: 't' });
    const b = r.register({ id: 'b', type: 't' });
    a.release();
    a.release();
    b.release();
    assert.deepEqual(seen, [true, false]);
    assert.equal(r.snapshot().nodes.length, 0);
  });

  it('the public view keeps figures and statuses but no error texts', function () {
    const r = new HealthRegistry();
    const rep = r.register({ id: 'a', type: 'wechat-out' }, () => ({
      outbox: outbox({ depth: 1, lastError: { at: Date.now(), message: 'openid oABC123 refused' } }),
      store: { kind: 'redis', connected: false, error: 'cannot reach Redis at 10.0.0.1:6379' },
    }));
    rep.error('user oXYZ blocked the account');
    const text = JSON.stringify(publicView(r.snapshot()));
    assert.doesNotMatch(text, /oABC123|oXYZ|10\.0\.0\.1/);
    assert.match(text, /"depth":1/);
    assert.match(text, /"status":"down"/);
  });

  it('writes Prometheus text with one labelled sample per node and figure', function () {
    const r = new HealthRegistry();
    r.register({ id: 'o1', type: 'wechat-out', name: 'Say "hi"' }, () => ({
      outbox: outbox({ depth: 4, retrying: 1, dead: 2, delivered: 7, oldestAgeMs: 1500 }),
      counters: { duplicates: 3 },
    }));
    r.register({ id: 'c1', type: 'wechat-config' }, () => ({
      token: { ageMs: 60_000 },
      store: { kind: 'file', connected: true },
    }));
    const t = prometheusText(r.snapshot());
    assert.match(t, /^# TYPE wxcx_up gauge$/m);
    assert.match(t, /^wxcx_up 1$/m);
    assert.match(t, /^wxcx_outbox_depth\{node="o1",type="wechat-out",name="Say \\"hi\\""\} 4$/m);
    assert.match(t, /^wxcx_outbox_dead_total\{node="o1".*\} 2$/m);
    assert.match(t, /^wxcx_outbox_oldest_age_seconds\{node="o1".*\} 1.5$/m);
    assert.match(t, /^wxcx_token_age_seconds\{node="c1".*\} 60$/m);
    assert.match(t, /^wxcx_store_connected\{node="c1".*\} 1$/m);
    assert.match(t, /^wxcx_duplicates\{node="o1".*\} 3$/m);
    assert.doesNotMatch(t, /wxcx_outbox_depth\{node="c1"/, 'no sample for a node without the figure');
  });
});
