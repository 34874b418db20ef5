/**
 * The operations HTTP server (`--metrics-port`, node:http, 127.0.0.1 by default):
 *
 *   GET /metrics       Prometheus text exposition (prom-client registry)
 *   GET /healthz       200 "ok" while the process is alive (liveness)
 *   GET /readyz        200 only when the readiness provider says so (Kafka connected, workers
 *                      up), else 503; JSON body with the failing checks
 *   GET /assets        JSON: asset policy and status per asset
 *   GET /api/summary   JSON: headline figures and the decrypted-volume trend (the page polls it)
 *   GET /api/events    JSON: the most recent events, newest first (the log view; eventLog.ts):
 *                      ?decrypted=1&dataset=http&server=10.0.0.5&q=text&limit=N
 *   GET /              the status page (self-contained HTML, strict CSP)
 *
 * With a token (required by `run` when the server binds beyond loopback, see auth.ts) the page,
 * /assets and every /api/* answer 401 without it; /metrics, /healthz and /readyz stay open for
 * scrapers and probes unless `protectAll`. A 401 carries no data.
 *   anything else      404 (405 for methods other than GET/HEAD)
 *
 * No endpoint ever carries key material: the summary and asset documents are built from
 * counters, names and reasons only. `close()` is graceful: stops accepting, lets in-flight
 * responses finish, closes idle keep-alive sockets, and force-closes after a grace period.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { OpsMetrics } from './metrics.js';
import { renderStatusPage, type StatusSummary } from './statusPage.js';
import { opsLog, type Logger } from './log.js';
import { TokenCheck } from './auth.js';
import { eventQueryFromParams, type EventAnswer, type EventQuery } from './eventLog.js';

export interface Readiness {
  ready: boolean;
  /** Individual checks, e.g. { kafka: true, workers: false }. */
  checks?: Record<string, boolean>;
  reason?: string;
}

/** What /metrics serves: OpsMetrics for `run`, any prom-client registry for the publishers. */
export type MetricsSource = Pick<OpsMetrics, 'text' | 'contentType'>;

export interface OpsServerOptions {
  port: number;
  /** Default 127.0.0.1 (use 0.0.0.0 / :: to expose to a Prometheus elsewhere). */
  host?: string;
  metrics: MetricsSource;
  /** The status page and /api/summary (decryption figures); absent: both answer 404. */
  summary?: () => StatusSummary | Promise<StatusSummary>;
  /** /assets; absent: 404. */
  assets?: () => unknown;
  ready: () => Readiness | Promise<Readiness>;
  title?: string;
  log?: Logger;
  /** Force-close connections this long after close() (default 5 s). */
  closeGraceMs?: number;
  /** The log view's events; without it /api/events answers 404. */
  events?: (q: EventQuery) => EventAnswer;
  /** Bearer token for the page, /assets and /api/* (never logged). */
  token?: string;
  /** Also require the token for /metrics, /healthz and /readyz. */
  protectAll?: boolean;
}

/** Answered without the token unless protectAll: scrapers and orchestrator probes. */
const OPEN_PATHS = new Set(['/metrics', '/healthz', '/readyz']);

const SECURITY_HEADERS: Record<string, string> = {
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

export class OpsServer {
  private readonly server: Server;
  private readonly log: Logger;
  private closing: Promise<void> | undefined;
  private readonly auth: TokenCheck | undefined;

  constructor(private readonly o: OpsServerOptions) {
    this.log = o.log ?? opsLog.child('tlsdecrypt.http');
    this.auth = o.token ? new TokenCheck(o.token) : undefined;
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((e: Error) => {
        this.log.error('ops endpoint failed', { path: (req.url ?? '').slice(0, 100), error: e });
        if (!res.headersSent) this.send(res, 500, 'text/plain; charset=utf-8', 'internal error\n', req.method === 'HEAD');
        else res.destroy();
      });
    });
    this.server.keepAliveTimeout = 5000;
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 30_000;
  }

  /** Starts listening; resolves with the bound address (port 0 = any free port). */
  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error): void => reject(e);
      this.server.once('error', onError);
      this.server.listen(this.o.port, this.o.host ?? '127.0.0.1', () => {
        this.server.off('error', onError);
        const a = this.server.address() as AddressInfo;
        this.log.info('ops HTTP server listening', { address: a.address, port: a.port, authRequired: this.auth !== undefined });
        resolve(a);
      });
    });
  }

  get address(): AddressInfo | undefined {
    return (this.server.address() as AddressInfo | null) ?? undefined;
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.server.closeAllConnections(), this.o.closeGraceMs ?? 5000);
      timer.unref();
      this.server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      this.server.closeIdleConnections();
    });
    return this.closing;
  }

  private send(res: ServerResponse, status: number, type: string, body: string | Buffer, head: boolean, extra: Record<string, string> = {}): void {
    const buf = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, 'content-length': String(buf.length), ...extra });
    res.end(head ? undefined : buf);
  }

  private json(res: ServerResponse, status: number, v: unknown, head: boolean): void {
    this.send(res, status, 'application/json; charset=utf-8', JSON.stringify(v, null, 1) + '\n', head);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const head = req.method === 'HEAD';
    let path: string;
    let params: URLSearchParams;
    try {
      const u = new URL(req.url ?? '/', 'http://x');
      path = u.pathname;
      params = u.searchParams;
    } catch {
      return this.send(res, 400, 'text/plain; charset=utf-8', 'bad request\n', head);
    }
    if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
    const known = ['/metrics', '/healthz', '/readyz'];
    if (this.o.assets) known.push('/assets');
    if (this.o.summary) known.push('/', '/api/summary');
    if (this.o.events) known.push('/api/events');
    if (!known.includes(path)) return this.send(res, 404, 'text/plain; charset=utf-8', 'not found\n', head);
    if (req.method !== 'GET' && !head) return this.send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', false, { allow: 'GET, HEAD' });
    if (this.auth && (this.o.protectAll || !OPEN_PATHS.has(path))) {
      const viaQuery = path === '/' ? params.get('token') : null;
      if (viaQuery !== null && this.auth.matches(viaQuery)) {
        // The browser's way in: a cookie for the page's own requests, and the token off the address bar.
        return this.send(res, 303, 'text/plain; charset=utf-8', 'see ./\n', head, { location: './', 'set-cookie': this.auth.setCookieHeader() });
      }
      if (!this.auth.allows(req)) {
        return this.send(res, 401, 'text/plain; charset=utf-8', 'token required: send Authorization: Bearer TOKEN, or open /?token=TOKEN in a browser\n', head, { 'www-authenticate': 'Bearer realm="tlsdecrypt"' });
      }
    }
    switch (path) {
      case '/metrics': {
        const text = await this.o.metrics.text();
        return this.send(res, 200, this.o.metrics.contentType, text, head);
      }
      case '/healthz':
        return this.send(res, 200, 'text/plain; charset=utf-8', 'ok\n', head);
      case '/readyz': {
        let r: Readiness;
        try {
          r = await this.o.ready();
        } catch (e) {
          r = { ready: false, reason: `readiness check failed: ${(e as Error).message}` };
        }
        return this.json(res, r.ready ? 200 : 503, r, head);
      }
      case '/assets':
        return this.json(res, 200, await this.o.assets!(), head);
      case '/api/summary':
        return this.json(res, 200, await this.o.summary!(), head);
      case '/api/events':
        if (!this.o.events) return this.send(res, 404, 'text/plain; charset=utf-8', 'not found\n', head);
        return this.json(res, 200, this.o.events(eventQueryFromParams(params)), head);
      case '/': {
        const nonce = randomBytes(16).toString('base64');
        const csp = `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;
        return this.send(res, 200, 'text/html; charset=utf-8', renderStatusPage(nonce, this.o.title), head, { 'content-security-policy': csp });
      }
    }
  }
}
