/**
 * `tlsdecrypt replay`: one capture file (or stdin) through the pipeline, events to a writer.
 */
import { closeSync, createReadStream, fstatSync, openSync, readFileSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { CaptureReader, CaptureFormatError, type CaptureLimits } from '../capture/index.js';
import { SecretsStore } from '../tls/crypto/keylog.js';
import { loadRsaKeyFile, type RsaServerKey } from '../tls/crypto/rsa.js';
import { Engine, type EngineOptions, type EngineStats } from './engine.js';
import type { NdjsonWriter } from './output.js';
import type { ProgressDisplay } from './progress.js';

/** Unusable input or arguments: the CLI prints the message as one line and exits 2. */
export class InputError extends Error {}

export interface RsaKeySpec {
  path: string;
  password?: string;
}

export interface ReplayOptions {
  capture: string; // path or '-'
  keylogs: string[];
  rsaKeys: RsaKeySpec[];
  engine: Partial<EngineOptions>;
  captureLimits?: Partial<CaptureLimits>;
  /** The progress line on a terminal (cli.ts decides whether there is one). */
  progress?: ProgressDisplay;
  /**
   * Resolves to end the input as at EOF (the CLI's SIGINT/SIGTERM): what was read is finished as
   * at the end of the capture, open connections included, so the events so far and the summary
   * still come out.
   */
  stop?: Promise<unknown>;
}

/** Loads key material; every failure names the file and never echoes its content. */
export function loadKeys(keylogs: string[], rsaSpecs: RsaKeySpec[]): { secrets: SecretsStore; rsaKeys: RsaServerKey[]; malformedKeylogLines: number } {
  const secrets = new SecretsStore();
  let malformed = 0;
  for (const path of keylogs) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new InputError(`cannot read key log ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    const r = secrets.addText(text);
    // Not one usable line but some that are not key-log lines: no key log at all (a capture or a
    // PEM file given by mistake, arguments swapped), which would only make every session no_key.
    if (r.added === 0 && r.malformed > 0) throw new InputError(`${path}: not an NSS key log (${r.malformed} lines, none usable; content not shown)`);
    malformed += r.malformed;
  }
  const rsaKeys: RsaServerKey[] = [];
  for (const spec of rsaSpecs) {
    try {
      rsaKeys.push(...loadRsaKeyFile(spec.path, spec.password));
    } catch (e) {
      throw new InputError((e as Error).message.split('\n')[0]);
    }
  }
  return { secrets, rsaKeys, malformedKeylogLines: malformed };
}

/**
 * Throws the InputError the loaders would throw (same words) for the first input that cannot be
 * opened: the capture (unless stdin), the key logs, the RSA key files. Called before `--out` is
 * opened, since opening it truncates it: a typo in an input path must not cost the previous results.
 */
export function checkInputsReadable(capture: string, keylogs: string[], rsaSpecs: RsaKeySpec[]): void {
  const problem = (path: string): string | undefined => {
    try {
      const fd = openSync(path, 'r');
      try {
        return fstatSync(fd).isDirectory() ? 'EISDIR' : undefined;
      } finally {
        closeSync(fd);
      }
    } catch (e) {
      return (e as NodeJS.ErrnoException).code ?? 'error';
    }
  };
  let code: string | undefined;
  if (capture !== '-' && (code = problem(capture))) throw new InputError(`cannot read capture ${capture}: ${code}`);
  for (const path of keylogs) if ((code = problem(path))) throw new InputError(`cannot read key log ${path}: ${code}`);
  for (const { path } of rsaSpecs) if ((code = problem(path))) throw new InputError(`${path}: cannot read file (${code})`);
}

/**
 * `FILE[:PASSWORD]` — a path that exists as given wins; else the split at the first colon after
 * which FILE is a file (the path may hold colons, `keys/a:b/k.pem:pw`, and so may the password,
 * `k.p12:pa:ss`); else the first colon, so that the error naming a missing FILE never holds any
 * of the password.
 */
export function parseRsaKeySpec(arg: string): RsaKeySpec {
  const isFile = (p: string): boolean => {
    try {
      return statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (isFile(arg)) return { path: arg };
  for (let i = arg.indexOf(':'); i > 0; i = arg.indexOf(':', i + 1)) {
    if (isFile(arg.slice(0, i))) return { path: arg.slice(0, i), password: arg.slice(i + 1) };
  }
  const i = arg.indexOf(':');
  if (i > 0) return { path: arg.slice(0, i), password: arg.slice(i + 1) };
  return { path: arg };
}

/** Bytes read from a capture file at a time. */
export const READ_CHUNK_BYTES = 1 << 20;

/**
 * A capture file's bytes, read into two buffers in turn: the next read runs (in libuv's thread
 * pool) while this thread frames the chunk before it. Nothing refers to a chunk once it is read
 * into again: the engine's stages copy what they keep of a packet (the fan-out's dispatcher
 * copies each packet into its shard's batch), and a record split between reads is joined by the
 * capture reader in a buffer of its own. A fresh buffer per read, as a stream gives, costs a page
 * fault per 4 KiB read (on the 2-vCPU VMs here ~0.1 s of system time for a 45 MB capture, a
 * quarter of a QUIC bulk replay's CPU).
 */
export async function* fileChunks(capture: string, chunkBytes = READ_CHUNK_BYTES): AsyncGenerator<Buffer> {
  const fh = await open(capture, 'r');
  const bufs = [Buffer.allocUnsafeSlow(chunkBytes), Buffer.allocUnsafeSlow(chunkBytes)];
  let i = 0;
  let next = fh.read(bufs[0], 0, chunkBytes, null);
  try {
    for (;;) {
      const { bytesRead } = await next;
      if (bytesRead === 0) return;
      const cur = bufs[i];
      i ^= 1;
      next = fh.read(bufs[i], 0, chunkBytes, null);
      yield cur.subarray(0, bytesRead);
    }
  } finally {
    await next.catch(() => undefined);
    await fh.close();
  }
}

const STOPPED: unique symbol = Symbol('stopped');

/**
 * Reads a capture file (or stdin for '-') in 1 MiB chunks into a CaptureReader, awaiting
 * `afterChunk` between chunks (back-pressure). Read and format errors become one-line
 * InputErrors naming the input (exit 2); errors of `afterChunk` pass through unchanged. When
 * `stop` resolves, reading ends as at EOF (a record cut short is counted as 'capture_truncated').
 */
export async function pumpCapture(
  capture: string,
  reader: CaptureReader,
  afterChunk: () => Promise<void> | void,
  stop?: Promise<unknown>,
  /** The chunks to read instead of the file's (or stdin's) stream (the replay fan-out's own reads). */
  source?: AsyncIterable<Buffer>,
): Promise<void> {
  const name = capture === '-' ? 'stdin' : capture;
  const input = source ?? (capture === '-' ? process.stdin : createReadStream(capture, { highWaterMark: 1 << 20 }));
  const chunks = input[Symbol.asyncIterator]();
  let stopped = false;
  // `stop` as a value the read races against (made once, not once per chunk)
  const stopAt = stop?.then((): typeof STOPPED => STOPPED);
  const inputError = (e: unknown): unknown => {
    if (e instanceof CaptureFormatError) return new InputError(`${name}: ${e.message}`);
    const code = (e as NodeJS.ErrnoException).code;
    return code ? new InputError(`cannot read capture ${name}: ${code}`) : e;
  };
  try {
    for (;;) {
      try {
        // `stop` (SIGTERM of a live pipe) ends the input like EOF does.
        const r = stopAt ? await Promise.race([chunks.next(), stopAt]) : await chunks.next();
        if (r === STOPPED) {
          // a pending next() would hold return() back until the next chunk: close the input instead
          stopped = true;
          if ('destroy' in input && typeof input.destroy === 'function') input.destroy();
          break;
        }
        if (r.done) break;
        reader.push(r.value as Buffer);
      } catch (e) {
        throw inputError(e);
      }
      await afterChunk();
    }
    try {
      reader.end();
    } catch (e) {
      throw inputError(e);
    }
  } finally {
    if (!stopped) await chunks.return?.();
  }
  if (reader.format === undefined) throw new InputError(`${name}: empty input, not a pcap or pcapng file`);
  const short = reader.headerShortfall;
  if (short !== undefined) throw new InputError(`${name}: ${short}`);
}

/**
 * `pumpCapture` with the writer's back-pressure between chunks: `engine`'s held QUIC packets
 * processed (a live pipe's chunk is what it had), its events out, then wait for room.
 */
export function pumpToWriter(capture: string, reader: CaptureReader, out: NdjsonWriter, source?: AsyncIterable<Buffer>, engine?: Engine, stop?: Promise<unknown>): Promise<void> {
  return pumpCapture(
    capture,
    reader,
    async () => {
      engine?.quic.flush();
      out.flush();
      await out.drained();
    },
    stop,
    source,
  );
}

/**
 * The engine that writes its events to `out` and owns the key files' malformed-line count (the
 * one engine of a replay, or shard 0 of a sharded one: counted once).
 */
export function writerEngine(out: NdjsonWriter, keys: ReturnType<typeof loadKeys>, opts: Partial<EngineOptions>): Engine {
  const engine = new Engine((ev) => out.write(ev), keys, opts);
  if (keys.malformedKeylogLines) engine.stats.anomalies.keylog_malformed_line = keys.malformedKeylogLines;
  return engine;
}

export async function replay(opts: ReplayOptions, out: NdjsonWriter): Promise<EngineStats> {
  const engine = writerEngine(out, loadKeys(opts.keylogs, opts.rsaKeys), opts.engine);
  const reader = new CaptureReader(engine, opts.captureLimits);
  opts.progress?.watch(reader, () => engine.stats.sessionsByStatus.decrypted ?? 0);
  await pumpToWriter(opts.capture, reader, out, opts.capture === '-' ? undefined : fileChunks(opts.capture), engine, opts.stop);
  engine.finish();
  return engine.stats;
}
