// Sign-in with an identity provider, in Chromium, against a real OpenID provider started
// here (`oidc-provider`, see oidc-provider.mjs): the authorization code flow with PKCE from
// the page's "Sign in with …" button through the provider's login and consent pages and
// back, signed in with a session; the provider's groups giving the install role; a
// callback that does not match the sign-in this browser started refused with its reason.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { startServer, launchBrowser, watchPage, ask, screenshot } from './helpers.mjs';
import { startProvider, CLIENT_ID, CLIENT_SECRET } from './oidc-provider.mjs';

const WAIT = 10000;
const ANSWER = 20000;

let server, provider, b;

/** A port nothing listens on now (the provider's, chosen before Apex starts with it). */
async function freePort() {
  const s = createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

before(async () => {
  const port = await freePort();
  server = await startServer({
    DEMO_MODE: '0',
    APEX_JWT_SECRET: 'oidc-test-secret-0123456789',
    APEX_COOKIE_SECURE: '0',
    APEX_SIGNUP: 'closed',
    APEX_OIDC_ISSUER: `http://127.0.0.1:${port}`,
    APEX_OIDC_CLIENT_ID: CLIENT_ID,
    APEX_OIDC_CLIENT_SECRET: CLIENT_SECRET,
    APEX_OIDC_NAME: 'Example ID',
    APEX_OIDC_ADMIN_GROUPS: 'apex-admins',
  });
  provider = await startProvider({ port, redirectUri: `${server.url}/api/auth/oidc/callback`, groups: { frank: ['staff', 'apex-admins'], gina: ['staff'] } });
  b = await launchBrowser();
});
after(async () => {
  await b?.close();
  await provider?.close();
  await server?.stop();
});

/** From the page's sign-in form through the provider's pages, back signed in. */
async function signInWithProvider(page, login) {
  const button = page.getByRole('link', { name: 'Sign in with Example ID' });
  await button.waitFor({ timeout: WAIT });
  await button.click();
  await page.waitForURL((u) => u.origin === provider.issuer, { timeout: WAIT });
  await page.locator('input[name="login"]').fill(login);
  await page.locator('input[name="password"]').fill('anything');
  await page.getByRole('button', { name: 'Sign-in' }).click();
  await page.getByRole('button', { name: 'Continue' }).click({ timeout: WAIT });
  await page.waitForURL((u) => u.origin === server.url, { timeout: WAIT });
  await page.locator('#status[data-state="connected"]').waitFor({ timeout: WAIT });
}

test('Sign in with the identity provider: code + PKCE through its pages, a session, the role from its groups', async () => {
  const ctx = await b.newContext();
  const page = await ctx.newPage();
  const problems = watchPage(page);
  await page.goto(server.url);
  await page.locator('#signin-form').waitFor({ state: 'visible', timeout: WAIT });
  await screenshot(page, 'oidc-sign-in');
  await signInWithProvider(page, 'frank');

  await page.locator('#account').click();
  await page.getByText('Signed in as frank@example.com (admin).').waitFor({ timeout: WAIT });
  await page.locator('#account-close').click();
  const done = page.locator('article.run[data-state="completed"]');
  await ask(page, 'Analyze my AI costs');
  await done.first().waitFor({ timeout: ANSWER });
  // The session is a real one: a reload signs back in through the cookie.
  await page.reload();
  await page.locator('#status[data-state="connected"]').waitFor({ timeout: WAIT });
  const cookies = await ctx.cookies();
  assert.ok(cookies.some((c) => c.name === 'apex_session' && c.httpOnly), 'an HttpOnly session cookie');
  assert.ok(!cookies.some((c) => c.name === 'apex_oidc'), 'the sign-in in progress is forgotten');

  // Signing out of Apex ends its session (the provider's own stays: its business).
  await page.locator('#account').click();
  await page.locator('#sign-out').click();
  await page.locator('#signin-form').waitFor({ state: 'visible', timeout: WAIT });
  assert.deepEqual(problems, []);
  await ctx.close();

  // In another browser, gina (not in apex-admins) signs in as a member.
  const other = await b.newContext();
  const second = await other.newPage();
  await second.goto(server.url);
  await signInWithProvider(second, 'gina');
  await second.locator('#account').click();
  await second.getByText('Signed in as gina@example.com (member).').waitFor({ timeout: WAIT });
  await other.close();
});

test('a callback that is not the answer to this browser\'s own sign-in is refused, with the reason on the form', async () => {
  const ctx = await b.newContext();
  const page = await ctx.newPage();
  // Started here (the state is in this browser's cookie), answered with another state.
  await page.goto(`${server.url}/api/auth/oidc/start`);
  await page.waitForURL((u) => u.origin === provider.issuer, { timeout: WAIT });
  await page.goto(`${server.url}/api/auth/oidc/callback?code=stolen&state=not-mine`);
  await page.locator('#signin-error').filter({ hasText: 'does not match the one started here' }).waitFor({ timeout: WAIT });
  assert.equal(new URL(page.url()).hash, '', 'the reason leaves the address bar');
  // No flow at all (another browser's callback URL): refused too.
  await page.goto(`${server.url}/api/auth/oidc/callback?code=stolen&state=whatever`);
  await page.locator('#signin-error').filter({ hasText: 'expired or was started elsewhere' }).waitFor({ timeout: WAIT });
  assert.equal((await ctx.cookies()).some((c) => c.name === 'apex_session'), false, 'no session');
  await ctx.close();
});
