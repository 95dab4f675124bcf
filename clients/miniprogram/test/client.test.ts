// The client against a real `wxlogin --dev`, end to end: the logins counted are wxlogin's
// own (its /metrics), not only the shim's.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';

import { Client, createClient, WxLike, WxLoginError } from '../src/index';
import {
  Backend,
  freePort,
  jwtSettings,
  serverLogins,
  startBackend,
  startWxlogin,
  verifiedJwt,
  Wxlogin,
  WxShim,
} from './harness';

// The global `wx` of a mini-program fits what the client takes.
const fits: (platform: WechatMiniprogram.Wx) => WxLike = (platform) => platform;
void fits;

let wxlogin: Wxlogin;
let backend: Backend;

before(async () => {
  wxlogin = await startWxlogin(jwtSettings());
  backend = await startBackend(wxlogin);
});

after(async () => {
  await backend.stop();
  await wxlogin.stop();
});

function client(shim: WxShim, options: { app?: string; baseUrl?: string; now?: () => number } = {}): Client {
  return createClient({ baseUrl: options.baseUrl ?? wxlogin.url, app: options.app, wx: shim, now: options.now });
}

/** How many requests `shim` sent to `path` at wxlogin. */
function sent(shim: WxShim, method: string, path: string): number {
  return shim.requested.filter((line) => line === `${method} ${wxlogin.url}${path}`).length;
}

/** Ends `token`'s session at wxlogin, behind the client's back (as an operator would). */
async function revokeAtServer(token: string): Promise<void> {
  const answer = await fetch(`${wxlogin.url}/session`, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } });
  assert.equal(answer.status, 204);
}

/** The session token a shim's client keeps. */
function keptToken(shim: WxShim): string {
  const [kept] = [...shim.storage.values()] as { token: string }[];
  return kept.token;
}

const orders = () => ({ url: `${backend.url}/orders`, method: 'GET' as const });

async function rejection(promise: Promise<unknown>): Promise<WxLoginError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof WxLoginError) return error;
    throw new Error(`expected a WxLoginError, not ${String(error)}`);
  }
  throw new Error('expected a rejection');
}

describe('one login at a time', () => {
  test('20 concurrent requests while logged out make one wx.login and one login at wxlogin', async () => {
    const shim = new WxShim('twenty');
    const auth = client(shim);
    const before = await serverLogins(wxlogin);

    const answers = await Promise.all(Array.from({ length: 20 }, () => auth.request(orders())));

    assert.equal(shim.logins, 1);
    assert.equal((await serverLogins(wxlogin)) - before, 1);
    for (const answer of answers) assert.equal(answer.statusCode, 200);
  });

  test('login(), phoneNumber() and request() arriving together share one login', async () => {
    const shim = new WxShim('mixed');
    const auth = client(shim);

    const [login, phone, answer] = await Promise.all([auth.login(), auth.phoneNumber('any-phone-code'), auth.request(orders())]);

    assert.equal(shim.logins, 1);
    assert.match(login.openid, /^o[A-Za-z0-9_-]{27}$/);
    assert.match(phone.purePhoneNumber, /^138\d{8}$/);
    assert.equal((answer.data as { for: string }).for, login.openid);
  });
});

describe('the token', () => {
  test('is kept, so a new client on the same storage (a restart) makes no login', async () => {
    const shim = new WxShim('restart');
    await client(shim).request(orders());

    const restarted = client(shim);
    const answer = await restarted.request(orders());

    assert.equal(answer.statusCode, 200);
    assert.equal(shim.logins, 1);
  });

  test('is kept per base URL and app, so two clients never share one', async () => {
    const shim = new WxShim('apart');
    await client(shim).login();
    const other = createClient({ baseUrl: `${wxlogin.url}/`, app: 'default', wx: shim });

    await other.login();

    assert.equal(shim.logins, 2);
    assert.equal(shim.storage.size, 2);
  });
});

describe('re-login on 401, once', () => {
  test('a token revoked at wxlogin is replaced by one re-login, and the request succeeds', async () => {
    const shim = new WxShim('revoked');
    const auth = client(shim);
    await auth.request(orders());
    const token = (Array.from(shim.storage.values())[0] as { token: string }).token;
    const revoked = await fetch(`${wxlogin.url}/session`, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } });
    assert.equal(revoked.status, 204);
    const before = await serverLogins(wxlogin);

    const answers = await Promise.all(Array.from({ length: 10 }, () => auth.request(orders())));

    for (const answer of answers) assert.equal(answer.statusCode, 200);
    assert.equal(shim.logins, 2, 'ten 401s share one re-login');
    assert.equal((await serverLogins(wxlogin)) - before, 1);
  });

  test('a backend that answers 401 again after the re-login rejects with invalid_token, no loop', async () => {
    const shim = new WxShim('refused');
    const auth = client(shim);
    await auth.login();
    backend.refuseAll = true;
    const requests = backend.requests;
    try {
      const error = await rejection(auth.request(orders()));
      assert.equal(error.kind, 'invalid_token');
      assert.equal(error.status, 401);
    } finally {
      backend.refuseAll = false;
    }
    assert.equal(shim.logins, 2, 'one re-login');
    assert.equal(backend.requests - requests, 2, 'the request and its one retry');
  });

  test('the check is configurable', async () => {
    const shim = new WxShim('custom');
    const auth = createClient({
      baseUrl: wxlogin.url,
      wx: shim,
      isSessionExpired: (response) => response.statusCode === 419,
    });
    await auth.login();
    backend.refuseAll = true;
    try {
      const answer = await auth.request(orders());
      assert.equal(answer.statusCode, 401, 'a plain 401 is handed back as it is');
    } finally {
      backend.refuseAll = false;
    }
    assert.equal(shim.logins, 1);
  });
});

describe('login races and spent codes', () => {
  test('409 code_used gets one fresh wx.login and one retry', async () => {
    const shim = new WxShim('double-tap');
    shim.codes = ['used'];
    const result = await client(shim).login();

    assert.equal(shim.logins, 2);
    assert.ok(result.openid);
  });

  test('a second code_used is the caller\'s error, with no third try', async () => {
    const shim = new WxShim('twice-used');
    shim.codes = ['used', 'used'];
    const error = await rejection(client(shim).login());

    assert.equal(error.kind, 'code_used');
    assert.equal(error.status, 409);
    assert.equal(shim.logins, 2);
  });

  test('503 store_unavailable without Retry-After gets a fresh code; with it, it is an error to wait on', async () => {
    let answered = 0;
    const fake = createServer((request, response) => {
      answered += 1;
      response.setHeader('Content-Type', 'application/json');
      if (request.url?.endsWith('/openid') && answered === 1) {
        response.writeHead(503);
        response.end(JSON.stringify({ error: 'store_unavailable', message: 'call wx.login() again' }));
      } else if (request.url?.endsWith('/openid') && answered === 2) {
        response.writeHead(200);
        response.end(JSON.stringify({ token: 't'.repeat(43), openid: 'oFake', expires_in: 60 }));
      } else {
        response.writeHead(503, { 'Retry-After': '2' });
        response.end(JSON.stringify({ error: 'store_unavailable', message: 'try again shortly' }));
      }
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
    try {
      const shim = new WxShim('spent');
      assert.equal((await client(shim, { baseUrl: base }).login()).openid, 'oFake');
      assert.equal(shim.logins, 2);

      const later = new WxShim('wait');
      const error = await rejection(client(later, { baseUrl: base }).login());
      assert.equal(error.kind, 'store_unavailable');
      assert.equal(error.retryAfter, 2);
      assert.equal(later.logins, 1, 'the same code may be sent again: no fresh one');
    } finally {
      await new Promise<void>((resolve) => fake.close(() => resolve()));
    }
  });
});

describe('typed errors', () => {
  test('a rate-limited login rejects with kind rate_limited and retryAfter', async () => {
    const shim = new WxShim('limited');
    shim.codes = ['ratelimited'];
    const error = await rejection(client(shim).login());

    assert.equal(error.kind, 'rate_limited');
    assert.equal(error.status, 429);
    assert.equal(error.retryAfter, 60);
  });

  test('a wxlogin that is not there rejects with kind network', async () => {
    const shim = new WxShim('nobody');
    const error = await rejection(client(shim, { baseUrl: `http://127.0.0.1:${await freePort()}` }).login());

    assert.equal(error.kind, 'network');
  });

  test('a failed wx.login rejects with kind wx_login_failed', async () => {
    const shim = new WxShim('offline');
    shim.login = (option) => {
      shim.logins += 1;
      setImmediate(() => option.fail?.({ errMsg: 'login:fail' }));
    };
    const error = await rejection(client(shim).request(orders()));

    assert.equal(error.kind, 'wx_login_failed');
  });
});

describe('user data', () => {
  test('phoneNumber trades the button\'s code for the number', async () => {
    const phone = await client(new WxShim('phone')).phoneNumber('button-code-1');

    assert.match(phone.phoneNumber, /^138\d{8}$/);
    assert.equal(phone.countryCode, '86');
  });

  test('decrypt issued while a re-login is in flight waits for it, and opens data sealed under the new key', async () => {
    const shim = new WxShim('sealed');
    const auth = client(shim);
    const first = await auth.login();
    const token = (Array.from(shim.storage.values())[0] as { token: string }).token;
    await fetch(`${wxlogin.url}/session`, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } });
    // Hold the re-login's answer: by then WeChat (the emulator) has issued the new
    // session_key, and the data the mini-program holds is sealed with it.
    let sealed: { encryptedData: string; iv: string } | undefined;
    let decrypted: Promise<unknown> | undefined;
    shim.beforeAnswer = async (url) => {
      if (!url.endsWith('/openid')) return undefined;
      shim.beforeAnswer = null;
      const info = await (await fetch(`${wxlogin.emulator}/dev/user_info?openid=${first.openid}`)).json();
      sealed = { encryptedData: info.encryptedData, iv: info.iv };
      decrypted = auth.decrypt(sealed);
    };

    const answer = await auth.request(orders());
    assert.equal(answer.statusCode, 200);
    assert.ok(decrypted, 'decrypt was issued during the re-login');
    const data = (await decrypted) as { openId: string; watermark: { appid: string } };

    assert.equal(data.openId, first.openid);
    assert.equal(data.watermark.appid, 'wx0000000000000dev');
    assert.equal(shim.logins, 2);
  });

  test('session() answers the session, and null once logged out; logout ends it at wxlogin', async () => {
    const shim = new WxShim('session');
    const auth = client(shim);
    assert.equal(await auth.session(), null, 'no session, and no login to make one');
    assert.equal(shim.logins, 0);
    const login = await auth.login();
    const token = (Array.from(shim.storage.values())[0] as { token: string }).token;

    const session = await auth.session();
    await auth.logout();

    assert.equal(session?.openid, login.openid);
    assert.equal(session?.app, 'default');
    assert.equal(await auth.session(), null);
    assert.equal(shim.storage.size, 0);
    const after = await fetch(`${wxlogin.url}/session`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(after.status, 401, 'the token is revoked at wxlogin');
  });

  test('request() passes its options to wx.request untouched, with the token added', async () => {
    const seen: WechatMiniprogram.RequestOption[] = [];
    const shim = new WxShim('options');
    const send = shim.request.bind(shim);
    shim.request = (option) => {
      seen.push(option);
      send(option);
    };
    const auth = client(shim);
    await auth.request({
      url: `${backend.url}/orders`,
      method: 'POST',
      data: { item: 7 },
      header: { 'X-Trace': 'abc' },
      timeout: 1234,
      responseType: 'text',
    });

    const sent = seen[seen.length - 1];
    assert.equal(sent.method, 'POST');
    assert.deepEqual(sent.data, { item: 7 });
    assert.equal(sent.timeout, 1234);
    assert.equal(sent.responseType, 'text');
    const header = sent.header as Record<string, string>;
    assert.equal(header['X-Trace'], 'abc');
    assert.match(header.Authorization, /^Bearer [A-Za-z0-9_-]{43}$/);
  });
});

describe('JWTs for gateways that only trust JWTs', () => {
  test('jwt() hands out a JWT that jose verifies with the JWKS it fetches over HTTP', async () => {
    const shim = new WxShim('jwt-verified');
    const auth = client(shim);
    const { openid } = await auth.login();

    const claims = await verifiedJwt(wxlogin, await auth.jwt());

    assert.equal(claims.sub, openid);
    assert.equal(claims.app, 'default');
    assert.equal(typeof claims.sid, 'string');
  });

  test('ten callers at once share one exchange, and later callers the JWT kept', async () => {
    const shim = new WxShim('jwt-shared');
    const auth = client(shim);

    const jwts = await Promise.all(Array.from({ length: 10 }, () => auth.jwt()));
    const again = await auth.jwt();

    assert.equal(new Set([...jwts, again]).size, 1);
    assert.equal(sent(shim, 'POST', '/oauth/token'), 1);
    assert.equal(shim.logins, 1);
  });

  test('a JWT near its end is exchanged again, one well within its life is not', async () => {
    const shim = new WxShim('jwt-renewed');
    let now = Date.now();
    const auth = client(shim, { now: () => now });
    const first = await auth.jwt();

    now += 200_000;
    assert.equal(await auth.jwt(), first, 'a JWT of 300 s is kept for 270 s');
    now += 71_000;
    const renewed = await auth.jwt();

    assert.notEqual(renewed, first);
    assert.equal(sent(shim, 'POST', '/oauth/token'), 2);
  });

  test('request({auth: "jwt"}) sends the JWT; a 401 gets a new JWT and one retry', async () => {
    const shim = new WxShim('jwt-request');
    const auth = client(shim);
    const url = `${backend.url}/jwt/orders`;

    const first = await auth.request<{ for: string }>({ url, method: 'GET', auth: 'jwt' });
    assert.equal(first.statusCode, 200);
    assert.equal(first.data.for, (await auth.login()).openid);
    assert.equal(backend.jwts.at(-1), await auth.jwt());

    backend.refuseJwts = 1;
    const before = backend.jwts.length;
    const retried = await auth.request({ url, method: 'GET', auth: 'jwt' });
    assert.equal(retried.statusCode, 200);
    const [refused, retry] = backend.jwts.slice(before);
    assert.notEqual(retry, refused, 'the retry carries a new JWT');
    assert.equal(sent(shim, 'POST', '/oauth/token'), 2);
  });

  test('a session that ended is logged into again before its JWT is exchanged', async () => {
    const shim = new WxShim('jwt-relogin');
    await client(shim).login();
    await revokeAtServer(keptToken(shim));

    // A restart: the token is in storage, no JWT is kept.
    const jwt = await client(shim).jwt();

    assert.equal(shim.logins, 2);
    assert.equal((await verifiedJwt(wxlogin, jwt)).sub, (await client(shim).login()).openid);
  });
});

describe('consistency', () => {
  test('decrypt logs in again on a 401, like phoneNumber', async () => {
    const shim = new WxShim('decrypt-relogin');
    const auth = client(shim);
    await auth.login();
    await revokeAtServer(keptToken(shim));

    // The data was sealed under the ended session's key: after the re-login it no longer
    // opens, and the caller is told to fetch it again.
    const error = await rejection(auth.decrypt({ encryptedData: 'AAAAAAAAAAAAAAAAAAAAAA==', iv: 'AAAAAAAAAAAAAAAAAAAAAA==' }));

    assert.equal(shim.logins, 2);
    assert.equal(error.kind, 'decryption_failed');
  });

  test('logout ends the session on the app\'s own routes', async () => {
    const shim = new WxShim('logout-app');
    const auth = client(shim, { app: 'default' });
    await auth.login();
    const token = keptToken(shim);

    await auth.logout();

    assert.equal(sent(shim, 'DELETE', '/apps/default/session'), 1);
    assert.equal(sent(shim, 'DELETE', '/session'), 0);
    const after = await fetch(`${wxlogin.url}/session`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(after.status, 401);
  });

  test('an answer of another shape is unexpected_response, never a cast', async () => {
    const server = createServer((_request, response) => {
      response.writeHead(200, { 'Content-Type': 'application/json' });
      response.end(JSON.stringify({ token: 42, openid: 'oX', expires_in: 'soon' }));
    });
    const port = await freePort();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    try {
      const error = await rejection(client(new WxShim('shapeless'), { baseUrl: `http://127.0.0.1:${port}` }).login());
      assert.equal(error.kind, 'unexpected_response');
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

