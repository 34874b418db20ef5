/**
 * `tlsdecrypt replay`: one capture file (or stdin) through the pipeline, events to a writer.
 */
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { CaptureReader, CaptureFormatError, type CaptureLimits } from '../capture/index.js';
import { SecretsStore } from '../tls/crypto/keylog.js';
import { loadRsaKeyFile, type RsaServerKey } from '../tls/crypto/rsa.js';
import { Engine, type EngineOptions, type EngineStats } from './engine.js';
import type { NdjsonWriter } from './output.js';

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
    malformed += secrets.addText(text).malformed;
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

/** `FILE[:PASSWORD]` — a path that exists as given wins over splitting at the last colon. */
export function parseRsaKeySpec(arg: string): RsaKeySpec {
  try {
    statSync(arg);
    return { path: arg };
  } catch {
    /* not a plain path: try FILE:PASSWORD */
  }
  const i = arg.indexOf(':');
  if (i > 0) return { path: arg.slice(0, i), password: arg.slice(i + 1) };
  return { path: arg };
}

export async function replay(opts: ReplayOptions, out: NdjsonWriter): Promise<EngineStats> {
  const keys = loadKeys(opts.keylogs, opts.rsaKeys);
  const engine = new Engine((ev) => out.write(ev), keys, opts.engine);
  if (keys.malformedKeylogLines) engine.stats.anomalies.keylog_malformed_line = keys.malformedKeylogLines;
  const reader = new CaptureReader(engine, opts.captureLimits);
  const name = opts.capture === '-' ? 'stdin' : opts.capture;
  const input = opts.capture === '-' ? process.stdin : createReadStream(opts.capture, { highWaterMark: 1 << 20 });
  try {
    for await (const chunk of input) {
      reader.push(chunk as Buffer);
      out.flush();
      await out.drained();
    }
    reader.end();
  } catch (e) {
    if (e instanceof CaptureFormatError) throw new InputError(`${name}: ${e.message}`);
    const code = (e as NodeJS.ErrnoException).code;
    if (code && !(e instanceof InputError)) throw new InputError(`cannot read capture ${name}: ${code}`);
    throw e;
  }
  if (reader.format === undefined) throw new InputError(`${name}: empty input, not a pcap or pcapng file`);
  engine.finish();
  return engine.stats;
}
