/**
 * What the admin pages send to the browser: the HTML shell (rendered on the server, text escaped), one script and
 * one stylesheet served from our own path (the CSP allows nothing inline), and the words in English and Chinese.
 * The script renders with textContent only: channel names come from CXone and are never parsed as HTML.
 */

export type AdminLang = 'en' | 'zh';

export const STRINGS: Record<AdminLang, Record<string, string>> = {
  en: {
    title: 'WeChat channels for CXone',
    'mode.action': 'Manage the WeChat channels of this integration',
    'mode.reconnect': 'Reconnect: check the WeChat channels of this integration',
    'mode.remove': 'Remove: delete the WeChat channels of this integration, then go back to CXone',
    signedIn: 'Signed in as {user} for brand {brand}.',
    integration: 'Integration ID',
    noIntegration:
      'No Integration ID is set in the cxone-dfo-config node, so every channel of the brand is listed. Set it to see only this integration’s channels.',
    channels: 'Channels',
    none: 'No channels yet.',
    loading: 'Loading…',
    colName: 'Name',
    colAccount: 'WeChat account',
    colId: 'Channel ID',
    colIcon: 'Icon',
    remove: 'Remove',
    confirmRemove: 'Remove the channel “{name}” from CXone? Conversations on it stop.',
    removed: 'Channel removed.',
    create: 'Create a channel',
    name: 'Name',
    account: 'WeChat account id (gh_… or AppID)',
    icon: 'Icon',
    platform: 'Platform id',
    createBtn: 'Create channel',
    created: 'Channel created: {id}',
    back: 'Back to CXone',
    failed: 'That did not work: {error}',
    expired: 'This session has ended. Open the page again from CXone.',
    errorTitle: 'The page could not be opened',
  },
  zh: {
    title: 'CXone 的微信渠道',
    'mode.action': '管理此集成的微信渠道',
    'mode.reconnect': '重新连接：检查此集成的微信渠道',
    'mode.remove': '移除：删除此集成的微信渠道，然后返回 CXone',
    signedIn: '已登录：{user}（品牌 {brand}）。',
    integration: '集成 ID',
    noIntegration: 'cxone-dfo-config 节点未设置集成 ID，因此列出品牌的所有渠道。设置后只显示此集成的渠道。',
    channels: '渠道',
    none: '还没有渠道。',
    loading: '加载中…',
    colName: '名称',
    colAccount: '微信公众号',
    colId: '渠道 ID',
    colIcon: '图标',
    remove: '移除',
    confirmRemove: '从 CXone 移除渠道“{name}”？该渠道上的会话将停止。',
    removed: '渠道已移除。',
    create: '创建渠道',
    name: '名称',
    account: '微信公众号 ID（gh_… 或 AppID）',
    icon: '图标',
    platform: '平台 ID',
    createBtn: '创建渠道',
    created: '渠道已创建：{id}',
    back: '返回 CXone',
    failed: '操作失败：{error}',
    expired: '会话已结束。请从 CXone 重新打开此页面。',
    errorTitle: '无法打开页面',
  },
};

/** The language of the page from Accept-Language (Chinese when preferred, English otherwise). */
export function pickLang(acceptLanguage: string | undefined): AdminLang {
  const first = String(acceptLanguage ?? '')
    .split(',')[0]
    .trim()
    .toLowerCase();
  return first.startsWith('zh') ? 'zh' : 'en';
}

export function esc(s: unknown): string {
  let t: string;
  if (typeof s === 'string') t = s;
  else if (typeof s === 'number' || typeof s === 'boolean') t = String(s);
  else t = '';
  return t.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function fill(t: string, subs: Record<string, string>): string {
  return t.replace(/\{(\w+)\}/g, (_m, k: string) => subs[k] ?? '');
}

export interface PageModel {
  lang: AdminLang;
  mode: 'action' | 'reconnect' | 'remove';
  csrf: string;
  user: string;
  brand: string;
  channelIntegrationId: string;
  hasBack: boolean;
  icons: readonly string[];
}

export function renderPage(m: PageModel): string {
  const s = STRINGS[m.lang];
  const opts = m.icons
    .map((i) => `<option value="${esc(i)}"${i === 'wechat' ? ' selected' : ''}>${esc(i)}</option>`)
    .join('');
  return `<!DOCTYPE html>
<html lang="${m.lang === 'zh' ? 'zh-CN' : 'en'}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="csrf-token" content="${esc(m.csrf)}">
<title>${esc(s.title)}</title>
<link rel="stylesheet" href="admin/app.css">
</head>
<body data-mode="${esc(m.mode)}">
<main>
<h1>${esc(s.title)}</h1>
<p class="mode">${esc(s['mode.' + m.mode])}</p>
<p class="who">${esc(fill(s.signedIn, { user: m.user, brand: m.brand }))}</p>
${
  m.channelIntegrationId
    ? `<p class="integration">${esc(s.integration)}: <code>${esc(m.channelIntegrationId)}</code></p>`
    : `<p class="note">${esc(s.noIntegration)}</p>`
}
<div id="notice" role="status" aria-live="polite"></div>
<section>
<h2>${esc(s.channels)}</h2>
<table id="channels"><thead><tr><th>${esc(s.colName)}</th><th>${esc(s.colAccount)}</th><th>${esc(
    s.colId,
  )}</th><th>${esc(s.colIcon)}</th><th></th></tr></thead><tbody><tr><td colspan="5">${esc(
    s.loading,
  )}</td></tr></tbody></table>
</section>
<section id="create-section"${m.mode === 'remove' ? ' hidden' : ''}>
<h2>${esc(s.create)}</h2>
<form id="create" autocomplete="off">
<label>${esc(s.name)} <input name="name" maxlength="100" value="WeChat Official Account"></label>
<label>${esc(s.account)} <input name="idOnExternalPlatform" maxlength="100" required></label>
<label>${esc(s.integration)} <input name="channelIntegrationId" maxlength="100" value="${esc(
    m.channelIntegrationId,
  )}" required></label>
<label>${esc(s.icon)} <select name="externalPlatformIcon">${opts}</select></label>
<label>${esc(s.platform)} <input name="realExternalPlatformId" maxlength="60" value="custom"></label>
<button type="submit">${esc(s.createBtn)}</button>
</form>
</section>
${m.hasBack ? `<p><a id="back" class="button" href="admin/back">${esc(s.back)}</a></p>` : ''}
</main>
<script type="application/json" id="strings">${JSON.stringify(s).replace(/</g, '\\u003c')}</script>
<script src="admin/app.js"></script>
</body>
</html>`;
}

export function renderError(lang: AdminLang, message: string, backHref?: string): string {
  const s = STRINGS[lang];
  return `<!DOCTYPE html>
<html lang="${lang === 'zh' ? 'zh-CN' : 'en'}">
<head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><title>${esc(s.errorTitle)}</title>
<link rel="stylesheet" href="admin/app.css"></head>
<body><main><h1>${esc(s.errorTitle)}</h1><p class="error">${esc(message)}</p>
${backHref ? `<p><a class="button" href="${esc(backHref)}">${esc(s.back)}</a></p>` : ''}
</main></body></html>`;
}

export const ADMIN_CSS = `
body{font-family:system-ui,-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei",sans-serif;margin:0;background:#f5f7fa;color:#1f2933}
main{max-width:960px;margin:2rem auto;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #e4e7eb;padding:.5rem;text-align:left;font-size:.9rem;word-break:break-all}
form{display:grid;gap:.6rem;max-width:520px;background:#fff;padding:1rem;border:1px solid #e4e7eb}
label{display:grid;gap:.2rem;font-size:.9rem}
input,select{padding:.4rem;font-size:.95rem}
button,.button{display:inline-block;padding:.45rem .9rem;border:1px solid #2563eb;background:#2563eb;color:#fff;border-radius:4px;cursor:pointer;text-decoration:none;font-size:.9rem}
button.danger{background:#fff;color:#b91c1c;border-color:#b91c1c}
#notice{min-height:1.5rem;margin:1rem 0}
.error{color:#b91c1c}.ok{color:#15803d}.note{color:#52606d}
`;

/** The page's script: list, create, remove, all through same-origin JSON calls carrying the CSRF token. */
export const ADMIN_JS = `(function () {
  'use strict';
  var S = JSON.parse(document.getElementById('strings').textContent);
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute('content');
  var mode = document.body.getAttribute('data-mode');
  var notice = document.getElementById('notice');
  var tbody = document.querySelector('#channels tbody');
  function fill(t, subs) { return t.replace(/\\{(\\w+)\\}/g, function (_, k) { return subs[k] == null ? '' : String(subs[k]); }); }
  function say(text, cls) { notice.textContent = text; notice.className = cls || ''; }
  function api(method, path, body) {
    var init = { method: method, credentials: 'same-origin', headers: { 'Accept': 'application/json', 'X-CSRF-Token': csrf } };
    if (body !== undefined) { init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
    return fetch('admin/api/' + path, init).then(function (res) {
      return res.text().then(function (t) {
        var data = null; try { data = t ? JSON.parse(t) : null; } catch (e) { data = null; }
        if (res.status === 401) throw new Error(S.expired);
        if (!res.ok) throw new Error((data && data.error) || ('HTTP ' + res.status));
        return data;
      });
    });
  }
  function cell(tr, text) { var td = document.createElement('td'); td.textContent = text == null ? '' : String(text); tr.appendChild(td); return td; }
  function render(list) {
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    if (!list.length) { var tr0 = document.createElement('tr'); var td0 = cell(tr0, S.none); td0.colSpan = 5; tbody.appendChild(tr0); return; }
    list.forEach(function (c) {
      var tr = document.createElement('tr');
      tr.setAttribute('data-channel-id', c.id);
      cell(tr, c.name); cell(tr, c.idOnExternalPlatform); cell(tr, c.id); cell(tr, c.externalPlatformIcon);
      var td = cell(tr, '');
      var b = document.createElement('button');
      b.type = 'button'; b.className = 'danger remove'; b.textContent = S.remove;
      b.addEventListener('click', function () {
        if (!window.confirm(fill(S.confirmRemove, { name: c.name || c.id }))) return;
        b.disabled = true;
        api('DELETE', 'channels/' + encodeURIComponent(c.id)).then(function () { say(S.removed, 'ok'); load(); })
          .catch(function (e) { b.disabled = false; say(fill(S.failed, { error: e.message }), 'error'); });
      });
      td.appendChild(b);
      tbody.appendChild(tr);
    });
  }
  function load() {
    return api('GET', 'channels').then(function (d) { render((d && d.channels) || []); })
      .catch(function (e) { say(fill(S.failed, { error: e.message }), 'error'); });
  }
  var form = document.getElementById('create');
  if (form) form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var data = {};
    Array.prototype.forEach.call(form.elements, function (el) { if (el.name) data[el.name] = el.value; });
    var btn = form.querySelector('button'); btn.disabled = true;
    api('POST', 'channels', data).then(function (d) {
      btn.disabled = false; say(fill(S.created, { id: d.channel.id }), 'ok');
      form.elements.idOnExternalPlatform.value = ''; load();
    }).catch(function (e) { btn.disabled = false; say(fill(S.failed, { error: e.message }), 'error'); });
  });
  load();
  void mode;
})();
`;
