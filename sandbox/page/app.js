// The sandbox page: be the WeChat user (left) and the CXone agent (right). Talks only to the sandbox's own API.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  let state = null;
  let version = -1;
  let selected = null;
  let typingOn = false;
  let typingTimer = null;
  const renderedKeys = {};

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k === 'className') e.className = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children || []) if (c) e.appendChild(c);
    return e;
  }

  async function api(path, body) {
    const res = await fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body || {}),
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(data.error || `HTTP ${res.status}`);
    return data;
  }

  function time(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  function readFile(input) {
    return new Promise((resolve, reject) => {
      const f = input.files && input.files[0];
      if (!f) return resolve(null);
      const r = new FileReader();
      r.onload = () => {
        const s = String(r.result);
        resolve({ dataBase64: s.slice(s.indexOf(',') + 1), mimeType: f.type, name: f.name });
      };
      r.onerror = () => reject(new Error('the file could not be read'));
      r.readAsDataURL(f);
    });
  }

  // --- Rendering ----------------------------------------------------------------------------------------------

  /** Replaces the children of `box` only when `key` changed; keeps the scroll at the bottom if it was. */
  function fill(box, key, nodes) {
    if (renderedKeys[box.id] === key) return;
    renderedKeys[box.id] = key;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.replaceChildren(...nodes);
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  function pushMeta(e) {
    if (!e.push) return null;
    const p = e.push;
    const mode = p.mode === 'safe' ? 'encrypted' : 'plain';
    let text;
    if (p.state === 'sending') text = `sending to the webhook (${mode})…`;
    else if (p.state === 'acknowledged')
      text = `✓ WeChat got "success" (${mode}${p.attempts > 1 ? `, after ${p.attempts - 1} retr${p.attempts > 2 ? 'ies' : 'y'}` : ''})`;
    else text = `✗ not acknowledged: ${p.problem || 'no answer'}`;
    return el('span', { className: 'meta', text });
  }

  function renderWechat() {
    const chat = state.wechat.chat;
    const nodes = chat.map((e) => {
      const cls = `msg ${e.from === 'user' ? 'from-user' : 'from-account'} kind-${e.kind}`;
      const body = [];
      if (e.imageUrl) body.push(el('img', { src: e.imageUrl, alt: 'picture' }));
      if (e.location)
        body.push(
          el('span', {
            text: `◉ ${e.location.label} (${e.location.latitude.toFixed(4)}, ${e.location.longitude.toFixed(4)})`,
          }),
        );
      if (e.text) body.push(el('span', { className: 'text', text: e.text }));
      if (e.from === 'user') body.push(pushMeta(e));
      else if (e.via === 'passive-reply')
        body.push(el('span', { className: 'meta', text: 'passive reply (in WeChat’s own request)' }));
      return el('div', { className: cls, 'data-id': e.id }, body);
    });
    if (!nodes.length)
      nodes.push(
        el('p', {
          className: 'empty',
          text: 'Say hello to the Official Account: type below and press Send.',
        }),
      );
    fill($('wx-messages'), JSON.stringify(chat), nodes);
    $('wx-typing').hidden = !state.wechat.typing;
    const s = state.settings;
    $('wx-quota').textContent =
      s.repliesLeft > 0
        ? `WeChat would accept ${s.repliesLeft} more customer-service message(s) to you now`
        : 'WeChat accepts no customer-service message to you now: write something to open the 48-hour window';
  }

  function statusOf(m) {
    if (m.direction !== 'outbound') return null;
    if (m.status === 'failed')
      return el('span', { className: 'meta' }, [
        el('span', { className: 'status failed', text: `failed: ${m.reason || 'not delivered'}` }),
      ]);
    if (m.status === 'delivered' || m.status === 'seen')
      return el('span', { className: 'meta' }, [
        el('span', { className: 'status delivered', text: `✓ ${m.status}` }),
      ]);
    return el('span', { className: 'meta' }, [
      el('span', { className: 'status pending', text: 'sent, no delivery status yet' }),
    ]);
  }

  const keyOf = (t) => `${t.channelId}\n${t.threadId}`;
  const selectedThread = () => (state ? state.cxone.threads.find((t) => keyOf(t) === selected) : undefined);

  function renderAgent() {
    const threads = state.cxone.threads;
    const channels = new Set(threads.map((t) => t.channelId));
    if (!selected && threads.length) selected = keyOf(threads[0]);
    fill(
      $('cx-threads'),
      JSON.stringify([selected, threads.map((t) => [t.channelId, t.threadId, t.messages.length])]),
      threads.map((t) => {
        const last = t.messages[t.messages.length - 1];
        const li = el(
          'li',
          {
            className: keyOf(t) === selected ? 'active' : '',
            'data-thread': t.threadId,
            'data-channel': t.channelId,
          },
          [
            el('b', { text: t.name }),
            channels.size > 1 ? el('span', { className: 'last', text: `channel ${t.channelId}` }) : null,
            el('span', {
              className: 'last',
              text: last ? last.text || (last.attachments.length ? '↧ attachment' : '') : '',
            }),
          ],
        );
        li.addEventListener('click', () => {
          selected = keyOf(t);
          renderAgent();
        });
        return li;
      }),
    );
    const t = threads.find((x) => keyOf(x) === selected);
    const msgs = t ? t.messages : [];
    const nodes = msgs.map((m) => {
      const body = [];
      for (const a of m.attachments) {
        if (/\.(png|jpe?g|gif|bmp)$/i.test(a.name) || /\/files\/temporary\/|\/media\//.test(a.url))
          body.push(el('img', { src: a.url, alt: a.name }));
        body.push(el('a', { href: a.url, target: '_blank', rel: 'noopener', text: `↧ ${a.name}` }));
      }
      if (m.text) body.push(el('span', { className: 'text', text: m.text }));
      body.push(
        el('span', {
          className: 'meta',
          text: `${m.direction === 'inbound' ? 'customer' : 'you'} · ${time(m.at)}`,
        }),
      );
      body.push(statusOf(m));
      return el('div', { className: `msg ${m.direction}`, 'data-id': m.id }, body);
    });
    if (!nodes.length)
      nodes.push(
        el('p', {
          className: 'empty',
          text: 'No conversation yet. Write something as the WeChat user on the left.',
        }),
      );
    fill($('cx-messages'), JSON.stringify([selected, msgs]), nodes);
    $('cx-send').disabled = !selected;
  }

  function renderLog() {
    const items = state.log
      .slice()
      .reverse()
      .map((l) =>
        el('li', { className: l.level }, [
          el('time', { text: time(l.at) }),
          el('span', { className: 'who', text: l.who }),
          el('span', { text: l.text }),
        ]),
      );
    fill(
      $('log'),
      `${state.log.length}:${state.log.length ? state.log[state.log.length - 1].at : 0}:${state.version}`,
      items,
    );
  }

  function render() {
    $('wx-account').textContent = state.account.originalId;
    $('wx-user').textContent = state.user.name;
    $('cx-channel').textContent = state.channelId;
    for (const id of ['link-editor', 'link-editor-2']) $(id).href = state.links.editor;
    $('chk-safe').checked = state.settings.safeMode;
    const clock = $('clock');
    clock.hidden = !state.settings.clockOffsetHours;
    clock.textContent = `WeChat clock +${state.settings.clockOffsetHours} h`;
    const outage = $('outage');
    outage.hidden = !state.settings.outageSeconds;
    outage.textContent = `CXone down: ${state.settings.outageSeconds} s left`;
    $('btn-outage').disabled = !!state.settings.outageSeconds;
    renderWechat();
    renderAgent();
    renderLog();
  }

  async function poll() {
    for (;;) {
      try {
        const res = await fetch(`/api/state?since=${version}`, { cache: 'no-store' });
        if (!res.ok) throw new Error(String(res.status));
        state = await res.json();
        version = state.version;
        render();
        // The outage countdown and the typing indicator change with time alone.
        if (state.settings.outageSeconds || state.wechat.typing)
          await new Promise((r) => setTimeout(r, 1000));
      } catch {
        await new Promise((r) => setTimeout(r, 1500));
      }
    }
  }

  // --- The WeChat user ----------------------------------------------------------------------------------------

  $('wx-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = $('wx-input');
    const text = input.value.trim();
    if (!text) return;
    input.value = '';
    await api('/api/user/text', { text }).catch((e) => alert(e.message));
  });
  $('wx-photo').addEventListener('click', () => api('/api/user/image', {}).catch((e) => alert(e.message)));
  $('wx-location').addEventListener('click', () =>
    api('/api/user/location', {}).catch((e) => alert(e.message)),
  );
  $('wx-file').addEventListener('change', async (ev) => {
    const pic = await readFile(ev.target);
    ev.target.value = '';
    if (pic) await api('/api/user/image', pic).catch((e) => alert(e.message));
  });

  // --- The CXone agent ----------------------------------------------------------------------------------------

  function setTyping(on) {
    const t = selectedThread();
    if (!t || typingOn === on) return;
    typingOn = on;
    api('/api/agent/typing', { threadId: t.threadId, channelId: t.channelId, typing: on }).catch(
      () => undefined,
    );
  }

  $('cx-input').addEventListener('input', () => {
    if ($('cx-input').value) setTyping(true);
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => setTyping(false), 5000);
  });

  async function agentSend(extra) {
    const input = $('cx-input');
    const text = input.value.trim();
    const attachSample = $('cx-attach').checked;
    const t = selectedThread();
    if (!t || (!text && !attachSample && !extra)) return;
    $('cx-error').textContent = '';
    clearTimeout(typingTimer);
    typingOn = false;
    input.value = '';
    $('cx-attach').checked = false;
    try {
      await api('/api/agent/reply', {
        threadId: t.threadId,
        channelId: t.channelId,
        text,
        attachSample,
        ...(extra || {}),
      });
    } catch (e) {
      $('cx-error').textContent = e.message;
    }
  }

  $('cx-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    void agentSend();
  });
  $('cx-file').addEventListener('change', async (ev) => {
    const pic = await readFile(ev.target);
    ev.target.value = '';
    if (pic) await agentSend(pic);
  });

  // --- The buttons --------------------------------------------------------------------------------------------

  $('btn-jump').addEventListener('click', () =>
    api('/api/clock/jump', { hours: 49 }).catch((e) => alert(e.message)),
  );
  $('btn-outage').addEventListener('click', () =>
    api('/api/cxone/outage', { seconds: 10 }).catch((e) => alert(e.message)),
  );
  $('chk-safe').addEventListener('change', (ev) =>
    api('/api/safe-mode', { on: ev.target.checked }).catch((e) => alert(e.message)),
  );
  $('own').addEventListener('toggle', async () => {
    if (!$('own').open || $('own-settings').childElementCount) return;
    const res = await fetch('/api/settings');
    const s = await res.json();
    const parts = [];
    for (const [type, fields] of Object.entries(s)) {
      parts.push(el('h3', { text: type }));
      parts.push(
        el(
          'table',
          {},
          Object.entries(fields).map(([k, v]) =>
            el('tr', {}, [el('td', { text: k }), el('td', { text: v })]),
          ),
        ),
      );
    }
    $('own-settings').replaceChildren(...parts);
  });

  void poll();
})();
