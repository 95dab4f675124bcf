// What the end-to-end tests run against: a real `wxlogin --dev` on a free port, a tiny
// business backend that checks tokens through wxlogin's /auth, and a `wx` shim whose
// `request` does real HTTP.

import { ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import * as path from 'node:path';

import { createRemoteJWKSet, jwtVerify } from 'jose';

import type { WxLike } from '../src/index';

/** The issuer of the JWTs of the wxlogin the tests run. */
export const JWT_ISSUER = 'https://login.example.test';
/** The appid of `wxlogin --dev`'s one app: its JWTs' audience. */
export const DEV_APPID = 'wx0000000000000dev';

/** What `wxlogin --dev` needs to sign JWTs: a fresh P-256 key in a file of its own. */
export function jwtSettings(): Record<string, string> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'wxlogin-jwt-')), 'key.pem');
  writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  return { WXLOGIN_JWT_ISSUER: JWT_ISSUER, WXLOGIN_JWT_KEY_FILE: file };
}

/** A JWT's claims, once jose (not wxlogin) has checked it against the JWKS over HTTP. */
export async function verifiedJwt(wxlogin: Wxlogin, jwt: string): Promise<Record<string, unknown>> {
  const keys = createRemoteJWKSet(new URL(`${wxlogin.url}/.well-known/jwks.json`));
  const { payload } = await jwtVerify(jwt, keys, {
    issuer: JWT_ISSUER,
    audience: DEV_APPID,
    algorithms: ['ES256'],
  });
  return payload;
}

/** A free loopback port, as the OS hands one out. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Polls `condition` until it holds, for at most a minute: a guard, not a wait. */
export async function eventually(what: string, condition: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`still not true after a minute: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export interface Wxlogin {
  url: string;
  emulator: string;
  stop(): Promise<void>;
}

/** `wxlogin --dev`, from the binary the Rust build made (or `WXLOGIN_BIN`). */
export async function startWxlogin(env: Record<string, string> = {}): Promise<Wxlogin> {
  const binary =
    process.env.WXLOGIN_BIN ?? path.resolve(__dirname, '..', '..', '..', '..', 'target', 'debug', 'wxlogin');
  const port = await freePort();
  const child: ChildProcess = spawn(binary, ['--dev'], {
    env: { PATH: process.env.PATH ?? '', WXLOGIN_LISTEN: `127.0.0.1:${port}`, ...env },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const emulator = await new Promise<string>((resolve, reject) => {
    let banner = '';
    child.on('exit', (code) => reject(new Error(`wxlogin exited with ${code} before its banner: ${banner}`)));
    child.stdout?.on('data', (chunk: Buffer) => {
      banner += chunk.toString();
      const found = /emulator at (http:\/\/127\.0\.0\.1:\d+)/.exec(banner);
      if (found) resolve(found[1]);
    });
  });
  child.stdout?.resume();
  const url = `http://127.0.0.1:${port}`;
  await eventually('wxlogin answers /healthz', async () => {
    try {
      return (await fetch(`${url}/healthz`)).status === 200;
    } catch {
      return false;
    }
  });
  return {
    url,
    emulator,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.on('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** wxlogin's own count of successful logins, from /metrics. */
export async function serverLogins(wxlogin: Wxlogin, app = 'default'): Promise<number> {
  const text = await (await fetch(`${wxlogin.url}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('wxlogin_logins_total{') && line.includes(`app="${app}"`) && line.includes('outcome="ok"')) {
      total += Number(line.split(' ').pop());
    }
  }
  return total;
}

/**
 * A business backend behind a gateway-like check: every request is asked of wxlogin's
 * /auth; under `/jwt/`, the bearer is a JWT, verified with the JWKS as Envoy would.
 */
export interface Backend {
  url: string;
  /** Answer 401 invalid_token to everything, whatever wxlogin says. */
  refuseAll: boolean;
  /** Answer 401 to this many JWTs, however good, before checking them. */
  refuseJwts: number;
  requests: number;
  /** The JWTs the `/jwt/` routes were sent, in order. */
  jwts: string[];
  stop(): Promise<void>;
}

export async function startBackend(wxlogin: Wxlogin): Promise<Backend> {
  const backend: Backend = { url: '', refuseAll: false, refuseJwts: 0, requests: 0, jwts: [], stop: async () => undefined };
  const server: Server = createServer((request: IncomingMessage, response: ServerResponse) => {
    backend.requests += 1;
    const refuse = () => {
      response.writeHead(401, { 'Content-Type': 'application/json' });
      response.end(JSON.stringify({ error: 'invalid_token', message: 'log in again' }));
    };
    if (backend.refuseAll) return refuse();
    if (request.url?.startsWith('/jwt/')) {
      const jwt = (request.headers.authorization ?? '').replace(/^Bearer /, '');
      backend.jwts.push(jwt);
      if (backend.refuseJwts > 0) {
        backend.refuseJwts -= 1;
        response.writeHead(401, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
        return response.end('Jwt is expired');
      }
      verifiedJwt(wxlogin, jwt)
        .then((claims) => {
          response.writeHead(200, { 'Content-Type': 'application/json' });
          response.end(JSON.stringify({ orders: [], for: claims.sub }));
        })
        .catch(() => {
          response.writeHead(401);
          response.end('Jwt verification fails');
        });
      return;
    }
    fetch(`${wxlogin.url}/auth`, { headers: { Authorization: request.headers.authorization ?? '' } })
      .then((auth) => {
        if (auth.status !== 200) return refuse();
        response.writeHead(200, { 'Content-Type': 'application/json' });
        response.end(JSON.stringify({ orders: [], for: auth.headers.get('x-wxlogin-openid') }));
      })
      .catch(() => {
        response.writeHead(502);
        response.end();
      });
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  backend.url = `http://127.0.0.1:${port}`;
  backend.stop = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return backend;
}

/** A `wx` for node: codes from a queue (else fresh ones), real HTTP, storage in a Map. */
export class WxShim implements WxLike {
  logins = 0;
  storage = new Map<string, unknown>();
  /** Every request's method and URL, in order. */
  requested: string[] = [];
  /** Codes `login` hands out next, before it makes up fresh ones. */
  codes: string[] = [];
  /** A hook that may hold a request before its answer reaches the caller. */
  beforeAnswer: ((url: string) => Promise<void>) | null = null;
  private made = 0;

  constructor(private readonly user = 'alice') {}

  login(option: { success?: (result: { code: string }) => void; fail?: (error: { errMsg: string }) => void }): void {
    this.logins += 1;
    const code = this.codes.shift() ?? `${this.user}@${process.pid}-${Date.now()}-${(this.made += 1)}`;
    setImmediate(() => option.success?.({ code }));
  }

  request(option: WechatMiniprogram.RequestOption): void {
    this.requested.push(`${option.method ?? 'GET'} ${option.url}`);
    const headers: Record<string, string> = { ...(option.header as Record<string, string> | undefined) };
    let body: string | undefined;
    if (option.data !== undefined && option.method !== 'GET') {
      body = typeof option.data === 'string' ? option.data : JSON.stringify(option.data);
    }
    fetch(option.url, { method: option.method ?? 'GET', headers, body })
      .then(async (response) => {
        const text = await response.text();
        let data: unknown = text;
        try {
          data = JSON.parse(text);
        } catch {
          // Not JSON: wx.request hands over the text.
        }
        const header: Record<string, string> = {};
        response.headers.forEach((value, name) => {
          header[name] = value;
        });
        if (this.beforeAnswer) await this.beforeAnswer(option.url);
        option.success?.({ statusCode: response.status, data, header } as unknown as WechatMiniprogram.RequestSuccessCallbackResult);
      })
      .catch((error: Error) => option.fail?.({ errMsg: `request:fail ${error.message}`, errno: 0 } as WechatMiniprogram.RequestFailCallbackErr));
  }

  getStorageSync(key: string): unknown {
    return this.storage.get(key) ?? '';
  }

  setStorageSync(key: string, data: unknown): void {
    this.storage.set(key, data);
  }

  removeStorageSync(key: string): void {
    this.storage.delete(key);
  }
}
