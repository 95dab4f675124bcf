/**
 * wxlogin-miniprogram: the mini-program half of wxlogin.
 *
 * One login at a time (however many calls arrive without a session, one `wx.login` and one
 * `POST /openid`), the token kept in storage, one re-login and one retry on a 401
 * `invalid_token`, a short-lived JWT for backends behind gateways that only trust JWTs
 * (one exchange at a time, exchanged again shortly before it expires), and typed errors.
 * No runtime dependencies: it runs on `wx` alone, or on any object shaped like it (Taro's,
 * uni-app's).
 */

/** The part of `wx` the client uses, in wx's callback style. */
export interface WxLike {
  login(option: {
    success?: (result: { code: string }) => void;
    fail?: (error: { errMsg: string }) => void;
  }): unknown;
  request(option: WechatMiniprogram.RequestOption): unknown;
  getStorageSync(key: string): unknown;
  setStorageSync(key: string, data: unknown): void;
  removeStorageSync(key: string): void;
}

/** What `request()` answers: wx.request's success result, its core fields. */
export interface Response<T = unknown> {
  statusCode: number;
  data: T;
  header: Record<string, string>;
}

export interface ClientOptions {
  /** wxlogin's address, e.g. `https://login.example.com`. */
  baseUrl: string;
  /** The app's name (or appid) on a wxlogin serving several: its `/apps/{app}/` routes. */
  app?: string;
  /** The platform object; the global `wx` when left out. */
  wx?: WxLike;
  /**
   * Whether an answer means the session is over and a re-login may help. By default, a
   * `401` whose body is `{"error":"invalid_token"}`, from wxlogin or from a backend behind
   * the gateway.
   */
  isSessionExpired?: (response: Response) => boolean;
  /** Milliseconds since the epoch; `Date.now` when left out. For tests. */
  now?: () => number;
}

export interface LoginResult {
  openid: string;
  unionid?: string;
  /** Seconds until the session ends. */
  expiresIn: number;
}

export interface SessionInfo extends LoginResult {
  app: string;
  appid: string;
}

export interface PhoneNumber {
  phoneNumber: string;
  purePhoneNumber: string;
  countryCode: string;
}

/**
 * Options for `request()`: wx.request's own, but for the callbacks, and which credential
 * to send: the session token (the default), or a JWT from `jwt()` for a backend behind a
 * gateway that verifies JWTs.
 */
export type RequestOptions = Omit<WechatMiniprogram.RequestOption, 'success' | 'fail' | 'complete'> & {
  auth?: 'session' | 'jwt';
};

/** The error kinds wxlogin answers with (its `error` field). */
export type ServerErrorKind =
  | 'missing_code'
  | 'malformed_code'
  | 'malformed_json'
  | 'invalid_body'
  | 'invalid_signature'
  | 'malformed_base64'
  | 'invalid_length'
  | 'decryption_failed'
  | 'watermark_mismatch'
  | 'invalid_openid'
  | 'invalid_unionid'
  | 'invalid_until'
  | 'reason_too_long'
  | 'wrong_app_kind'
  | 'invalid_redirect_uri'
  | 'invalid_scope'
  | 'invalid_state'
  | 'ambiguous_request'
  | 'invalid_token'
  | 'invalid_backend_token'
  | 'invalid_admin_token'
  | 'invalid_code'
  | 'user_blocked'
  | 'snapshot_user'
  | 'not_found'
  | 'unknown_app'
  | 'method_not_allowed'
  | 'request_timeout'
  | 'code_used'
  | 'blocks_not_durable'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'too_many_in_progress'
  | 'rate_limited'
  | 'misconfigured'
  | 'blocks_not_saved'
  | 'internal_error'
  | 'upstream_error'
  | 'overloaded'
  | 'upstream_busy'
  | 'store_unavailable'
  | 'force_refresh_limited'
  | 'access_token_unavailable'
  | 'upstream_timeout'
  // RFC 6749's, on the OAuth routes (the JWT exchange).
  | 'invalid_request'
  | 'unsupported_grant_type'
  | 'invalid_client'
  | 'temporarily_unavailable'
  | 'server_error';

/**
 * What a failure is: one of wxlogin's kinds, or `network` (the request never got an
 * answer), `wx_login_failed` (`wx.login` itself failed), `unexpected_response` (an answer
 * that is not wxlogin's, or not of the shape it documents).
 */
export type ErrorKind = ServerErrorKind | 'network' | 'wx_login_failed' | 'unexpected_response';

const SERVER_ERROR_KINDS: ReadonlySet<string> = new Set<ServerErrorKind>([
  'missing_code', 'malformed_code', 'malformed_json', 'invalid_body', 'invalid_signature',
  'malformed_base64', 'invalid_length', 'decryption_failed', 'watermark_mismatch',
  'invalid_openid', 'invalid_unionid', 'invalid_until', 'reason_too_long', 'wrong_app_kind', 'invalid_redirect_uri', 'invalid_scope',
  'invalid_state', 'ambiguous_request',
  'invalid_token', 'invalid_backend_token', 'invalid_admin_token', 'invalid_code',
  'user_blocked', 'snapshot_user', 'not_found', 'unknown_app', 'method_not_allowed', 'request_timeout',
  'code_used', 'blocks_not_durable', 'payload_too_large', 'unsupported_media_type',
  'too_many_in_progress', 'rate_limited', 'misconfigured', 'blocks_not_saved',
  'internal_error', 'upstream_error', 'overloaded', 'upstream_busy', 'store_unavailable',
  'force_refresh_limited', 'access_token_unavailable', 'upstream_timeout', 'invalid_request',
  'unsupported_grant_type', 'invalid_client', 'temporarily_unavailable', 'server_error',
]);

/** Every failure, typed by its `kind`. */
export class WxLoginError extends Error {
  readonly kind: ErrorKind;
  readonly status?: number;
  /** Seconds to wait, from `Retry-After` on a 429 or a 503. */
  readonly retryAfter?: number;

  constructor(kind: ErrorKind, message: string, status?: number, retryAfter?: number) {
    super(message);
    this.name = 'WxLoginError';
    this.kind = kind;
    this.status = status;
    this.retryAfter = retryAfter;
    Object.setPrototypeOf(this, WxLoginError.prototype);
  }
}

export interface Client {
  /** The current session, or a new one: one `wx.login` for however many callers. */
  login(): Promise<LoginResult>;
  /** `wx.request` with `Authorization: Bearer <token>`, after a login if there is none. */
  request<T = unknown>(options: RequestOptions): Promise<Response<T>>;
  /** The phone number behind the `getPhoneNumber` button's code. */
  phoneNumber(code: string): Promise<PhoneNumber>;
  /** encryptedData opened on the server with the session's session_key. */
  decrypt(sealed: { encryptedData: string; iv: string }): Promise<unknown>;
  /**
   * A short-lived JWT for the session, for backends behind gateways that verify JWTs
   * (Envoy, Istio, Kong): the one kept, or a new one from `POST /oauth/token` once it is
   * near its end; one exchange for however many callers. Logs in first if there is no
   * session, and again if the session has ended.
   */
  jwt(): Promise<string>;
  /** The session as wxlogin knows it, or `null` when there is none. Never logs in. */
  session(): Promise<SessionInfo | null>;
  /** Ends the session at wxlogin and forgets the token. */
  logout(): Promise<void>;
}

/** What is kept in storage: the token, and whose session it is. */
interface Stored {
  token: string;
  openid: string;
  unionid?: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
}

const defaultExpired = (response: Response): boolean =>
  response.statusCode === 401 && errorKind(response.data) === 'invalid_token';

function errorKind(data: unknown): string | undefined {
  return isObject(data) && typeof data.error === 'string' ? data.error : undefined;
}

function isObject(data: unknown): data is Record<string, unknown> {
  return typeof data === 'object' && data !== null && !Array.isArray(data);
}

/** The fields an answer must have, by type; `?` after a type makes a field optional. */
type Shape = Record<string, 'string' | 'number' | 'boolean' | 'string?'>;

/** `key_name` → `keyName`. */
type Camel<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Head}${Capitalize<Camel<Tail>>}` : S;

type Typed<T extends Shape> = {
  [K in keyof T as T[K] extends 'string?' ? never : Camel<K & string>]: T[K] extends 'number'
    ? number
    : T[K] extends 'boolean'
      ? boolean
      : string;
} & { [K in keyof T as T[K] extends 'string?' ? Camel<K & string> : never]?: string };

const LOGIN_ANSWER = { token: 'string', openid: 'string', unionid: 'string?', expires_in: 'number' } as const;
const SESSION_ANSWER = {
  app: 'string',
  appid: 'string',
  openid: 'string',
  unionid: 'string?',
  expires_in: 'number',
} as const;
const PHONE_ANSWER = { phoneNumber: 'string', purePhoneNumber: 'string', countryCode: 'string' } as const;
const TOKEN_ANSWER = { access_token: 'string', token_type: 'string', expires_in: 'number' } as const;

/**
 * `data` checked against `shape` and its keys camel-cased: the one place wxlogin's
 * snake_case becomes the library's camelCase. An answer of another shape is
 * `unexpected_response`, never a cast that lies.
 */
function checked<T extends Shape>(response: Response, shape: T): Typed<T> {
  const data = response.data;
  const fits =
    isObject(data) &&
    Object.entries(shape).every(([key, type]) =>
      type === 'string?' ? data[key] === undefined || typeof data[key] === 'string' : typeof data[key] === type,
    );
  if (!isObject(data) || !fits) {
    throw new WxLoginError('unexpected_response', 'wxlogin answered with a body of another shape', response.statusCode);
  }
  const typed: Record<string, unknown> = {};
  for (const key of Object.keys(shape)) {
    if (data[key] !== undefined) typed[key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())] = data[key];
  }
  return typed as Typed<T>;
}

function header(headers: Record<string, string>, name: string): string | undefined {
  const wanted = name.toLowerCase();
  for (const key of Object.keys(headers)) {
    if (key.toLowerCase() === wanted) return headers[key];
  }
  return undefined;
}

/** A wxlogin error answer, typed: `{error, message}`, or RFC 6749's `{error, error_description}`. */
function answerError(response: Response): WxLoginError {
  const error = errorKind(response.data);
  const kind: ErrorKind = error !== undefined && SERVER_ERROR_KINDS.has(error) ? (error as ServerErrorKind) : 'unexpected_response';
  const data = response.data;
  const text = isObject(data) ? (data.message ?? data.error_description) : undefined;
  const message = typeof text === 'string' ? text : `wxlogin answered HTTP ${response.statusCode}`;
  let retryAfter: number | undefined;
  if (response.statusCode === 429 || response.statusCode === 503) {
    const value = Number(header(response.header, 'Retry-After'));
    if (Number.isFinite(value) && value >= 0) retryAfter = value;
  }
  return new WxLoginError(kind, message, response.statusCode, retryAfter);
}

/** The login answers after which one fresh code, and one more try, can succeed. */
function wantsFreshCode(error: WxLoginError): boolean {
  // A double tap that lost; or the server spent the code and could not store the session:
  // without Retry-After, the same code can only fail again.
  return (
    error.kind === 'code_used' ||
    (error.kind === 'store_unavailable' && error.retryAfter === undefined)
  );
}

/**
 * How long before its end a JWT is exchanged again: a fifth of its life, at most 30 s, so
 * that one sent now is still good when a gateway checks it.
 */
function jwtMargin(lifetimeMs: number): number {
  return Math.min(30_000, lifetimeMs / 5);
}

/** A JWT kept, and the session it stands for. */
interface KeptJwt {
  jwt: string;
  sessionToken: string;
  /** Milliseconds since the epoch, at which it is exchanged again. */
  renewAt: number;
}

class WxLoginClient implements Client {
  private readonly wx: WxLike;
  private readonly base: string;
  private readonly appPrefix: string;
  private readonly storageKey: string;
  private readonly isExpired: (response: Response) => boolean;
  private readonly now: () => number;
  private stored: Stored | null;
  private keptJwt: KeptJwt | null = null;
  /** The exchange under way, which every caller of `jwt()` waits for. */
  private exchanging: Promise<string> | null = null;
  /** The login under way, which every caller without a session waits for. */
  private loggingIn: Promise<Stored> | null = null;
  /** Decryptions under way: a login waits for them, as it changes the session_key. */
  private decrypting = new Set<Promise<unknown>>();

  constructor(options: ClientOptions) {
    const platform = options.wx ?? (typeof wx === 'undefined' ? undefined : (wx as unknown as WxLike));
    if (!platform) throw new Error('wxlogin-miniprogram: no `wx`: pass the platform object as `wx`');
    this.wx = platform;
    this.base = options.baseUrl.replace(/\/+$/, '');
    this.appPrefix = options.app ? `/apps/${encodeURIComponent(options.app)}` : '';
    this.storageKey = `wxlogin:${this.base}:${options.app ?? ''}`;
    this.isExpired = options.isSessionExpired ?? defaultExpired;
    this.now = options.now ?? Date.now;
    this.stored = this.read();
  }

  async login(): Promise<LoginResult> {
    const current = this.stored && this.stored.expiresAt > this.now() ? this.stored : await this.relogin(null);
    return describe(current, this.now());
  }

  async request<T = unknown>(options: RequestOptions): Promise<Response<T>> {
    const { auth, ...wxOptions } = options;
    if (auth === 'jwt') return (await this.withJwt(wxOptions)) as Response<T>;
    return (await this.authorized(wxOptions)) as Response<T>;
  }

  jwt(): Promise<string> {
    const kept = this.keptJwt;
    if (kept && kept.sessionToken === this.stored?.token && this.now() < kept.renewAt) {
      return Promise.resolve(kept.jwt);
    }
    if (!this.exchanging) {
      const exchange = this.exchange();
      this.exchanging = exchange;
      const done = () => {
        if (this.exchanging === exchange) this.exchanging = null;
      };
      exchange.then(done, done);
    }
    return this.exchanging;
  }

  async phoneNumber(code: string): Promise<PhoneNumber> {
    const response = await this.authorized({
      url: `${this.base}/wechat/phone_number`,
      method: 'POST',
      data: { code },
      header: { 'Content-Type': 'application/json' },
    });
    if (response.statusCode !== 200) throw answerError(response);
    return checked(response, PHONE_ANSWER);
  }

  async decrypt(sealed: { encryptedData: string; iv: string }): Promise<unknown> {
    // Data sealed after a wx.login is sealed with that login's session_key, which wxlogin
    // holds only once the login has finished: `authorized` waits for it. A re-login on 401
    // brings a new session_key, under which data sealed before answers decryption_failed:
    // the caller fetches it again.
    const request: RequestOptions = {
      url: `${this.base}/wechat/decrypt`,
      method: 'POST',
      data: sealed,
      header: { 'Content-Type': 'application/json' },
    };
    const response = await this.authorized(request, (sent) => {
      this.decrypting.add(sent);
      const forget = () => this.decrypting.delete(sent);
      sent.then(forget, forget);
    });
    if (response.statusCode !== 200) throw answerError(response);
    if (!isObject(response.data) || !('data' in response.data)) {
      throw new WxLoginError('unexpected_response', 'wxlogin answered with a body of another shape', response.statusCode);
    }
    return response.data.data;
  }

  async session(): Promise<SessionInfo | null> {
    const session = this.loggingIn ? await this.loggingIn.catch(() => null) : this.stored;
    if (!session) return null;
    const response = await this.send({ url: `${this.base}${this.appPrefix}/session`, method: 'GET' }, session.token);
    if (response.statusCode === 200) return checked(response, SESSION_ANSWER);
    if (this.isExpired(response)) {
      this.forget(session.token);
      return null;
    }
    throw answerError(response);
  }

  async logout(): Promise<void> {
    const session = this.stored;
    if (!session) return;
    this.forget(session.token);
    const response = await this.send({ url: `${this.base}${this.appPrefix}/session`, method: 'DELETE' }, session.token);
    if (response.statusCode !== 204 && !this.isExpired(response)) throw answerError(response);
  }

  /**
   * Sends with the session's token; on an expired session, one re-login and one retry.
   * `watch` sees each request as it is sent.
   */
  private async authorized(options: RequestOptions, watch?: (sent: Promise<Response>) => void): Promise<Response> {
    const sent = (token: string) => {
      const request = this.send(options, token);
      watch?.(request);
      return request;
    };
    let session = this.loggingIn ? await this.loggingIn : this.stored;
    if (!session) session = await this.relogin(null);
    let response = await sent(session.token);
    if (!this.isExpired(response)) return response;
    session = await this.relogin(session.token);
    response = await sent(session.token);
    if (this.isExpired(response)) {
      this.forget(session.token);
      throw new WxLoginError(
        'invalid_token',
        'The session was refused again right after a new login.',
        response.statusCode,
      );
    }
    return response;
  }

  /**
   * Sends with a JWT; on a 401, one new JWT (and a re-login, if the session has ended) and
   * one retry: a gateway refuses a JWT for its own reasons, with bodies of its own.
   */
  private async withJwt(options: RequestOptions): Promise<Response> {
    const jwt = await this.jwt();
    const response = await this.send(options, jwt);
    if (response.statusCode !== 401) return response;
    if (this.keptJwt?.jwt === jwt) this.keptJwt = null;
    return this.send(options, await this.jwt());
  }

  /** `POST /oauth/token` for the session's token; one re-login if the session has ended. */
  private async exchange(): Promise<string> {
    let session = this.loggingIn ? await this.loggingIn : this.stored;
    if (!session) session = await this.relogin(null);
    let response = await this.exchangeFor(session.token);
    if (response.statusCode === 400 && errorKind(response.data) === 'invalid_request') {
      // The session has ended (expired, revoked): a new one, and its JWT.
      session = await this.relogin(session.token);
      response = await this.exchangeFor(session.token);
    }
    if (response.statusCode !== 200) throw answerError(response);
    const answer = checked(response, TOKEN_ANSWER);
    const lifetime = answer.expiresIn * 1000;
    this.keptJwt = {
      jwt: answer.accessToken,
      sessionToken: session.token,
      renewAt: this.now() + lifetime - jwtMargin(lifetime),
    };
    return answer.accessToken;
  }

  private exchangeFor(sessionToken: string): Promise<Response> {
    const form = {
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: sessionToken,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    };
    const data = Object.entries(form)
      .map(([key, value]) => `${encodeURIComponent(key)}=${encodeURIComponent(value)}`)
      .join('&');
    return this.send({
      url: `${this.base}/oauth/token`,
      method: 'POST',
      data,
      header: { 'Content-Type': 'application/x-www-form-urlencoded' },
    });
  }

  /**
   * A new session, shared by every caller. `stale` is the token that was just refused:
   * if another caller has replaced it meanwhile, its session is the answer.
   */
  private relogin(stale: string | null): Promise<Stored> {
    if (this.loggingIn) return this.loggingIn;
    if (stale !== null && this.stored && this.stored.token !== stale) return Promise.resolve(this.stored);
    if (stale !== null) this.forget(stale);
    const login = this.logIn();
    this.loggingIn = login;
    const done = () => {
      if (this.loggingIn === login) this.loggingIn = null;
    };
    login.then(done, done);
    return login;
  }

  private async logIn(): Promise<Stored> {
    // A login rotates the session_key: never under a decryption still on its way.
    await Promise.all(Array.from(this.decrypting, (sent) => sent.catch(() => undefined)));
    for (let attempt = 0; ; attempt++) {
      const code = await this.wxLogin();
      const response = await this.send({
        url: `${this.base}${this.appPrefix}/openid`,
        method: 'POST',
        data: { code },
        header: { 'Content-Type': 'application/json' },
      });
      if (response.statusCode === 200) {
        const { expiresIn, ...answer } = checked(response, LOGIN_ANSWER);
        const session: Stored = { ...answer, expiresAt: this.now() + expiresIn * 1000 };
        this.keep(session);
        return session;
      }
      const error = answerError(response);
      if (attempt > 0 || !wantsFreshCode(error)) throw error;
    }
  }

  private wxLogin(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.wx.login({
        success: (result) => resolve(result.code),
        fail: (error) => reject(new WxLoginError('wx_login_failed', `wx.login failed: ${error.errMsg}`)),
      });
    });
  }

  /** One wx.request, with the token if there is one; its options otherwise untouched. */
  private send(options: RequestOptions, token?: string): Promise<Response> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { ...(options.header as Record<string, string> | undefined) };
      if (token !== undefined) headers.Authorization = `Bearer ${token}`;
      this.wx.request({
        ...options,
        header: headers,
        success: (result) =>
          resolve({
            statusCode: result.statusCode,
            data: result.data,
            header: (result.header ?? {}) as Record<string, string>,
          }),
        fail: (error) => reject(new WxLoginError('network', `the request failed: ${error.errMsg}`)),
      });
    });
  }

  private read(): Stored | null {
    const value = this.wx.getStorageSync(this.storageKey) as Stored | '' | undefined | null;
    return value && typeof value === 'object' && typeof value.token === 'string' ? value : null;
  }

  private keep(session: Stored): void {
    this.stored = session;
    this.wx.setStorageSync(this.storageKey, session);
  }

  /** Forgets `token`, if it is still the one kept. */
  private forget(token: string): void {
    if (this.stored && this.stored.token === token) {
      this.stored = null;
      this.wx.removeStorageSync(this.storageKey);
    }
  }
}

function describe(session: Stored, now: number): LoginResult {
  const result: LoginResult = {
    openid: session.openid,
    expiresIn: Math.max(0, Math.floor((session.expiresAt - now) / 1000)),
  };
  if (session.unionid !== undefined) result.unionid = session.unionid;
  return result;
}

/** A client for the wxlogin at `options.baseUrl`. */
export function createClient(options: ClientOptions): Client {
  return new WxLoginClient(options);
}
