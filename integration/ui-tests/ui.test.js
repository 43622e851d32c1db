// The web UI in a real browser: Debian's chromium, headless, driven by playwright-core.
//
// Started by integration/tests/ui.rs, which runs a small network (a list server, a
// supernode, a leaf sharing files, a hostile leaf sharing a file whose name is an HTML
// payload, and the leaf this script drives), gets login URLs with `superpeer ui`, and
// passes what to expect in environment variables. Exit status 0 when every check passed;
// otherwise 1, with the failed check on stderr. Prints DOWNLOADED_PATH=... for the test.
'use strict';

const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const { chromium, request } = require('playwright-core');

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (this script is run by integration/tests/ui.rs)`);
  return value;
}

const LOGIN_URL = need('SP_UI_URL');
const SUPERNODE_URL = process.env.SP_UI_SUPERNODE_URL || '';
const WORDS = need('SP_UI_SEARCH');
const HOSTILE_ID = need('SP_UI_HOSTILE_ID');
const HOSTILE_NAME = need('SP_UI_HOSTILE_NAME');
const DOWNLOAD_ID = need('SP_UI_DOWNLOAD_ID');
const DOWNLOAD_NAME = need('SP_UI_DOWNLOAD_NAME');
const SUPERNODE_ID = need('SP_UI_SUPERNODE_ID');
const SHOTS = need('SP_UI_SCREENSHOTS');
const CHROMIUM = process.env.SP_UI_CHROMIUM || '/usr/bin/chromium';
const BASE = new URL(LOGIN_URL).origin;
const SESSION_EXPIRED = 'session expired: run superpeer ui again';

const WAIT = 60_000;

function check(condition, what) {
  if (!condition) throw new Error('check failed: ' + what);
  console.log('ok: ' + what);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage: true });
}

// A page on another origin (same host, another port: the same site, so the session
// cookie goes along) that posts to the daemon as a form would.
function attackerServer() {
  const page = `<!doctype html><html><body>
<form id="f" method="POST" action="${BASE}/ui/api/promote" enctype="text/plain">
<input type="hidden" name='{"x":"' value='"}'><button id="go" type="submit">win a prize</button>
</form></body></html>`;
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(page);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'superpeer-ui-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 800 },
  });
  try {
    await run(context);
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

async function run(context) {
  const page = context.pages()[0] || (await context.newPage());
  const problems = [];
  try {
    await steps(context, page, problems);
  } catch (error) {
    // What the page showed, and what it logged, when a check failed.
    await shot(page, 'failure').catch(() => {});
    if (problems.length > 0) console.error('seen on the page:\n  ' + problems.join('\n  '));
    throw error;
  }
}

async function steps(context, page, problems) {
  page.on('dialog', async (dialog) => {
    problems.push(`a ${dialog.type()} dialog opened: ${dialog.message()}`);
    await dialog.dismiss().catch(() => {});
  });
  const onConsole = (message) => {
    if (message.type() === 'error') problems.push('console error: ' + message.text());
  };
  page.on('console', onConsole);
  page.on('pageerror', (error) => problems.push('script error: ' + error.message));

  // Log in: the code is traded for a cookie and leaves the address bar.
  const login = await page.goto(LOGIN_URL);
  check(login.ok(), 'the login URL opens the UI');
  check(new URL(page.url()).pathname === '/ui/' && !page.url().includes('code='), 'redirected to /ui/ without the code in the URL');
  const cookies = await context.cookies(BASE);
  const session = cookies.find((c) => c.name.startsWith('superpeer_session_'));
  check(session && session.httpOnly && session.sameSite === 'Strict', 'an HttpOnly, SameSite=Strict session cookie');
  await page.locator('#role').filter({ hasText: 'leaf' }).waitFor({ timeout: WAIT });

  // Search: results stream in, grouped by content id; the hostile name is only text.
  await page.fill('#search-words', WORDS);
  await page.press('#search-words', 'Enter');
  const hostile = page.locator(`.result[data-cid="${HOSTILE_ID}"]`);
  const wanted = page.locator(`.result[data-cid="${DOWNLOAD_ID}"]`);
  await hostile.waitFor({ timeout: WAIT });
  await wanted.waitFor({ timeout: WAIT });
  await page.locator('#search-status').filter({ hasText: /files?\.$/ }).waitFor({ timeout: WAIT });
  check((await hostile.locator('.name').textContent()) === HOSTILE_NAME, 'the hostile name is shown as text');
  check((await page.locator('#search-results img').count()) === 0, 'no element was made from a file name');
  check((await wanted.locator('.name').textContent()) === DOWNLOAD_NAME, 'the wanted file is listed by name');
  check(/1 holder/.test(await wanted.locator('.meta').textContent()), 'its holders are counted');
  await page.waitForTimeout(300); // a dialog from an injected handler would have fired by now
  check(problems.length === 0, 'no dialog and no script error after the results: ' + problems.join('; '));
  await shot(page, 'search');

  // Download with one click; progress shows; it completes and is verified.
  await wanted.locator('button.download').click();
  await page.click('#nav a[data-page="downloads"]');
  const item = page.locator(`.download-item[data-cid="${DOWNLOAD_ID}"]`);
  await item.waitFor({ timeout: WAIT });
  check((await item.locator('progress').count()) === 1, 'the download has a progress bar');
  await page.locator(`.download-item[data-cid="${DOWNLOAD_ID}"][data-state="finished"]`).waitFor({ timeout: WAIT });
  const progress = await item.locator('progress').evaluate((bar) => [bar.value, bar.max]);
  check(progress[0] === progress[1] && progress[0] > 0, 'the progress bar is full');
  check(/100%/.test(await item.locator('.progress-text').textContent()), 'progress says 100%');
  check(/complete and verified/.test(await item.locator('.meta').textContent()), 'the download says complete and verified');
  const downloaded = (await item.locator('.path').textContent()).trim();
  check(downloaded.endsWith(DOWNLOAD_NAME), 'the path of the verified file is shown: ' + downloaded);
  check((await item.locator('table.sources tr').count()) >= 2, 'its source is listed with bytes and how it was reached');
  check(/direct/.test(await item.locator('table.sources').textContent()), 'the source says how it was reached');
  console.log('DOWNLOADED_PATH=' + downloaded);
  await shot(page, 'downloads');

  // Sharing.
  await page.click('#nav a[data-page="sharing"]');
  await page.locator('#sharing .card').first().waitFor({ timeout: WAIT });
  check(/files? shared/.test(await page.locator('#sharing').textContent()), 'the sharing page shows the folder and its files');
  await shot(page, 'sharing');

  // Network: the supernode this leaf is attached to.
  await page.click('#nav a[data-page="network"]');
  await page.locator(`#net-supernode [title="${SUPERNODE_ID}"]`).waitFor({ timeout: WAIT });
  check(/ms/.test(await page.locator('#net-supernode').textContent()), 'the network page shows the supernode and its RTT');
  check((await page.locator('#net-reachability').count()) === 1, 'the network page shows reachability');
  const candidate = page.locator(`#net-candidates tr.candidate:has([title="${SUPERNODE_ID}"])`);
  await candidate.waitFor({ timeout: WAIT });
  check(/ms/.test(await candidate.textContent()) && /attached/.test(await candidate.textContent()), 'the candidates list the supernode with its measured RTT, marked attached');
  check((await page.locator('#promote').count()) === 1, 'a leaf offers to promote');
  await shot(page, 'network');
  check(problems.length === 0, 'no dialog, console error or script error on any page: ' + problems.join('; '));

  // The supernode's own UI: its leaves, neighbours, load and relay.
  if (SUPERNODE_URL) {
    const sn = await context.newPage();
    await sn.goto(SUPERNODE_URL + '#network');
    await sn.locator('#net-load').waitFor({ timeout: WAIT });
    await sn.locator('#net-relay').waitFor({ timeout: WAIT });
    check((await sn.locator('#demote').count()) === 1, 'a supernode offers to step down');
    await shot(sn, 'network-supernode');
    await sn.close();
  }

  // A request without the session is refused.
  const stranger = await request.newContext();
  const noSession = await stranger.get(BASE + '/ui/api/state');
  check(noSession.status() === 401, 'a request without the session gets 401');
  check((await noSession.text()).includes(SESSION_EXPIRED), 'and is told to run superpeer ui again');
  const noSessionPost = await stranger.post(BASE + '/ui/api/get', {
    data: { content_id: DOWNLOAD_ID },
    headers: { Origin: BASE },
  });
  check(noSessionPost.status() === 401, 'a POST without the session gets 401');
  await stranger.dispose();

  // A cross-origin POST is refused, even with the session cookie.
  const cookie = `${session.name}=${session.value}`;
  const forged = await request.newContext();
  const crossOrigin = await forged.post(BASE + '/ui/api/promote', {
    data: {},
    headers: { Cookie: cookie, Origin: 'http://evil.example' },
  });
  check(crossOrigin.status() === 403, 'a POST from another origin gets 403');
  await forged.dispose();

  // The same from a real page on another origin: a form post (which the browser sends
  // with the cookie: same site) is refused; a fetch with JSON does not even get sent.
  const server = await attackerServer();
  const attacker = await context.newPage();
  try {
    await attacker.goto(`http://127.0.0.1:${server.address().port}/`);
    const [answer] = await Promise.all([
      attacker.waitForNavigation({ timeout: WAIT }),
      attacker.click('#go'),
    ]);
    check(answer.status() === 403, 'a form posted from another origin gets 403');
    await attacker.goto(`http://127.0.0.1:${server.address().port}/`);
    const fetched = await attacker.evaluate(async (url) => {
      try {
        const response = await fetch(url, {
          method: 'POST',
          credentials: 'include',
          headers: { 'Content-Type': 'application/json' },
          body: '{}',
        });
        return 'answered ' + response.status;
      } catch (e) {
        return 'blocked';
      }
    }, BASE + '/ui/api/promote');
    check(fetched === 'blocked', 'a cross-origin fetch is blocked: ' + fetched);
  } finally {
    await attacker.close();
    server.close();
  }
  const state = await page.evaluate(async () => (await fetch('/ui/api/state')).json());
  check(state.status.role === 'leaf', 'nothing the other origin sent promoted the node');

  // A used login code does not work again.
  const again = await context.newPage();
  const reused = await again.goto(LOGIN_URL);
  check(reused.status() === 403, 'a login code works once');
  await again.close();

  // A stale session: the page says what to do (the 401s it meets log errors: expected).
  page.off('console', onConsole);
  await context.clearCookies();
  await page.reload();
  await page.locator('#banner').filter({ hasText: SESSION_EXPIRED }).waitFor({ timeout: WAIT });
  check(true, 'without its session the page says: ' + SESSION_EXPIRED);
  await shot(page, 'session-expired');

  check(problems.length === 0, 'no dialog and no script error at all: ' + problems.join('; '));
}

main().then(
  () => {
    console.log('all browser checks passed');
    process.exit(0);
  },
  (error) => {
    console.error(error && error.stack ? error.stack : String(error));
    process.exit(1);
  },
);
