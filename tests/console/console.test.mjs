// The console in a real browser (`just console-test`, docs/console.md):
// Debian's chromium driven by playwright-core, against the real binary on
// the memory store, once without authentication and once with it. Every
// request the page makes must stay on the instance's origin and every
// console answer must carry the CSP; screenshots go to ./screenshots
// (ignored by git).
//   ACCOUNTS_BIN   the binary (default $CARGO_TARGET_DIR/debug/accounts)
//   CHROMIUM       the browser (default /usr/bin/chromium)
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const binary = process.env.ACCOUNTS_BIN
  || path.join(process.env.CARGO_TARGET_DIR || path.join(root, 'target'), 'debug/accounts');
const shots = path.join(here, 'screenshots');
mkdirSync(shots, { recursive: true });
const FEED_ROWS = 200; // console.js keeps this many feed rows

let failures = 0;
async function step(name, body) {
  const started = Date.now();
  try {
    await body();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    failures++;
    console.log(`FAIL ${name}\n${error.stack}`);
  }
}

// ---- the instance ------------------------------------------------------------

function startService(env) {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, ['--listen', '127.0.0.1:0', '--database-url', 'memory:', '--drain-delay-ms', '0'], {
      env: { ...process.env, RUST_LOG: 'warn,accounts::app=info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    const timer = setTimeout(() => { child.kill(); reject(new Error(`the service did not start:\n${log}`)); }, 15000);
    const onData = (data) => {
      log += data;
      const match = /listening on ([0-9.]+:[0-9]+)/.exec(log);
      if (match) { clearTimeout(timer); resolve({ child, base: `http://${match[1]}`, log: () => log }); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (error) => { clearTimeout(timer); reject(new Error(`cannot start ${binary}: ${error.message}`)); });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`the service exited (${code}):\n${log}`)); });
  });
}

function stopService(service) {
  service.child.removeAllListeners('exit');
  service.child.kill('SIGKILL');
}

function mint(secret, sub, admin) {
  const args = ['token', '--sub', sub, '--ttl', '1h', ...(admin ? ['--admin'] : [])];
  return execFileSync(binary, args, { env: { ...process.env, ACCOUNTS_AUTH_JWT_SECRET: secret } }).toString().trim();
}

function client(base, token) {
  return async (method, target, expected) => {
    const response = await fetch(base + target, { method, headers: token ? { Authorization: `Bearer ${token}` } : {} });
    const text = await response.text();
    if (expected !== undefined) assert.equal(response.status, expected, `${method} ${target}: ${text}`);
    return { status: response.status, headers: response.headers, json: text ? JSON.parse(text) : null };
  };
}

async function feedAll(api) {
  const events = [];
  for (let after = 0; ;) {
    const page = (await api('GET', `/api/events?after=${after}&limit=10000`, 200)).json;
    events.push(...page);
    if (page.length < 10000) return events;
    after = page[page.length - 1].position;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the browser -------------------------------------------------------------

async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--no-first-run', '--disable-default-apps', '--disable-extensions', '--metrics-recording-only'],
  });
}

// A page whose every request and console answer is recorded.
async function openPage(browser, base, record) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const origin = new URL(base).origin;
  page.on('request', (request) => {
    record.requests.push(request.url());
    if (new URL(request.url()).pathname === '/api/events/stream') record.streams.push(request.headers()['last-event-id'] || null);
  });
  page.on('response', (response) => {
    const url = new URL(response.url());
    if (url.origin === origin && url.pathname.startsWith('/console')) {
      record.console.push({ url: response.url(), csp: response.headers()['content-security-policy'] });
    }
  });
  page.on('pageerror', (error) => record.errors.push(error.message));
  page.on('dialog', (dialog) => { record.errors.push(`a dialog: ${dialog.message()}`); dialog.dismiss(); });
  record.origin = origin;
  return page;
}

function checkRecord(record) {
  assert.ok(record.requests.length > 0, 'the page made requests');
  const foreign = record.requests.filter((url) => new URL(url).origin !== record.origin);
  assert.deepEqual(foreign, [], 'no request leaves the instance\'s origin');
  assert.ok(record.console.length >= 6, 'the page and its five assets were answered');
  for (const answer of record.console) {
    assert.ok(answer.csp && answer.csp.includes("default-src 'none'") && !answer.csp.includes('unsafe'),
      `CSP on ${answer.url}: ${answer.csp}`);
  }
  assert.deepEqual(record.errors, [], 'no script error, no dialog');
}

async function lookUp(page, id) {
  await page.fill('#account-input', id);
  await page.press('#account-input', 'Enter');
}

const text = (page, selector) => page.locator(selector).innerText();
const rowSequences = (page) => page.$$eval('#events-body tr', (rows) => rows.map((r) => Number(r.dataset.sequence)));

// ---- without authentication ----------------------------------------------------

async function withoutAuth(browser) {
  const service = await startService({});
  const api = client(service.base);
  const record = { requests: [], console: [], errors: [], streams: [] };
  const page = await openPage(browser, service.base, record);
  const [a, b, owner] = [randomUUID(), randomUUID(), randomUUID()];
  try {
    await step('history: the exact balance, the events newest first, a chart point per event', async () => {
      await api('POST', `/api/account/${a}?owner=${owner}`, 201);
      await api('POST', `/api/account/${b}?owner=${owner}`, 201);
      for (const op of [`deposit?amount=1000`, `deposit?amount=250`, `transfer?targetAccount=${b}&amount=300`, `withdraw?amount=100`]) {
        await sleep(20); // distinct recordedAt, for the past state below
        await api('PUT', `/api/account/${a}/${op}&transactionId=${randomUUID()}`, 204);
      }
      await page.goto(`${service.base}/console`);
      await page.waitForSelector('#whoami:has-text("Authentication is off")');
      // The simple upper-case form: the console passes any accepted form on.
      await lookUp(page, a.replace(/-/g, '').toUpperCase());
      await page.waitForSelector('#state-balance:has-text("850")');
      assert.equal(await text(page, '#state-balance'), '850');
      assert.equal(await text(page, '#state-version'), '5');
      assert.equal(await text(page, '#state-owner'), owner);
      assert.deepEqual(await rowSequences(page), [5, 4, 3, 2, 1]);
      const rows = await page.$$eval('#events-body tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.innerText.replace(/\s*as of$/, ''))));
      assert.deepEqual(rows.map((r) => [r[1], r[2], r[3]]), [
        ['MoneyWithdrawn', '-100', '850'], ['MoneyWithdrawn', '-300', '950'], ['MoneyDeposited', '+250', '1250'],
        ['MoneyDeposited', '+1000', '1000'], ['AccountOpened', '', '']]);
      const events = (await api('GET', `/api/account/${a}/events`, 200)).json;
      assert.deepEqual(rows.map((r) => r[4]).reverse(), events.map((e) => e.recordedAt));
      assert.deepEqual(rows.map((r) => r[5]).reverse(), events.map((e) => e.transactionId));
      assert.equal(await page.locator(`#events-body tr[data-sequence="4"] a[href="#account=${b}"]`).count(), 1, 'the transfer links to its target');
      await page.waitForSelector('#chart[data-points="5"] canvas');
      // Hovering the chart shows the point's balance in uPlot's legend.
      const canvas = await page.locator('#chart .u-over').boundingBox();
      await page.mouse.move(canvas.x + canvas.width - 2, canvas.y + canvas.height / 2);
      await page.waitForFunction(() => document.querySelector('#chart .u-legend .u-series:nth-child(2) .u-value').textContent === '850');
      await page.screenshot({ path: path.join(shots, '01-account.png'), fullPage: true });
      // The README's picture (docs/console.png): narrower, the account down
      // to its events.
      await page.setViewportSize({ width: 860, height: 900 });
      await page.mouse.move(0, 0);
      const top = await page.locator('#lookup').boundingBox();
      const end = await page.locator('#events-section').boundingBox();
      await page.screenshot({ path: path.join(shots, 'readme.png'), clip: { x: 0, y: top.y, width: 860, height: end.y + end.height - top.y }, fullPage: true });
      await page.setViewportSize({ width: 1100, height: 900 });
    });

    await step('state at an earlier time and at a version shows the earlier balance', async () => {
      const events = (await api('GET', `/api/account/${a}/events`, 200)).json;
      // The "as of" button of event 3 fills in its recordedAt.
      await page.click('#events-body tr[data-sequence="3"] button');
      assert.equal(await page.inputValue('#past-at'), events[2].recordedAt);
      await page.click('#past-form button[type="submit"]');
      await page.waitForSelector('#past-state[data-balance="1250"]');
      await page.fill('#past-at', '');
      await page.fill('#past-version', '2');
      await page.click('#past-form button[type="submit"]');
      await page.waitForSelector('#past-state[data-balance="1000"]');
      await page.fill('#past-version', '');
      await page.fill('#past-at', '2000-01-01T00:00:00Z');
      await page.click('#past-form button[type="submit"]');
      await page.waitForSelector('#past-message:has-text("did not exist yet")');
      await page.screenshot({ path: path.join(shots, '02-past-state.png'), fullPage: true });
    });

    await step('a transfer row leads to the other account', async () => {
      await page.click(`#events-body tr[data-sequence="4"] a`);
      await page.waitForSelector('#state-balance:has-text("300")');
      assert.equal(await text(page, '#state-account'), b);
      assert.deepEqual(await rowSequences(page), [2, 1]);
      const other = await text(page, '#events-body tr[data-sequence="2"] td:last-child');
      assert.equal(other, `from ${a}`);
    });

    await step('readable on a phone: nothing wider than the screen but the table\'s own scroller', async () => {
      await page.setViewportSize({ width: 390, height: 844 });
      await page.waitForTimeout(200);
      const widths = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      assert.ok(widths[0] <= widths[1], `page ${widths[0]} px wide on a ${widths[1]} px screen`);
      await page.screenshot({ path: path.join(shots, '02b-phone.png'), fullPage: true });
      await page.setViewportSize({ width: 1100, height: 900 });
    });

    await step('the feed\'s SSE parser: LF, CRLF and CR, chunks split anywhere, comments, rewind', async () => {
      const results = await page.evaluate(() => {
        const out = [];
        for (const eol of ['\n', '\r\n', '\r']) {
          const text = [': keep-alive', 'id: 1', 'event: MoneyDeposited', 'data: {"a":1}', '', 'id:2', 'data: x', 'data: y', '',
            ': idle', '', 'event: rewind', 'data: {"position":3}', '', ''].join(eol);
          for (let cut = 0; cut <= text.length; cut++) {
            const got = [];
            const push = window.AccountsSse.parser((m) => got.push(m));
            push(text.slice(0, cut), false);
            push(text.slice(cut), false);
            push('', true);
            out.push(JSON.stringify(got));
          }
        }
        return out;
      });
      const expected = JSON.stringify([
        { data: ['{"a":1}'], event: 'MoneyDeposited', id: '1' },
        { data: ['x', 'y'], event: 'message', id: '2' },
        { data: ['{"position":3}'], event: 'rewind', id: null }]);
      results.forEach((got, i) => assert.equal(got, expected, `case ${i}`));
    });

    await step('paging with from/limit and Link; a long history draws a bounded number of points', async () => {
      const c = randomUUID();
      await api('POST', `/api/account/${c}?owner=${owner}`, 201);
      const deposits = 1199; // 1200 events: past the chart's "every event" cap of 1000
      let next = 0;
      await Promise.all(Array.from({ length: 8 }, async () => {
        while (next < deposits) { next++; await api('PUT', `/api/account/${c}/deposit?amount=1&transactionId=${randomUUID()}`, 204); }
      }));
      await lookUp(page, c);
      await page.waitForSelector('#events-body tr[data-sequence="1200"]');
      assert.equal(await text(page, '#state-balance'), String(deposits));
      const range = (from, to) => Array.from({ length: from - to + 1 }, (_, i) => from - i);
      assert.deepEqual(await rowSequences(page), range(1200, 1151));
      assert.ok(await page.isDisabled('#events-newer'));
      await page.click('#events-older');
      await page.waitForSelector('#events-body tr[data-sequence="1101"]');
      assert.deepEqual(await rowSequences(page), range(1150, 1101));
      await page.click('#events-newer'); // follows the page's Link
      await page.waitForSelector('#events-body tr[data-sequence="1200"]');
      assert.deepEqual(await rowSequences(page), range(1200, 1151));
      // The previous account's chart stays until this one's samples are in.
      await page.waitForSelector('#chart-summary:has-text("of 1200 events drawn")', { timeout: 20000 });
      const points = Number(await page.getAttribute('#chart', 'data-points'));
      assert.ok(points >= 200 && points <= 250, `a bounded sample of the 1200 events: ${points} points`);
    });

    await step('the live feed under load: every event once, in order, a bounded page', async () => {
      await page.click('#feed-start');
      await page.waitForSelector('#feed-status:has-text("Following")');
      const accounts = Array.from({ length: 8 }, () => randomUUID());
      for (const id of accounts) await api('POST', `/api/account/${id}?owner=${owner}`, 201);
      let done = 0;
      let maxRows = 0;
      let maxRate = 0;
      let resumed = false;
      const total = 3000;
      const load = Promise.all(accounts.map(async (id) => {
        while (done < total) { done++; await api('PUT', `/api/account/${id}/deposit?amount=1&transactionId=${randomUUID()}`, 204); }
      }));
      const watch = (async () => {
        while (done < total) {
          const rows = await page.locator('#feed-list li').count();
          maxRows = Math.max(maxRows, rows);
          maxRate = Math.max(maxRate, Number(await text(page, '#feed-rate')));
          if (!resumed && done > total / 3) {
            // Pause mid-load, then resume: the stream reconnects with Last-Event-ID.
            await page.click('#feed-pause');
            await page.waitForSelector('#feed-status:has-text("Paused")');
            await sleep(300);
            await page.click('#feed-pause');
            await page.waitForSelector('#feed-status:has-text("resumed after position")');
            resumed = true;
          }
          await sleep(50);
        }
      })();
      await Promise.all([load, watch]);
      const feed = await feedAll(api);
      const last = feed[feed.length - 1].position;
      await page.waitForFunction((p) => document.querySelector('#feed-list').dataset.last === String(p), last, { timeout: 20000 });
      const list = await page.$eval('#feed-list', (l) => ({ ...l.dataset }));
      assert.equal(Number(list.count), feed.length, 'every event arrived');
      assert.equal(Number(list.disorder), 0, 'in order, none twice');
      assert.equal(Number(list.sum), feed.reduce((s, e) => s + e.position, 0), 'exactly the feed\'s positions');
      const shown = await page.$$eval('#feed-list li', (lis) => lis.map((li) => Number(li.dataset.position)));
      assert.deepEqual(shown, feed.slice(-FEED_ROWS).map((e) => e.position), 'the newest rows, in order');
      assert.ok(maxRows <= FEED_ROWS, `at most ${FEED_ROWS} rows (saw ${maxRows})`);
      assert.ok(resumed, 'paused and resumed during the load');
      assert.equal(record.streams[0], null, 'the first stream starts from the chosen position');
      const resumedAt = record.streams.slice(1).map(Number);
      assert.ok(resumedAt.length >= 1 && resumedAt.every((p) => p > 0 && p < last), `resumed with Last-Event-ID: ${resumedAt}`);
      assert.ok(maxRate > 0, 'the events-per-second counter moved');
      await page.screenshot({ path: path.join(shots, '03-live-feed.png'), fullPage: true });
      await page.click('#feed-pause');
    });

    await step('no request left the origin; every console answer had the CSP', async () => checkRecord(record));
  } finally {
    await page.context().close();
    stopService(service);
  }
}

// ---- with authentication ---------------------------------------------------------

async function withAuth(browser) {
  const secret = randomBytes(32).toString('base64');
  const service = await startService({ ACCOUNTS_AUTH_JWT_SECRET: secret });
  const [alice, bob] = [randomUUID(), randomUUID()];
  const tokens = { admin: mint(secret, randomUUID(), true), alice: mint(secret, alice, false), bob: mint(secret, bob, false) };
  const record = { requests: [], console: [], errors: [], streams: [] };
  const page = await openPage(browser, service.base, record);
  const account = randomUUID();
  const useToken = async (token) => {
    await page.fill('#token-input', token);
    await page.click('#token-form button[type="submit"]');
  };
  try {
    await step('with auth on and no token, the console asks for one', async () => {
      await page.goto(`${service.base}/console`);
      await page.waitForSelector('#whoami:has-text("requires a token")');
      assert.equal(await page.evaluate(() => document.activeElement.id), 'token-input');
      await lookUp(page, randomUUID());
      await page.waitForSelector('#account-message:has-text("401")');
      await page.screenshot({ path: path.join(shots, '04-token-needed.png'), fullPage: true });
    });

    await step('an owner\'s token: whose it is, its own account, and someone else\'s looks unknown', async () => {
      const asAlice = client(service.base, tokens.alice);
      await asAlice('POST', `/api/account/${account}?owner=${alice}`, 201);
      await asAlice('PUT', `/api/account/${account}/deposit?amount=700&transactionId=${randomUUID()}`, 204);
      await useToken(tokens.alice);
      await page.waitForSelector(`#whoami:has-text("owner ${alice}")`);
      assert.match(await text(page, '#whoami'), /not an admin's/);
      assert.equal(await page.inputValue('#token-input'), '', 'the token leaves the field once used');
      await lookUp(page, account);
      await page.waitForSelector('#state-balance:has-text("700")');
      await useToken(tokens.bob);
      await page.waitForSelector(`#whoami:has-text("owner ${bob}")`);
      await lookUp(page, randomUUID());
      await page.waitForSelector('#account-message:has-text("404")');
      const unknown = await text(page, '#account-message');
      await page.evaluate(() => { document.getElementById('account-message').textContent = ''; });
      await lookUp(page, account);
      await page.waitForSelector('#account-message:has-text("404")');
      assert.equal(await text(page, '#account-message'), unknown, 'someone else\'s account reads as an unknown one');
      assert.ok(await page.isHidden('#account-state'));
      await page.click('#feed-start');
      await page.waitForSelector('#feed-message:has-text("403")');
      await page.screenshot({ path: path.join(shots, '05-someone-elses.png'), fullPage: true });
    });

    await step('a tampered token shows the 401 message', async () => {
      const [header, payload, signature] = tokens.alice.split('.');
      const flipped = signature[5] === 'A' ? 'B' : 'A';
      await useToken(`${header}.${payload}.${signature.slice(0, 5)}${flipped}${signature.slice(6)}`);
      await page.waitForSelector('#whoami:has-text("refused the token (401)")');
      await lookUp(page, account);
      await page.waitForSelector('#account-message:has-text("refused the token (401)")');
      await page.screenshot({ path: path.join(shots, '06-tampered.png'), fullPage: true });
    });

    await step('an admin\'s token reads any account and follows the feed', async () => {
      await useToken(tokens.admin);
      await page.waitForSelector('#whoami:has-text("an admin\'s")');
      await lookUp(page, account);
      await page.waitForSelector('#state-balance:has-text("700")');
      await page.click('#feed-start');
      await page.waitForFunction(() => Number(document.querySelector('#feed-list').dataset.count) === 2);
      await page.click('#feed-pause');
    });

    await step('the token is never stored nor put in a URL', async () => {
      assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length + document.cookie.length), 0);
      for (const token of Object.values(tokens)) {
        assert.ok(!record.requests.some((url) => url.includes(token.split('.')[2])), 'no token in a URL');
      }
    });

    await step('no request left the origin; every console answer had the CSP', async () => checkRecord(record));
  } finally {
    await page.context().close();
    stopService(service);
  }
}

const browser = await launch();
try {
  await withoutAuth(browser);
  await withAuth(browser);
} finally {
  await browser.close();
}
console.log(failures ? `${failures} step(s) failed` : 'all steps passed');
process.exit(failures ? 1 : 0);
