/**
 * The WXBizMsgCrypt scheme and WeChat's signatures against every public vector we hold:
 * test/vectors/wechat-crypto.json (Tencent's samples) and test/vectors/wechat-crypto-extra.json (SDK tests and
 * real captures), plus round trips and tampering checks of our own.
 */
import * as assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { inspect } from 'node:util';
import fc from 'fast-check';
import {
  aesKeyOf,
  decryptRaw,
  encryptRaw,
  isEncodingAESKey,
  pad32,
  unpad32,
  WechatCryptoError,
  WXBizMsgCrypt,
} from '../../lib/wechat/crypto';
import {
  msgSignature,
  plainSignature,
  sha1Signature,
  signatureMatches,
  verifyMsgSignature,
  verifyPlainSignature,
} from '../../lib/wechat/signature';
import { parseWechatXml } from '../../lib/wechat/xml';
import { repoRoot } from '../harness/paths';

function vectors(name: string): any {
  return JSON.parse(fs.readFileSync(path.join(repoRoot, 'test', 'vectors', name), 'utf8'));
}

const shared = vectors('wechat-crypto.json');
const extra = vectors('wechat-crypto-extra.json').vectors as any[];

function cryptoError(code: string): (e: unknown) => boolean {
  return (e) => e instanceof WechatCryptoError && e.code === code;
}

describe('WeChat signatures', () => {
  it('signs the shared plain vectors (789/456/123 …)', () => {
    for (const v of shared.plainSignatures) {
      assert.equal(plainSignature(v.token, v.timestamp, v.nonce), v.signature);
      assert.ok(verifyPlainSignature(v.token, v));
    }
  });

  for (const v of extra.filter((x) => x.kind.startsWith('plain-signature'))) {
    it(`matches ${v.id}`, () => {
      if (v.inputs) assert.equal(sha1Signature(...v.inputs), v.signature);
      else {
        assert.equal(plainSignature(v.token, v.timestamp, v.nonce), v.signature);
        assert.ok(verifyPlainSignature(v.token, v));
      }
    });
  }

  for (const v of extra.filter((x) => x.kind === 'negative-signature')) {
    it(`refuses ${v.id}`, () => {
      if (v.encrypt) {
        assert.equal(verifyMsgSignature(v.token, v, v.encrypt), false);
        const c = new WXBizMsgCrypt(v.token, v.key, v.appId);
        assert.throws(
          () => c.decryptMessage(v.msg_signature, v.timestamp, v.nonce, v.encrypt),
          cryptoError('signature'),
        );
      } else {
        assert.equal(verifyPlainSignature(v.token, v), false);
      }
    });
  }

  it('checks both signatures of the official compatible-mode sample (vector C)', () => {
    const c = shared.C;
    assert.ok(verifyPlainSignature(c.token, c));
    const encrypt = (parseWechatXml(c.body) as any).Encrypt;
    assert.equal(msgSignature(c.token, c.timestamp, c.nonce, encrypt), c.msg_signature);
  });

  it('compares case-insensitively and refuses anything that is not the right length of hex', () => {
    const sig = plainSignature('t', '1', '2');
    assert.ok(signatureMatches(sig.toUpperCase(), sig));
    assert.equal(signatureMatches(sig.slice(1), sig), false);
    assert.equal(signatureMatches(sig.replace(/./, 'z'), sig), false);
    assert.equal(signatureMatches(undefined, sig), false);
    assert.equal(signatureMatches(['x'], sig), false);
    assert.equal(verifyPlainSignature('', { signature: sig, timestamp: '1', nonce: '2' }), false);
    assert.equal(verifyPlainSignature('t', { signature: sig, timestamp: '1', nonce: null }), false);
  });
});

describe('WXBizMsgCrypt', () => {
  describe('Tencent official samples (test/vectors/wechat-crypto.json)', () => {
    const a = shared.A;
    const rnd = Buffer.from(a.random, 'latin1');
    it('encrypts the Java sample byte for byte (A: plain1 and plain2)', () => {
      const c = new WXBizMsgCrypt(a.token, a.key, a.appId);
      assert.equal(c.encrypt(a.plain1, rnd), a.encrypt1);
      assert.equal(c.encrypt(a.plain2, rnd), a.encrypt2);
    });
    it('decrypts them back, with the AppID checked', () => {
      const c = new WXBizMsgCrypt(a.token, a.key, a.appId);
      assert.equal(c.decrypt(a.encrypt1).toString('utf8'), a.plain1);
      assert.equal(c.decrypt(a.encrypt2).toString('utf8'), a.plain2);
    });
    it('decrypts the official compatible-mode push (C) to the same message as its plain fields', () => {
      const v = shared.C;
      const outer = parseWechatXml(v.body) as any;
      const c = new WXBizMsgCrypt(v.token, v.key, v.appId);
      const inner = parseWechatXml(
        c.decryptMessage(v.msg_signature, v.timestamp, v.nonce, outer.Encrypt),
      ) as any;
      for (const k of ['ToUserName', 'FromUserName', 'CreateTime', 'MsgType', 'Content', 'MsgId']) {
        assert.equal(inner[k], outer[k], k);
      }
      assert.equal(inner.MsgId, '6054768590064713728');
    });
    it('decrypts the wechatpy case (F)', () => {
      const f = shared.F;
      const c = new WXBizMsgCrypt(f.token, f.key, f.appId);
      const inner = parseWechatXml(c.decryptMessage(f.msg_signature, f.timestamp, f.nonce, f.encrypt)) as any;
      assert.equal(inner.FromUserName, f.fromUser);
      assert.equal(inner.Content, f.text);
      assert.equal(inner.MsgId, f.msgId);
    });
  });

  describe('every decryptable vector of test/vectors/wechat-crypto-extra.json', () => {
    for (const v of extra.filter((x) => x.encrypt && x.kind !== 'negative-appid')) {
      it(`${v.id}: plaintext, AppID and random prefix as recorded`, () => {
        const d = decryptRaw(aesKeyOf(v.key), v.encrypt);
        assert.equal(d.message.toString('utf8'), v.verified_locally.derived_plaintext);
        assert.equal(d.appId, v.verified_locally.derived_appId);
        assert.equal(d.random.toString('latin1'), v.verified_locally.derived_random);
        if (v.msg_signature && v.verified_locally.msg_signature_matches) {
          const c = new WXBizMsgCrypt(v.token, v.key, v.appId);
          const msg = c.decryptMessage(v.msg_signature, v.timestamp, v.nonce, v.encrypt);
          assert.equal(msg.toString('utf8'), v.verified_locally.derived_plaintext);
        }
        if (v.plaintext_assertions) {
          const fields = parseWechatXml(d.message) as any;
          for (const [k, val] of Object.entries(v.plaintext_assertions)) assert.equal(fields[k], val, k);
        }
        if (v.plaintext) assert.equal(d.message.toString('utf8'), v.plaintext);
      });
    }
  });

  it('pad bytes above 16 (Node would throw "bad decrypt") decrypt: the vectors cover 4 … 30', () => {
    const pads = extra.filter((x) => x.verified_locally?.pkcs7_pad_bytes > 16).map((x) => x.id);
    assert.ok(pads.length >= 5, pads.join());
  });

  for (const v of extra.filter((x) => x.kind.startsWith('encrypt (deterministic random)'))) {
    it(`${v.id}: encrypts byte for byte with the recorded random prefix`, () => {
      const c = new WXBizMsgCrypt(v.token, v.key, v.appId);
      const enc = c.encrypt(v.plaintext, Buffer.from(v.random, 'latin1'));
      assert.equal(enc, v.encrypt);
      if (v.msg_signature) assert.equal(c.sign(v.timestamp, v.nonce, enc), v.msg_signature);
    });
  }

  it('json-receiveid-*: re-encrypts to the recorded ciphertext (random = nonce)', () => {
    for (const v of extra.filter((x) => x.id.startsWith('json-receiveid'))) {
      const c = new WXBizMsgCrypt(v.token, v.key, v.appId);
      const env = c.encryptReply(
        v.verified_locally.derived_plaintext,
        v.timestamp,
        v.nonce,
        Buffer.from(v.random),
      );
      assert.equal(env.encrypt, v.encrypt);
      assert.equal(env.msgSignature, v.msg_signature);
    }
  });

  it('refuses a message encrypted for another AppID (easywechat-encryptor-bad-appid)', () => {
    const v = extra.find((x) => x.id === 'easywechat-encryptor-bad-appid');
    const c = new WXBizMsgCrypt(v.token, v.key, v.appId);
    assert.throws(
      () => c.decryptMessage(v.msg_signature, v.timestamp, v.nonce, v.encrypt),
      cryptoError('appid'),
    );
  });

  it('accepts both spellings of a key whose last character carries unused bits (wxjava-key-alias)', () => {
    const v = extra.find((x) => x.id === 'wxjava-key-alias');
    assert.deepEqual(aesKeyOf(v.key), aesKeyOf(shared.A.key));
  });

  it('refuses keys that are not 43 base64 characters, without echoing them', () => {
    for (const bad of ['', 'short', 'a'.repeat(44), 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEF!']) {
      assert.equal(isEncodingAESKey(bad), false);
      assert.throws(
        () => new WXBizMsgCrypt('t', bad, 'wx'),
        (e: unknown) => cryptoError('key')(e) && !(bad && (e as Error).message.includes(bad)),
      );
    }
    assert.throws(() => new WXBizMsgCrypt('', shared.A.key, 'wx'), cryptoError('key'));
  });

  it('round-trips any message (UTF-8, any length), and the padding is always 1..32 to a 32-byte multiple', () => {
    const c = new WXBizMsgCrypt('tok', shared.A.key, 'wxabc');
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 300 }), (s) => {
        const enc = c.encrypt(s);
        const raw = Buffer.from(enc, 'base64');
        assert.equal(raw.length % 32, 0);
        assert.equal(c.decrypt(enc).toString('utf8'), s);
      }),
      { numRuns: 200 },
    );
  });

  it('pad32/unpad32: refuses bad padding (0, > 32, inconsistent bytes)', () => {
    for (let n = 0; n < 70; n++) {
      const b = randomBytes(n);
      const p = pad32(b);
      assert.equal(p.length % 32, 0);
      assert.deepEqual(unpad32(p), b);
    }
    assert.throws(() => unpad32(Buffer.alloc(32, 0)), cryptoError('padding'));
    assert.throws(() => unpad32(Buffer.alloc(64, 33)), cryptoError('padding'));
    const bad = Buffer.alloc(32, 5);
    bad[28] = 4;
    assert.throws(() => unpad32(bad), cryptoError('padding'));
    assert.throws(() => unpad32(Buffer.alloc(0)), cryptoError('padding'));
  });

  it('refuses garbage ciphertexts with a WechatCryptoError, never an OpenSSL error or a crash', () => {
    const key = aesKeyOf(shared.A.key);
    for (const bad of [
      '',
      '!!!',
      'abc',
      Buffer.alloc(17).toString('base64'),
      randomBytes(48).toString('base64'),
    ]) {
      assert.throws(
        () => decryptRaw(key, bad),
        (e: unknown) => e instanceof WechatCryptoError,
      );
    }
    // Valid padding, but a length field pointing past the end (a wrong key looks like this).
    const plain = pad32(
      Buffer.concat([randomBytes(16), Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.from('x')]),
    );
    const ci = createCipheriv('aes-256-cbc', key, key.subarray(0, 16));
    ci.setAutoPadding(false);
    const enc = Buffer.concat([ci.update(plain), ci.final()]).toString('base64');
    assert.throws(() => decryptRaw(key, enc), cryptoError('layout'));
  });

  it('a flipped ciphertext bit, a wrong token or a wrong nonce fails the msg_signature before decrypting', () => {
    const c = new WXBizMsgCrypt('tok', shared.A.key, 'wxabc');
    const env = c.encryptReply('<xml><a>1</a></xml>', '1700000000', '42');
    const flipped = Buffer.from(env.encrypt, 'base64');
    flipped[5] ^= 1;
    assert.throws(
      () => c.decryptMessage(env.msgSignature, env.timestamp, env.nonce, flipped.toString('base64')),
      cryptoError('signature'),
    );
    assert.throws(
      () => c.decryptMessage(env.msgSignature, env.timestamp, '43', env.encrypt),
      cryptoError('signature'),
    );
    const other = new WXBizMsgCrypt('tok2', shared.A.key, 'wxabc');
    assert.throws(
      () => other.decryptMessage(env.msgSignature, env.timestamp, env.nonce, env.encrypt),
      cryptoError('signature'),
    );
    assert.equal(
      c.decryptMessage(env.msgSignature, env.timestamp, env.nonce, env.encrypt).toString(),
      '<xml><a>1</a></xml>',
    );
  });

  it('never shows the key or the token when inspected or serialised', () => {
    const c = new WXBizMsgCrypt('SECRET-TOKEN', shared.A.key, 'wxabc');
    const shown = JSON.stringify(c) + inspect(c, { showHidden: true, depth: 5 });
    assert.ok(!shown.includes('SECRET-TOKEN'));
    assert.ok(!shown.includes(shared.A.key));
    assert.ok(shown.includes('wxabc'));
  });

  it('encryptRaw/decryptRaw agree with the class', () => {
    const key = aesKeyOf(shared.A.key);
    const enc = encryptRaw(key, 'hello', 'wxid');
    const d = decryptRaw(key, enc);
    assert.equal(d.message.toString(), 'hello');
    assert.equal(d.appId, 'wxid');
  });
});
