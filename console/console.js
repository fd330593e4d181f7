// The accounts console (docs/console.md). Plain browser JavaScript, no build
// step: it calls only the documented API of its own origin, with the bearer
// token kept in this closure (never in storage, never in a URL).
'use strict';
(() => {
  const PAGE = 50;            // events per table page
  const CHART_FULL_MAX = 1000; // up to this many events, the chart has them all
  const CHART_SAMPLES = 200;   // beyond, this many evenly spaced events (plus the page in view)
  const FEED_ROWS = 200;       // rows the live feed keeps in the page
  const FEED_RETRY_MS = 1000;

  const $ = (id) => document.getElementById(id);
  let token = null;
  let account = null; // { id, version, view: {from, to} }
  let chart = null;

  // Balances are i64: beyond 2^53 a plain JSON.parse would round them.
  const parse = (text) => JSON.parse(text, (key, value, context) =>
    typeof value === 'number' && !Number.isSafeInteger(value) && context && /^-?\d+$/.test(context.source)
      ? BigInt(context.source) : value);

  class ApiRefusal extends Error {
    constructor(status, body) {
      super(body && body.message ? body.message : `HTTP ${status}`);
      this.status = status;
      this.code = body && body.code;
    }
  }

  function headers(extra) {
    const h = new Headers(extra || {});
    if (token) h.set('Authorization', `Bearer ${token}`);
    return h;
  }

  async function api(path, init) {
    let response;
    try {
      response = await fetch(path, { ...init, headers: headers(init && init.headers), cache: 'no-store' });
    } catch (error) {
      throw new ApiRefusal(0, { message: `the instance did not answer (${error.message})` });
    }
    const text = await response.text();
    let body = null;
    if (text && (response.headers.get('content-type') || '').startsWith('application/json')) body = parse(text);
    if (!response.ok) throw new ApiRefusal(response.status, body);
    return { body, response };
  }

  // The API's refusals as plain sentences. A 404 says only "not found":
  // someone else's account must look exactly like an unknown one.
  function explain(error, what) {
    switch (error.status) {
      case 0: return `Could not reach the instance: ${error.message}.`;
      case 401: return `The API refused the token (401): ${error.message}. Enter a valid token above.`;
      case 403: return `Not allowed with this token (403): ${error.message}.`;
      case 404: return `Not found (404): no ${what} with this id is visible with this token.`;
      case 400: return `The API refused the request (400): ${error.message}.`;
      default: return `The API answered ${error.status}: ${error.message}.`;
    }
  }

  function show(id, text) {
    const element = $(id);
    element.textContent = text || '';
    element.hidden = !text;
  }

  const fmt = (value) => (value === undefined || value === null ? '' : String(value));

  // ---- the token -------------------------------------------------------

  function claims(jwt) {
    try {
      const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '=')));
    } catch (_) {
      return null;
    }
  }

  // Whether the instance wants a token, and what this one may do, asked of
  // the API itself: the feed answers 200 to an admin (or with
  // authentication off), 403 to an owner, 401 to no or a bad token.
  async function checkToken() {
    const whoami = $('whoami');
    const who = token && claims(token);
    const subject = who && who.sub ? `owner ${who.sub}` : 'an unreadable subject';
    try {
      await api('/api/events?after=0&limit=1');
      whoami.textContent = token
        ? `Token of ${subject}: an admin's (the API lets it read the feed).`
        : 'Authentication is off on this instance: no token needed.';
      whoami.dataset.role = 'admin';
    } catch (error) {
      whoami.dataset.role = error.status === 403 ? 'owner' : 'none';
      if (error.status === 403) {
        whoami.textContent = `Token of ${subject}: not an admin's (its own accounts only; no live feed).`;
      } else if (error.status === 401 && !token) {
        whoami.textContent = 'This instance requires a token: paste one above.';
        $('token-input').focus();
      } else {
        whoami.textContent = explain(error, 'token');
      }
    }
  }

  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('token-input');
    token = input.value.trim() || null;
    input.value = '';
    stopFeed('Not following.');
    checkToken();
    if (account) lookUp(account.id);
  });

  $('token-forget').addEventListener('click', () => {
    token = null;
    stopFeed('Not following.');
    checkToken();
  });

  // ---- an account --------------------------------------------------------

  function eventAmount(e) {
    if (e.amountDeposited !== undefined) return `+${e.amountDeposited}`;
    if (e.amountWithdrawn !== undefined) return `-${e.amountWithdrawn}`;
    return '';
  }

  // The balance an event left: money events carry it; an open starts at 0
  // and only a zero balance can be closed.
  const balanceAfter = (e) => (e.balance !== undefined ? e.balance : 0);

  function accountLink(id) {
    const a = document.createElement('a');
    a.href = `#account=${id}`;
    a.textContent = id;
    return a;
  }

  async function lookUp(id) {
    show('account-message', '');
    try {
      const { body, response } = await api(`/api/account/${encodeURIComponent(id)}`);
      const version = Number((response.headers.get('etag') || '').replace(/"/g, ''));
      account = { id: body.accountId, version, view: null };
      // The state and its events appear together, never one account's
      // state over another's events.
      const from = Math.max(1, version - PAGE + 1);
      const page = await showEvents(from, version - from + 1);
      $('state-account').textContent = body.accountId;
      $('state-owner').textContent = body.ownerId;
      $('state-balance').textContent = fmt(body.balance);
      $('state-open').textContent = body.open ? 'open' : 'closed';
      $('state-version').textContent = String(version);
      $('account-input').value = body.accountId;
      for (const s of ['account-state', 'chart-section', 'past', 'events-section']) $(s).hidden = false;
      show('past-message', '');
      $('past-state').textContent = '';
      await drawChart(page);
    } catch (error) {
      account = null;
      for (const s of ['account-state', 'chart-section', 'past', 'events-section']) $(s).hidden = true;
      show('account-message', explain(error, 'account'));
    }
  }

  function nextLink(response) {
    const link = response.headers.get('link') || '';
    const match = /<([^>]+)>\s*;\s*rel="next"/.exec(link);
    return match ? match[1] : null;
  }

  // One page of the stream, shown newest first. `from`/`limit` as the API
  // takes them; the "Newer" page is the one the API's Link points at.
  async function showEvents(from, limit) {
    const { body, response } = await api(`/api/account/${account.id}/events?from=${from}&limit=${limit}`);
    const rows = document.createDocumentFragment();
    for (const e of [...body].reverse()) rows.appendChild(eventRow(e));
    $('events-body').replaceChildren(rows);
    const to = body.length ? body[body.length - 1].sequenceNumber : from - 1;
    account.view = { from, to, next: nextLink(response) };
    $('events-range').textContent = body.length ? `events ${from}–${to} of ${account.version}` : 'no events';
    $('events-older').disabled = from <= 1;
    $('events-newer').disabled = !account.view.next;
    return body;
  }

  function eventRow(e) {
    const tr = document.createElement('tr');
    tr.dataset.sequence = e.sequenceNumber;
    const cells = [e.sequenceNumber, e.type, eventAmount(e), e.balance !== undefined ? e.balance : '', e.recordedAt, e.transactionId];
    cells.forEach((value, i) => {
      const td = document.createElement('td');
      td.textContent = fmt(value);
      if (i === 2 || i === 3) td.className = 'num';
      if (i === 4) {
        const asOf = document.createElement('button');
        asOf.type = 'button';
        asOf.className = 'small';
        asOf.textContent = 'as of';
        asOf.setAttribute('aria-label', `state as of ${e.recordedAt}`);
        asOf.addEventListener('click', () => { $('past-at').value = e.recordedAt; $('past-version').value = ''; $('past-at').focus(); });
        td.append(' ', asOf);
      }
      tr.appendChild(td);
    });
    const other = document.createElement('td');
    const peer = e.transferTo || e.transferFrom;
    if (peer) other.append(e.transferTo ? 'to ' : 'from ', accountLink(peer));
    tr.appendChild(other);
    return tr;
  }

  $('events-older').addEventListener('click', async () => {
    const from = Math.max(1, account.view.from - PAGE);
    await guarded(() => showEvents(from, account.view.from - from));
  });
  $('events-newer').addEventListener('click', async () => {
    const next = new URL(account.view.next, location.origin);
    const from = Number(next.searchParams.get('from'));
    await guarded(() => showEvents(from, Math.min(PAGE, account.version - from + 1)));
  });

  async function guarded(action) {
    try {
      await action();
    } catch (error) {
      show('account-message', explain(error, 'account'));
    }
  }

  $('account-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const id = $('account-input').value.trim();
    if (id) location.hash = `account=${id}`;
    if (id && decodeURIComponent(location.hash) === `#account=${id}`) lookUp(id);
  });
  window.addEventListener('hashchange', () => {
    const match = /^#account=(.+)$/.exec(decodeURIComponent(location.hash));
    if (match) { $('account-input').value = match[1]; lookUp(match[1]); }
  });

  // ---- the chart -----------------------------------------------------------

  // Every event when there are few; otherwise CHART_SAMPLES events evenly
  // spaced over the stream (each one `from=n&limit=1`) plus the page in
  // view, so a long history costs a bounded number of small requests and
  // points.
  async function chartEvents(page) {
    const last = account.version;
    if (last <= CHART_FULL_MAX) {
      return (await api(`/api/account/${account.id}/events?from=1&limit=${CHART_FULL_MAX}`)).body;
    }
    const wanted = new Set();
    for (let i = 0; i < CHART_SAMPLES; i++) wanted.add(1 + Math.round((i * (last - 1)) / (CHART_SAMPLES - 1)));
    for (const e of page) wanted.delete(e.sequenceNumber);
    const queue = [...wanted];
    const got = [...page];
    const worker = async () => {
      while (queue.length) {
        const n = queue.shift();
        got.push(...(await api(`/api/account/${account.id}/events?from=${n}&limit=1`)).body);
      }
    };
    await Promise.all(Array.from({ length: 6 }, worker));
    return got.sort((a, b) => a.sequenceNumber - b.sequenceNumber);
  }

  async function drawChart(page) {
    // No other account's chart under this account's state meanwhile.
    if (chart) { chart.destroy(); chart = null; }
    delete $('chart').dataset.points;
    $('chart-summary').textContent = 'Drawing the balance…';
    const events = await chartEvents(page);
    const xs = events.map((e) => Date.parse(e.recordedAt) / 1000);
    const ys = events.map((e) => Number(balanceAfter(e)));
    const box = $('chart');
    box.dataset.points = String(events.length);
    $('chart-summary').textContent = events.length === account.version
      ? `${events.length} points, one per event (hover a point for its time and balance).`
      : `${events.length} of ${account.version} events drawn: evenly spaced samples plus the page in view.`;
    if (chart) chart.destroy();
    const width = Math.max(280, box.clientWidth || 600);
    chart = new uPlot({
      width,
      height: 260,
      scales: { x: { time: true } },
      axes: [{}, { size: 70 }],
      series: [
        { label: 'recordedAt (UTC)', value: (u, v) => (v === null ? '–' : new Date(v * 1000).toISOString()) },
        { label: 'balance', stroke: '#1f5fa8', width: 2, paths: uPlot.paths.stepped({ align: 1 }), points: { show: true, size: 6 } },
      ],
    }, [xs, ys], box);
  }

  window.addEventListener('resize', () => {
    if (chart) chart.setSize({ width: Math.max(280, $('chart').clientWidth), height: 260 });
  });

  // ---- state at a time or version -----------------------------------------

  $('past-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    show('past-message', '');
    $('past-state').textContent = '';
    const at = $('past-at').value.trim();
    const version = $('past-version').value.trim();
    if (!at === !version) { show('past-message', 'Give either a time or a version.'); return; }
    const query = at ? `at=${encodeURIComponent(at)}` : `version=${encodeURIComponent(version)}`;
    try {
      const { body, response } = await api(`/api/account/${account.id}?${query}`);
      const v = (response.headers.get('etag') || '').replace(/"/g, '');
      $('past-state').textContent = `As of ${at || `version ${version}`}: balance ${fmt(body.balance)}, ${body.open ? 'open' : 'closed'}, version ${v}.`;
      $('past-state').dataset.balance = fmt(body.balance);
    } catch (error) {
      show('past-message', error.status === 404
        ? 'Not found (404): the account did not exist yet then, or there is no such version.'
        : explain(error, 'account'));
    }
  });

  // ---- the live feed ---------------------------------------------------------

  const feed = {
    controller: null, lastId: null, count: 0, sum: 0, disorder: 0,
    pending: [], window: [], timer: null, following: false,
  };

  async function follow() {
    const controller = new AbortController();
    feed.controller = controller;
    const extra = { Accept: 'text/event-stream' };
    if (feed.lastId !== null) extra['Last-Event-ID'] = feed.lastId;
    const after = Number($('feed-after').value) || 0;
    let response;
    try {
      response = await fetch(`/api/events/stream?after=${after}`, { headers: headers(extra), signal: controller.signal, cache: 'no-store' });
    } catch (error) {
      return retry(controller, `connection failed (${error.message})`);
    }
    if (!response.ok) {
      const text = await response.text();
      const body = text.startsWith('{') ? parse(text) : null;
      const refusal = new ApiRefusal(response.status, body);
      if (response.status === 503) return retry(controller, refusal.message);
      return stopFeed('Not following.', explain(refusal, 'feed'));
    }
    $('feed-status').textContent = feed.lastId === null ? 'Following.' : `Following (resumed after position ${feed.lastId}).`;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const push = window.AccountsSse.parser(onFeedMessage);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) { push('', true); break; }
        push(value, false);
        if (!feed.following) return undefined;
      }
    } catch (error) {
      if (controller.signal.aborted) return undefined;
    }
    return retry(controller, 'the stream ended');
  }

  function retry(controller, why) {
    if (!feed.following || feed.controller !== controller) return undefined;
    $('feed-status').textContent = `Reconnecting: ${why}.`;
    setTimeout(() => { if (feed.following && feed.controller === controller) follow(); }, FEED_RETRY_MS);
    return undefined;
  }

  function onFeedMessage(message) {
    if (message.event === 'rewind') {
      let detail = message.data.join('\n');
      try { detail = JSON.parse(detail).message || detail; } catch (_) { /* shown as sent */ }
      stopFeed('Stopped.', `The feed's history changed (rewind): ${detail}. Stopped; reconcile before following again.`);
      return;
    }
    if (message.id === null) return;
    const position = Number(message.id);
    if (feed.lastId !== null && position <= Number(feed.lastId)) feed.disorder++;
    feed.lastId = message.id;
    feed.count++;
    feed.sum += position;
    feed.window.push(performance.now());
    feed.pending.push({ position, type: message.event, data: message.data.join('\n') });
    if (feed.pending.length > FEED_ROWS) feed.pending.splice(0, feed.pending.length - FEED_ROWS);
  }

  // Rows are added in batches, a few times a second, and only the newest
  // FEED_ROWS stay: a busy feed neither floods the page nor grows it.
  function render() {
    const list = $('feed-list');
    if (feed.pending.length) {
      const rows = document.createDocumentFragment();
      for (const item of feed.pending) {
        const li = document.createElement('li');
        li.dataset.position = item.position;
        let summary = item.data;
        try {
          const e = parse(item.data);
          summary = `${e.accountId} #${e.sequenceNumber}${e.balance !== undefined ? ` balance ${e.balance}` : ''}`;
        } catch (_) { /* shown as sent */ }
        li.textContent = `${item.position} ${item.type} ${summary}`;
        rows.appendChild(li);
      }
      feed.pending = [];
      list.appendChild(rows);
      while (list.childElementCount > FEED_ROWS) list.firstElementChild.remove();
    }
    const now = performance.now();
    while (feed.window.length && feed.window[0] < now - 1000) feed.window.shift();
    $('feed-rate').textContent = String(feed.window.length);
    $('feed-count').textContent = String(feed.count);
    $('feed-last').textContent = feed.lastId === null ? '–' : feed.lastId;
    Object.assign(list.dataset, { count: feed.count, sum: feed.sum, disorder: feed.disorder, last: feed.lastId || '' });
  }

  function startFeed() {
    show('feed-message', '');
    feed.following = true;
    if (!feed.timer) feed.timer = setInterval(render, 100);
    $('feed-start').disabled = true;
    $('feed-pause').disabled = false;
    $('feed-pause').textContent = 'Pause';
    $('feed-status').textContent = 'Connecting…';
    follow();
  }

  function stopFeed(status, message) {
    feed.following = false;
    if (feed.controller) feed.controller.abort();
    feed.controller = null;
    $('feed-start').disabled = false;
    $('feed-pause').disabled = true;
    $('feed-status').textContent = status;
    if (message) show('feed-message', message);
  }

  $('feed-form').addEventListener('submit', (event) => {
    event.preventDefault();
    // Following anew starts from the chosen position, not the last one.
    Object.assign(feed, { lastId: null, count: 0, sum: 0, disorder: 0, pending: [], window: [] });
    $('feed-list').replaceChildren();
    startFeed();
  });

  $('feed-pause').addEventListener('click', () => {
    if (feed.following) {
      stopFeed(`Paused after position ${feed.lastId || $('feed-after').value}.`);
      $('feed-pause').disabled = false;
      $('feed-pause').textContent = 'Resume';
    } else {
      startFeed();
    }
  });

  checkToken();
  const initial = /^#account=(.+)$/.exec(decodeURIComponent(location.hash));
  if (initial) { $('account-input').value = initial[1]; lookUp(initial[1]); }
})();
