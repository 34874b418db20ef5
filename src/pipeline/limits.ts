/**
 * Every numeric limit of the pipeline in one place: the defaults of each stage, and a validated
 * JSON file (`replay --limits FILE`) that overrides them:
 *
 *   { "tcp": { "maxFlows": 200000 }, "tls": { "maxPendingRecordBytesPerFlow": 4194304 },
 *     "http": { "bodyCaptureBytes": 0 }, "capture": { "maxPacketBytes": 262144 },
 *     "udp": { "idleTimeoutSec": 60 }, "quic": { "maxConnections": 50000 } }
 *
 * Unknown sections or keys, and values of the wrong type, are errors (exit 2), so a typo never
 * silently leaves a default in place.
 *
 * The `detect` section holds the alert settings (thresholding, per-rule overrides, disabled rules;
 * validated by src/detect/threshold.ts parseDetectSection):
 *
 *   { "detect": { "alerts": "threshold", "threshold": { "type": "limit", "track": "pair", "count": 1, "seconds": 3600 },
 *                 "rules": { "tls.missing_sni": { "track": "destination" } }, "maxThresholdKeys": 100000 } }
 */
import { readFileSync } from 'node:fs';
import { DEFAULT_TCP_OPTIONS, type TcpOptions } from '../tcp/index.js';
import { DEFAULT_TLS_OPTIONS, type TlsOptions } from '../tls/index.js';
import { DEFAULT_HTTP_OPTIONS, type HttpOptions } from '../analyzers/http/index.js';
import { DEFAULT_CAPTURE_LIMITS, type CaptureLimits } from '../capture/index.js';
import { RULES } from '../detect/rules.js';
import { parseDetectSection, thresholdOptions, ThresholdConfigError, type DetectSettings } from '../detect/threshold.js';
import type { DetectorOptions } from '../detect/detector.js';
import { DEFAULT_UDP_OPTIONS, type UdpOptions } from '../udp/index.js';
import { DEFAULT_QUIC_OPTIONS, type QuicOptions } from '../quic/options.js';
import { DEFAULT_DTLS_OPTIONS, type DtlsOptions } from '../dtls/index.js';

export interface Limits {
  tcp: Partial<TcpOptions>;
  tls: Partial<TlsOptions>;
  http: Partial<HttpOptions>;
  capture: Partial<CaptureLimits>;
  /** Alert settings (thresholding, disabled rules); absent = defaults. */
  detect?: DetectSettings;
  /** UDP flow table (src/udp) and QUIC stage (src/quic). */
  udp?: Partial<UdpOptions>;
  quic?: Partial<QuicOptions>;
  /** DTLS stage (src/dtls). */
  dtls?: Partial<DtlsOptions>;
}

export const DEFAULT_LIMITS = {
  tcp: DEFAULT_TCP_OPTIONS,
  tls: DEFAULT_TLS_OPTIONS,
  http: DEFAULT_HTTP_OPTIONS,
  capture: DEFAULT_CAPTURE_LIMITS,
  udp: DEFAULT_UDP_OPTIONS,
  quic: DEFAULT_QUIC_OPTIONS,
  dtls: DEFAULT_DTLS_OPTIONS,
} as const;

export class LimitsError extends Error {}

/** Validates a parsed limits object against the defaults' keys and value types. */
export function parseLimits(obj: unknown, where: string): Limits {
  const out: Limits = { tcp: {}, tls: {}, http: {}, capture: {}, udp: {}, quic: {}, dtls: {} };
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new LimitsError(`${where}: expected a JSON object`);
  for (const [section, values] of Object.entries(obj)) {
    if (section === 'detect') {
      try {
        out.detect = parseDetectSection(values, where, RULES.map((r) => r.id));
      } catch (e) {
        if (e instanceof ThresholdConfigError) throw new LimitsError(e.message);
        throw e;
      }
      continue;
    }
    const defaults = (DEFAULT_LIMITS as Record<string, object>)[section];
    if (!defaults) throw new LimitsError(`${where}: unknown section '${section}' (known: ${[...Object.keys(DEFAULT_LIMITS), 'detect'].join(', ')})`);
    if (typeof values !== 'object' || values === null || Array.isArray(values)) throw new LimitsError(`${where}: '${section}' must be an object`);
    for (const [key, v] of Object.entries(values)) {
      const d = (defaults as Record<string, unknown>)[key];
      if (d === undefined) throw new LimitsError(`${where}: unknown limit '${section}.${key}'`);
      const ok =
        typeof d === 'number'
          ? typeof v === 'number' && Number.isFinite(v) && v >= 0
          : typeof d === 'boolean'
            ? typeof v === 'boolean'
            : Array.isArray(d)
              ? Array.isArray(v) && v.every((x) => typeof x === 'number')
              : false;
      if (!ok) throw new LimitsError(`${where}: '${section}.${key}' must be ${Array.isArray(d) ? 'an array of numbers' : typeof d === 'number' ? 'a non-negative number' : `a ${typeof d}`}`);
      (out[section as keyof Limits] as Record<string, unknown>)[key] = v;
    }
  }
  return out;
}

export function loadLimitsFile(path: string): Limits {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new LimitsError(`cannot read limits file ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch {
    throw new LimitsError(`${path}: not valid JSON`);
  }
  return parseLimits(obj, path);
}

/**
 * The Engine's `detect` option from the limits file's detect section and the command line:
 * `--no-detect` (false: no rules, no alerts), `--alerts all|threshold` (wins over the file).
 */
export function detectOption(settings: DetectSettings | undefined, flags: { noDetect?: boolean; alerts?: 'threshold' | 'all' }): Partial<Omit<DetectorOptions, 'rules'>> | false {
  if (flags.noDetect) return false;
  const s = settings ?? {};
  return { threshold: thresholdOptions(s, flags.alerts), ...(s.disabled ? { disabled: s.disabled } : {}) };
}
