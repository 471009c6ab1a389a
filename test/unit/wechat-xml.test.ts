/**
 * WeChat XML in and out: every fixture parses with all values as strings; DOCTYPE, entity bombs, deep or huge
 * documents are refused before parsing; the writer survives `]]>` and control characters.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import {
  buildXml,
  cdata,
  decodeEntities,
  parseWechatXml,
  parseXml,
  xmlText,
  XmlError,
  type XmlObject,
} from '../../lib/wechat/xml';
import { fixturesDir } from '../harness/paths';

const wechatDir = path.join(fixturesDir, 'wechat');
const fixtures = fs.readdirSync(wechatDir).filter((f) => f.endsWith('.xml'));

function xmlError(code: string, status?: number): (e: unknown) => boolean {
  return (e) => e instanceof XmlError && e.code === code && (status === undefined || e.status === status);
}

function allStrings(v: unknown): boolean {
  if (typeof v === 'string') return true;
  if (Array.isArray(v)) return v.every(allStrings);
  if (v && typeof v === 'object') return Object.values(v).every(allStrings);
  return false;
}

describe('WeChat XML parsing', () => {
  it(`parses all ${fixtures.length} fixtures with every value a string`, () => {
    assert.ok(fixtures.length >= 60);
    for (const f of fixtures) {
      const fields = parseWechatXml(fs.readFileSync(path.join(wechatDir, f)));
      assert.ok(Object.keys(fields).length > 0, f);
      assert.ok(allStrings(fields), f);
    }
  });

  it('keeps MsgId and MsgID beyond 2^53 exactly', () => {
    assert.equal(
      parseWechatXml(fs.readFileSync(path.join(wechatDir, 'msg-text.xml'))).MsgId,
      '23892468385179204',
    );
    const t = parseWechatXml(fs.readFileSync(path.join(wechatDir, 'event-templatesendjobfinish.xml')));
    assert.equal(t.MsgID, '2702600966117900288');
  });

  it('keeps lists as arrays even with one element, nested objects as objects', () => {
    const pic = parseWechatXml(fs.readFileSync(path.join(wechatDir, 'event-pic_weixin.xml'))) as any;
    assert.deepEqual(pic.SendPicsInfo, {
      Count: '1',
      PicList: { item: [{ PicMd5Sum: '5a75aaca956d97be686719218f275c6b' }] },
    });
    const pub = parseWechatXml(
      fs.readFileSync(path.join(wechatDir, 'event-publishjobfinish-fail.xml')),
    ) as any;
    assert.deepEqual(pub.PublishEventInfo.fail_idx, ['1', '2']);
    const pop = parseWechatXml(
      fs.readFileSync(path.join(wechatDir, 'event-subscribe_msg_popup_event.xml')),
    ) as any;
    assert.equal(pop.SubscribeMsgPopupEvent.List.length, 2);
    assert.equal(pop.SubscribeMsgPopupEvent.List[1].SubscribeStatusString, 'reject');
    const mass = parseWechatXml(fs.readFileSync(path.join(wechatDir, 'event-masssendjobfinish.xml'))) as any;
    assert.equal(mass.CopyrightCheckResult.ResultList.item[1].OriginalArticleUrl, 'Url_2');
  });

  it('takes CDATA as written (no trimming, no entity decoding) and decodes entities only outside CDATA', () => {
    const f = parseWechatXml(
      '<xml><A><![CDATA[  a &amp; b <c> ]]></A><B> 1 &amp; 2 &#x4F60;&#22909; &foo; </B><C/><D></D><E><![CDATA[]]></E></xml>',
    );
    assert.equal(f.A, '  a &amp; b <c> ');
    assert.equal(f.B, '1 & 2 你好 &foo;');
    assert.equal(f.C, '');
    assert.equal(f.D, '');
    assert.equal(f.E, '');
  });

  it('accepts a leading BOM, an XML declaration, comments and CRLF', () => {
    const f = parseWechatXml(
      '\uFEFF<?xml version="1.0" encoding="UTF-8"?>\r\n<!-- hi --><xml>\r\n<A>1</A>\r\n</xml>\r\n',
    );
    assert.deepEqual(f, { A: '1' });
  });

  it('refuses a DOCTYPE (billion laughs, external entity) before parsing: 400', () => {
    const bomb =
      '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">' +
      '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><xml><Content>&lol3;</Content></xml>';
    assert.throws(() => parseWechatXml(bomb), xmlError('doctype', 400));
    const xxe =
      '<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><Content>&xxe;</Content></xml>';
    assert.throws(() => parseWechatXml(xxe), xmlError('doctype', 400));
    assert.throws(() => parseWechatXml('<!doctype xml><xml/>'), xmlError('doctype'));
    assert.throws(() => parseWechatXml('<xml><!ENTITY a "b"><A/></xml>'), xmlError('doctype'));
  });

  it('does not take "<!DOCTYPE" typed by a user inside CDATA for a declaration', () => {
    const f = parseWechatXml(
      '<xml><Content><![CDATA[<!DOCTYPE x [<!ENTITY a "b">]> ]]]]><![CDATA[>]]></Content></xml>',
    );
    assert.equal(f.Content, '<!DOCTYPE x [<!ENTITY a "b">]> ]]>');
  });

  it('refuses processing instructions other than the leading declaration', () => {
    assert.throws(() => parseWechatXml('<xml><?php echo 1; ?><A/></xml>'), xmlError('instruction'));
    assert.throws(() => parseWechatXml('<xml/><?xml version="1.0"?>'), xmlError('instruction'));
  });

  it('refuses documents that are too large (413), too deep or have too many elements (400)', () => {
    const big = '<xml><A><![CDATA[' + 'x'.repeat(300 * 1024) + ']]></A></xml>';
    assert.throws(() => parseWechatXml(big), xmlError('too-large', 413));
    assert.throws(
      () => parseWechatXml('<xml>' + '<a>'.repeat(40) + '</a>'.repeat(40) + '</xml>'),
      xmlError('too-deep', 400),
    );
    assert.throws(() => parseWechatXml('<xml>' + '<a/>'.repeat(3000) + '</xml>'), xmlError('too-many', 400));
    assert.throws(() => parseWechatXml('<xml><a/><a/><a/></xml>', { maxElements: 3 }), xmlError('too-many'));
    assert.throws(() => parseWechatXml('<xml><a></a></xml>', { maxBytes: 10 }), xmlError('too-large'));
  });

  it('refuses malformed documents with 400', () => {
    for (const bad of [
      '',
      '   ',
      'hello',
      '{"ToUserName":"gh"}',
      '<xml>',
      '<xml><a></xml>',
      '<xml><a></b></xml>',
      '<xml></xml><xml></xml>',
      '<xml><A><![CDATA[x</A></xml>',
      '<xml><!-- x </xml>',
      '<xml><A>a & b</A></xml>',
      '<xml a="1></xml>',
      '<xml>text</xml>',
    ]) {
      assert.throws(
        () => parseWechatXml(bad),
        (e: unknown) => e instanceof XmlError && e.status === 400,
        bad,
      );
    }
  });

  it('wants <xml> as the root', () => {
    assert.throws(() => parseWechatXml('<foo><A>1</A></foo>'), xmlError('root'));
    assert.deepEqual(parseXml('<foo><A>1</A></foo>'), { root: 'foo', value: { A: '1' } });
  });

  it('never creates __proto__/constructor properties from element names', () => {
    let f: XmlObject | undefined;
    try {
      f = parseWechatXml('<xml><constructor>1</constructor><prototype>2</prototype><A>3</A></xml>');
    } catch (e) {
      assert.ok(e instanceof XmlError);
      return;
    }
    assert.equal(Object.prototype.hasOwnProperty.call(f, 'constructor'), false);
    assert.equal(f.A, '3');
    assert.equal(({} as any).polluted, undefined);
  });

  it('decodeEntities handles the predefined entities and code points, leaves the rest alone', () => {
    assert.equal(decodeEntities('&lt;&gt;&amp;&quot;&apos;'), '<>&"\'');
    assert.equal(decodeEntities('&#0; &#xD800; &#x110000; &nbsp;'), '&#0; &#xD800; &#x110000; &nbsp;');
    assert.equal(decodeEntities('&#128512;'), '😀');
  });

  it('any string survives write → parse unchanged, whatever it contains', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 200 }), (s) => {
        const xml = buildXml({ Content: s, N: 5 });
        const expected = s.replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g, '');
        assert.equal(parseWechatXml(xml).Content, expected);
      }),
      { numRuns: 300 },
    );
    assert.equal(parseWechatXml(buildXml({ Content: 'a]]>b]]>' })).Content, 'a]]>b]]>');
  });
});

describe('WeChat XML writing', () => {
  it('writes strings as CDATA, numbers and xmlText as escaped text, arrays as repeated elements', () => {
    const xml = buildXml({
      ToUserName: 'o1',
      CreateTime: 12345,
      TimeStamp: xmlText('1<2'),
      Articles: { item: [{ Title: 'a' }, { Title: 'b' }] },
      Skipped: undefined,
      Null: null,
    });
    assert.equal(
      xml,
      '<xml><ToUserName><![CDATA[o1]]></ToUserName><CreateTime>12345</CreateTime><TimeStamp>1&lt;2</TimeStamp>' +
        '<Articles><item><Title><![CDATA[a]]></Title></item><item><Title><![CDATA[b]]></Title></item></Articles></xml>',
    );
  });

  it('splits "]]>" inside text so the CDATA section cannot be closed early', () => {
    assert.equal(cdata(']]>'), '<![CDATA[]]]]><![CDATA[>]]>');
    const xml = buildXml({ Content: 'x]]><evil/>' });
    assert.ok(!xml.includes('<evil/>]]>') || xml.includes(']]]]><![CDATA[>'));
    assert.deepEqual(parseWechatXml(xml), { Content: 'x]]><evil/>' });
  });

  it('refuses element names that are not XML names', () => {
    assert.throws(() => buildXml({ 'a b': 'x' }));
    assert.throws(() => buildXml({ '<x>': 'x' }));
  });
});
