/**
 * One request/response exchange and its rendering as ECS fields (`http.*`, `url.*`,
 * `user_agent.*`), shared by the HTTP/1, HTTP/2 and HTTP/3 analyzers, with credential redaction.
 */
import type { EcsFields, Timestamp } from '../../types.js';
import { BodyCollector, mimeOf, redactParams } from './body.js';
import type { HttpOptions } from './options.js';

/**
 * Header fields of one message: lower-case name -> value. Repeated fields are joined with ", "
 * (RFC 9110 Section 5.3), except set-cookie which cannot be joined (kept as an array) and cookie,
 * whose HTTP/2 crumbs are joined with "; " (RFC 9113 Section 8.2.3).
 */
export class HeaderMap {
  readonly map = new Map<string, string | string[]>();
  /** Octets accounted for the header-size cap (name + value + 32, as RFC 9113 6.5.2 counts). */
  size = 0;

  add(rawName: string, value: string): void {
    const name = rawName.toLowerCase();
    this.size += name.length + value.length + 32;
    const prev = this.map.get(name);
    if (name === 'set-cookie') {
      if (prev === undefined) this.map.set(name, [value]);
      else (prev as string[]).push(value);
      return;
    }
    if (prev === undefined) this.map.set(name, value);
    else this.map.set(name, `${prev as string}${name === 'cookie' ? '; ' : ', '}${value}`);
  }

  get(name: string): string | undefined {
    const v = this.map.get(name);
    return Array.isArray(v) ? v.join(', ') : v;
  }
}

export interface Exchange {
  /** Capture time of the request's first byte (of the response's when no request was seen). */
  ts: Timestamp;
  version: '1.0' | '1.1' | '2' | '3';
  method?: string;
  /** Request target as sent (HTTP/1 request-target, HTTP/2 :path). */
  target?: string;
  /** HTTP/2 :authority. */
  authority?: string;
  scheme?: string;
  reqHeaders?: HeaderMap;
  reqBody?: BodyCollector;
  status?: number;
  respHeaders?: HeaderMap;
  respBody?: BodyCollector;
  /** Trailer fields (RFC 9110 §6.5): after a chunked HTTP/1.1 body, or a final HEADERS frame. */
  reqTrailers?: HeaderMap;
  respTrailers?: HeaderMap;
  pushed?: boolean;
  emitted?: boolean;
}

const REDACTED = '[REDACTED]';

function redactAuth(v: string): string {
  const t = v.trim();
  const sp = t.indexOf(' ');
  return sp > 0 ? `${t.slice(0, sp)} ${REDACTED}` : REDACTED;
}

/** Cookie: keep the names, drop the values (RFC 6265 Section 4.2.1 cookie-string). */
function redactCookie(v: string): string {
  return v
    .split(';')
    .map((p) => {
      const s = p.trim();
      const eq = s.indexOf('=');
      return eq >= 0 ? `${s.slice(0, eq)}=${REDACTED}` : s;
    })
    .join('; ');
}

/** Set-Cookie: the first name=value pair is the cookie; the attributes are not secret (RFC 6265 4.1.1). */
function redactSetCookie(v: string): string {
  const semi = v.indexOf(';');
  const first = semi >= 0 ? v.slice(0, semi) : v;
  const rest = semi >= 0 ? v.slice(semi) : '';
  const eq = first.indexOf('=');
  return (eq >= 0 ? `${first.slice(0, eq).trim()}=${REDACTED}` : REDACTED) + rest;
}

function headersObject(h: HeaderMap, redact: boolean): Record<string, string | string[]> {
  const o: Record<string, string | string[]> = {};
  for (const [k, v] of h.map) {
    if (!redact) {
      o[k] = Array.isArray(v) ? [...v] : v;
      continue;
    }
    switch (k) {
      case 'authorization':
      case 'proxy-authorization':
        o[k] = redactAuth(v as string);
        break;
      case 'cookie':
        o[k] = redactCookie(v as string);
        break;
      case 'set-cookie':
        o[k] = (v as string[]).map(redactSetCookie);
        break;
      default:
        o[k] = Array.isArray(v) ? [...v] : v;
    }
  }
  return o;
}

/** Splits "host[:port]" / "[v6]:port" (RFC 9110 Section 7.2 Host, RFC 3986 3.2.2). */
export function splitHostPort(hp: string): { domain?: string; port?: number } {
  const s = hp.trim();
  if (s === '') return {};
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) return { domain: s };
    const domain = s.slice(1, close);
    const rest = s.slice(close + 1);
    const port = rest.startsWith(':') && /^\d{1,5}$/.test(rest.slice(1)) ? Number(rest.slice(1)) : undefined;
    return port !== undefined && port <= 65535 ? { domain, port } : { domain };
  }
  const c = s.lastIndexOf(':');
  if (c >= 0 && s.indexOf(':') === c) {
    const p = s.slice(c + 1);
    const domain = s.slice(0, c);
    if (/^\d{1,5}$/.test(p) && Number(p) <= 65535) return domain ? { domain, port: Number(p) } : { port: Number(p) };
    return domain ? { domain } : {};
  }
  return { domain: s };
}

interface UrlParts {
  domain?: string;
  port?: number;
  path?: string;
  query?: string;
  original?: string;
  scheme?: string;
}

/** RFC 9112 Section 3.2: origin-form, absolute-form, authority-form (CONNECT), asterisk-form. */
function parseTarget(target: string, method: string | undefined, redact: boolean): UrlParts {
  const u: UrlParts = {};
  let original = target;
  const abs = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?#]*)(.*)$/.exec(target);
  let pathQuery: string | undefined;
  if (abs) {
    u.scheme = abs[1].toLowerCase();
    let auth = abs[2];
    const at = auth.lastIndexOf('@');
    if (at >= 0) {
      const userinfo = auth.slice(0, at);
      auth = auth.slice(at + 1);
      if (redact && userinfo.includes(':')) {
        original = `${abs[1]}://${userinfo.slice(0, userinfo.indexOf(':'))}:${REDACTED}@${abs[2].slice(at + 1)}${abs[3]}`;
      }
    }
    Object.assign(u, splitHostPort(auth));
    pathQuery = abs[3] || '/';
  } else if (method === 'CONNECT') {
    Object.assign(u, splitHostPort(target));
  } else {
    pathQuery = target;
  }
  if (pathQuery !== undefined) {
    const hash = pathQuery.indexOf('#');
    if (hash >= 0) pathQuery = pathQuery.slice(0, hash);
    const q = pathQuery.indexOf('?');
    if (q >= 0) {
      u.path = pathQuery.slice(0, q);
      const query = pathQuery.slice(q + 1);
      u.query = redact ? redactParams(query) : query;
      if (redact && u.query !== query) {
        const oq = original.indexOf('?');
        const oh = original.indexOf('#', oq);
        original = original.slice(0, oq + 1) + u.query + (oh >= 0 ? original.slice(oh) : '');
      }
    } else {
      u.path = pathQuery;
    }
  }
  u.original = original;
  return u;
}

/** Renders an exchange as nested ECS fields (only what is known). */
export function exchangeFields(ex: Exchange, opts: HttpOptions): EcsFields {
  const redact = opts.redactCredentials;
  const http: Record<string, unknown> = { version: ex.version };
  const url: Record<string, unknown> = {};
  const fields: EcsFields = { http };

  if (ex.method !== undefined || ex.reqHeaders || ex.target !== undefined) {
    const req: Record<string, unknown> = {};
    if (ex.method !== undefined) req.method = ex.method;
    if (ex.pushed) req.pushed = true;
    if (ex.reqHeaders) req.headers = headersObject(ex.reqHeaders, redact);
    if (ex.reqBody && (ex.reqBody.bytes > 0 || ex.reqHeaders?.get('content-length') !== undefined)) {
      const body: Record<string, unknown> = { bytes: ex.reqBody.bytes };
      const mime = mimeOf(ex.reqHeaders?.get('content-type'));
      const content = ex.reqBody.content(mime === 'application/x-www-form-urlencoded', redact);
      if (content !== undefined) body.content = content;
      const magic = ex.reqBody.magic();
      if (magic !== undefined) body.magic = magic;
      req.body = body;
    }
    if (ex.reqTrailers) req.trailers = headersObject(ex.reqTrailers, redact);
    http.request = req;
    if (ex.target !== undefined) {
      const parts = parseTarget(ex.target, ex.method, redact);
      const hostSource = ex.authority ?? ex.reqHeaders?.get('host');
      if (parts.domain === undefined && parts.port === undefined && hostSource !== undefined) {
        Object.assign(parts, splitHostPort(hostSource));
      }
      if (parts.domain !== undefined) url.domain = parts.domain;
      if (parts.port !== undefined) url.port = parts.port;
      if (parts.path !== undefined) url.path = parts.path;
      if (parts.query !== undefined) url.query = parts.query;
      url.original = parts.original;
      url.scheme = ex.scheme ?? parts.scheme ?? 'https';
    } else if (ex.authority !== undefined) {
      Object.assign(url, splitHostPort(ex.authority));
      url.scheme = ex.scheme ?? 'https';
    }
    const ua = ex.reqHeaders?.get('user-agent');
    if (ua !== undefined) fields.user_agent = { original: ua };
  }

  if (ex.status !== undefined || ex.respHeaders) {
    const resp: Record<string, unknown> = {};
    if (ex.status !== undefined) resp.status_code = ex.status;
    if (ex.respHeaders) {
      resp.headers = headersObject(ex.respHeaders, redact);
      const mime = mimeOf(ex.respHeaders.get('content-type'));
      if (mime !== undefined) resp.mime_type = mime;
    }
    if (ex.respBody) {
      const body: Record<string, unknown> = { bytes: ex.respBody.bytes };
      const mime = mimeOf(ex.respHeaders?.get('content-type'));
      const content = ex.respBody.content(mime === 'application/x-www-form-urlencoded', redact);
      if (content !== undefined) body.content = content;
      const magic = ex.respBody.magic();
      if (magic !== undefined) body.magic = magic;
      resp.body = body;
    }
    if (ex.respTrailers) resp.trailers = headersObject(ex.respTrailers, redact);
    http.response = resp;
  }
  if (Object.keys(url).length > 0) fields.url = url;
  return fields;
}
