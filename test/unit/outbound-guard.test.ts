/** Outbound fetch rules against a real loopback server: what is refused, and what the sandbox may allow. */
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import axios from 'axios';
import { checkUrl, guardedLookup, isNonPublicAddress, OutboundRefused } from '../../lib/http/outbound-guard';

describe('outbound guard (lib/http/outbound-guard)', () => {
  let server: http.Server;
  let port = 0;
  let hits = 0;
  before(async () => {
    server = http.createServer((_req, res) => {
      hits++;
      res.end('ok');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  after(() => server.close());

  it('classifies addresses', () => {
    for (const ip of [
      '127.0.0.1',
      '10.1.2.3',
      '172.16.0.1',
      '192.168.1.1',
      '169.254.169.254',
      '0.0.0.0',
      '::1',
      'fd00::1',
      'fe80::1',
      '::ffff:127.0.0.1',
      '100.64.0.1',
      // every spelling of an IPv4-mapped or -embedding address (the URL parser turns [::ffff:127.0.0.1] into
      // [::ffff:7f00:1], and no DNS lookup happens for a literal)
      '::ffff:7f00:1',
      '0:0:0:0:0:ffff:7f00:1',
      '::ffff:a9fe:a9fe',
      '::127.0.0.1',
      '::',
      '2002:7f00:1::1',
      '2002:c0a8:101::',
      'fec0::1',
      'FE80::1%eth0',
      '64:ff9b::7f00:1',
      '2001:0:4136:e378::1',
    ]) {
      assert.equal(isNonPublicAddress(ip), true, ip);
    }
    for (const ip of [
      '8.8.8.8',
      '101.226.1.1',
      '2606:4700::1111',
      '::ffff:8.8.8.8',
      '::ffff:808:808',
      '2002:808:808::1',
      '240e:e9::1',
    ])
      assert.equal(isNonPublicAddress(ip), false, ip);
  });

  it('refuses http, credentials in URLs, hosts not allowed and literal private addresses, naming no query', () => {
    assert.throws(
      () => checkUrl('http://example.com/a?access_token=SECRET', {}),
      (e: Error) => e instanceof OutboundRefused && !e.message.includes('SECRET'),
    );
    assert.throws(() => checkUrl('https://u:p@example.com/', {}), /credentials/);
    assert.throws(
      () => checkUrl('https://evil.example/x', { allowedHosts: ['.qpic.cn'] }),
      /not in the allowed hosts/,
    );
    assert.ok(checkUrl('https://mmbiz.qpic.cn/x', { allowedHosts: ['.qpic.cn'] }));
    assert.throws(() => checkUrl('https://169.254.169.254/latest/meta-data', {}), /not public/);
    assert.throws(() => checkUrl('https://[::1]/', {}), /not public/);
    for (const u of [
      'https://[::ffff:127.0.0.1]/',
      'https://[0:0:0:0:0:ffff:127.0.0.1]/',
      'http://[::ffff:a9fe:a9fe]/latest/meta-data',
    ])
      assert.throws(() => checkUrl(u, { allowHttp: true }), /not public/, u);
    assert.throws(() => checkUrl('file:///etc/passwd', {}), /only https/);
    assert.ok(checkUrl(`http://127.0.0.1:${port}/`, { allowHttp: true, allowPrivateNetwork: true }));
  });

  it('refuses a host name that resolves to loopback at connect time, and allows it when the policy does', async () => {
    const before = hits;
    const refused = axios.get(`http://localhost:${port}/`, {
      lookup: guardedLookup({}) as any,
      proxy: false,
      timeout: 2000,
    });
    await assert.rejects(
      refused,
      (e: any) => /non-public/.test(String(e?.message)) || e?.code === 'EWXCXPRIVATE',
    );
    assert.equal(hits, before, 'nothing reached the server');
    const ok = await axios.get(`http://localhost:${port}/`, {
      lookup: guardedLookup({ allowPrivateNetwork: true }) as any,
      proxy: false,
      timeout: 2000,
    });
    assert.equal(ok.data, 'ok');
  });
});
