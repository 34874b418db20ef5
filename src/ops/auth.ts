/**
 * Bearer-token access to the ops server's decrypted content (the log view and every /api/*
 * endpoint) when it binds beyond loopback. Scripts send `Authorization: Bearer TOKEN`; a browser
 * opens `/?token=TOKEN` once and is answered with a redirect to `/` that sets an HttpOnly,
 * SameSite=Strict cookie holding a digest of the token (not the token), so the page's own
 * requests carry it and the token leaves the address bar. Comparisons are constant-time over
 * fixed-length digests. The token is never logged and never echoed in an answer.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';

export const TOKEN_COOKIE = 'tlsdecrypt_token';
export const MIN_TOKEN_LENGTH = 16;

/** True when `host` only accepts connections from this machine (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (h.startsWith('::ffff:')) return isIP(h.slice(7)) === 4 && h.slice(7).startsWith('127.');
  return false;
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

export class TokenCheck {
  private readonly tokenDigest: Buffer;
  /** The cookie's value: a keyed digest of the token, useless as a bearer token itself. */
  readonly cookieValue: string;

  constructor(token: string) {
    this.tokenDigest = digest(token);
    this.cookieValue = createHmac('sha256', token).update('tlsdecrypt ops cookie v1').digest('base64url');
  }

  /** Constant-time: both sides are hashed to 32 bytes first, so lengths never differ. */
  matches(candidate: string): boolean {
    return timingSafeEqual(this.tokenDigest, digest(candidate));
  }

  private cookieMatches(v: string): boolean {
    return timingSafeEqual(digest(this.cookieValue), digest(v));
  }

  /** The request carries the token (bearer header) or the cookie set by `/?token=`. */
  allows(req: IncomingMessage): boolean {
    const auth = req.headers.authorization;
    if (auth) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
      if (m && this.matches(m[1])) return true;
    }
    const cookie = req.headers.cookie;
    if (cookie) {
      for (const part of cookie.split(';')) {
        const i = part.indexOf('=');
        if (i > 0 && part.slice(0, i).trim() === TOKEN_COOKIE && this.cookieMatches(part.slice(i + 1).trim())) return true;
      }
    }
    return false;
  }

  setCookieHeader(): string {
    return `${TOKEN_COOKIE}=${this.cookieValue}; Path=/; HttpOnly; SameSite=Strict`;
  }
}
