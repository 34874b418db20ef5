/**
 * Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON
 * messages separated by NUL on file descriptors 3 and 4), so a test can click and type in a page
 * and read the DOM back, with no WebSocket client and no extra package.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';

export const CHROMIUM = process.env.TLSDECRYPT_CHROMIUM ?? '/usr/bin/chromium';

export class Browser {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private buf = '';
  private session = '';

  private constructor(
    private readonly proc: ChildProcess,
    private readonly profile: string,
  ) {
    const out = proc.stdio[4] as Readable;
    out.setEncoding('utf8');
    out.on('data', (chunk: string) => {
      this.buf += chunk;
      for (let i = this.buf.indexOf('\0'); i >= 0; i = this.buf.indexOf('\0')) {
        const msg = JSON.parse(this.buf.slice(0, i)) as { id?: number; result?: unknown; error?: { message: string } };
        this.buf = this.buf.slice(i + 1);
        const w = msg.id !== undefined ? this.waiting.get(msg.id) : undefined;
        if (!w) continue;
        this.waiting.delete(msg.id!);
        if (msg.error) w.reject(new Error(`CDP: ${msg.error.message}`));
        else w.resolve(msg.result);
      }
    });
  }

  static async launch(): Promise<Browser> {
    const profile = mkdtempSync(join(tmpdir(), 'tlsdecrypt-cdp-'));
    const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', `--user-data-dir=${profile}`, '--remote-debugging-pipe', 'about:blank'];
    const proc = spawn(CHROMIUM, args, { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] });
    const b = new Browser(proc, profile);
    const { targetInfos } = (await b.send('Target.getTargets')) as { targetInfos: { targetId: string; type: string }[] };
    const page = targetInfos.find((t) => t.type === 'page');
    const targetId = page ? page.targetId : ((await b.send('Target.createTarget', { url: 'about:blank' })) as { targetId: string }).targetId;
    b.session = ((await b.send('Target.attachToTarget', { targetId, flatten: true })) as { sessionId: string }).sessionId;
    await b.send('Page.enable', {}, true);
    await b.send('Runtime.enable', {}, true);
    return b;
  }

  send(method: string, params: Record<string, unknown> = {}, inPage = false): Promise<unknown> {
    const id = this.nextId++;
    const msg = JSON.stringify({ id, method, params, ...(inPage ? { sessionId: this.session } : {}) });
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      (this.proc.stdio[3] as Writable).write(msg + '\0');
    });
  }

  async goto(url: string): Promise<void> {
    await this.send('Page.navigate', { url }, true);
  }

  /** Evaluates an expression in the page (promises awaited) and returns its JSON value. */
  async eval<T>(expression: string): Promise<T> {
    const r = (await this.send('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true }, true)) as { result: { value: T }; exceptionDetails?: { text: string; exception?: { description?: string } } };
    if (r.exceptionDetails) throw new Error(`in page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value;
  }

  /** Polls `expression` in the page until it is truthy; returns its value. */
  async waitFor<T>(what: string, expression: string, timeoutMs = 20_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      try {
        const v = await this.eval<T>(expression);
        if (v) return v;
        last = v;
      } catch (e) {
        last = e;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${String(last)})`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async close(): Promise<void> {
    await this.send('Browser.close').catch(() => {});
    await new Promise<void>((r) => {
      if (this.proc.exitCode !== null) return r();
      const t = setTimeout(() => {
        this.proc.kill('SIGKILL');
        r();
      }, 5000);
      this.proc.once('exit', () => {
        clearTimeout(t);
        r();
      });
    });
    rmSync(this.profile, { recursive: true, force: true });
  }
}
