/**
 * wxlogin-miniprogram: the mini-program half of wxlogin.
 *
 * One login at a time (however many calls arrive without a session, one `wx.login` and one
 * `POST /openid`), the token kept in storage, one re-login and one retry on a 401
 * `invalid_token`, and typed errors. No runtime dependencies: it runs on `wx` alone, or on
 * any object shaped like it (Taro's, uni-app's).
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

/** Options for `request()`: wx.request's own, but for the callbacks. */
export type RequestOptions = Omit<WechatMiniprogram.RequestOption, 'success' | 'fail' | 'complete'>;

/**
 * Every failure. `kind` is wxlogin's error kind (`invalid_token`, `rate_limited`,
 * `code_used`, `store_unavailable`, …), or `network` (the request never got an answer), or
 * `wx_login_failed` (`wx.login` itself failed), or `unexpected_response` (an answer that is
 * not wxlogin's).
 */
export class WxLoginError extends Error {
  readonly kind: string;
  readonly status?: number;
  /** Seconds to wait, from `Retry-After` on a 429 or a 503. */
  readonly retryAfter?: number;

  constructor(kind: string, message: string, status?: number, retryAfter?: number) {
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
  if (data && typeof data === 'object' && typeof (data as { error?: unknown }).error === 'string') {
    return (data as { error: string }).error;
  }
  return undefined;
}

function header(headers: Record<string, string>, name: string): string | undefined {
  const wanted = name.toLowerCase();
  for (const key of Object.keys(headers)) {
    if (key.toLowerCase() === wanted) return headers[key];
  }
  return undefined;
}

/** A wxlogin error answer, typed. */
function answerError(response: Response): WxLoginError {
  const kind = errorKind(response.data) ?? 'unexpected_response';
  const data = response.data as { message?: unknown } | null;
  const message =
    data && typeof data === 'object' && typeof data.message === 'string'
      ? data.message
      : `wxlogin answered HTTP ${response.statusCode}`;
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

class WxLoginClient implements Client {
  private readonly wx: WxLike;
  private readonly base: string;
  private readonly appPrefix: string;
  private readonly storageKey: string;
  private readonly isExpired: (response: Response) => boolean;
  private stored: Stored | null;
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
    this.stored = this.read();
  }

  async login(): Promise<LoginResult> {
    const current = this.stored && this.stored.expiresAt > Date.now() ? this.stored : await this.relogin(null);
    return describe(current);
  }

  async request<T = unknown>(options: RequestOptions): Promise<Response<T>> {
    return (await this.authorized(options)) as Response<T>;
  }

  async phoneNumber(code: string): Promise<PhoneNumber> {
    const response = await this.authorized({
      url: `${this.base}/wechat/phone_number`,
      method: 'POST',
      data: { code },
      header: { 'Content-Type': 'application/json' },
    });
    if (response.statusCode !== 200) throw answerError(response);
    return response.data as PhoneNumber;
  }

  async decrypt(sealed: { encryptedData: string; iv: string }): Promise<unknown> {
    // Data sealed after a wx.login is sealed with that login's session_key, which wxlogin
    // holds only once the login has finished: wait for it.
    let session = this.loggingIn ? await this.loggingIn : this.stored;
    if (!session) session = await this.relogin(null);
    const sent = this.send(
      {
        url: `${this.base}/wechat/decrypt`,
        method: 'POST',
        data: sealed,
        header: { 'Content-Type': 'application/json' },
      },
      session.token,
    );
    this.decrypting.add(sent);
    let response: Response;
    try {
      response = await sent;
    } finally {
      this.decrypting.delete(sent);
    }
    if (response.statusCode !== 200) throw answerError(response);
    return (response.data as { data: unknown }).data;
  }

  async session(): Promise<SessionInfo | null> {
    const session = this.loggingIn ? await this.loggingIn.catch(() => null) : this.stored;
    if (!session) return null;
    const response = await this.send({ url: `${this.base}${this.appPrefix}/session`, method: 'GET' }, session.token);
    if (response.statusCode === 200) {
      const data = response.data as { app: string; appid: string; openid: string; unionid?: string; expires_in: number };
      const info: SessionInfo = { app: data.app, appid: data.appid, openid: data.openid, expiresIn: data.expires_in };
      if (data.unionid !== undefined) info.unionid = data.unionid;
      return info;
    }
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
    const response = await this.send({ url: `${this.base}/session`, method: 'DELETE' }, session.token);
    if (response.statusCode !== 204 && !this.isExpired(response)) throw answerError(response);
  }

  /** Sends with the session's token; on an expired session, one re-login and one retry. */
  private async authorized(options: RequestOptions): Promise<Response> {
    let session = this.loggingIn ? await this.loggingIn : this.stored;
    if (!session) session = await this.relogin(null);
    let response = await this.send(options, session.token);
    if (!this.isExpired(response)) return response;
    session = await this.relogin(session.token);
    response = await this.send(options, session.token);
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
        const data = response.data as { token: string; openid: string; unionid?: string; expires_in: number };
        const session: Stored = { token: data.token, openid: data.openid, expiresAt: Date.now() + data.expires_in * 1000 };
        if (data.unionid !== undefined) session.unionid = data.unionid;
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

function describe(session: Stored): LoginResult {
  const result: LoginResult = {
    openid: session.openid,
    expiresIn: Math.max(0, Math.floor((session.expiresAt - Date.now()) / 1000)),
  };
  if (session.unionid !== undefined) result.unionid = session.unionid;
  return result;
}

/** A client for the wxlogin at `options.baseUrl`. */
export function createClient(options: ClientOptions): Client {
  return new WxLoginClient(options);
}
