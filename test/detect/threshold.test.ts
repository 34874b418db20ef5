/**
 * Alert thresholding (src/detect/threshold.ts): per type, track and rule, windows by capture time,
 * the held-back counts in summary alerts, the bounded key table, configuration validation, and
 * determinism across batch splits and `replay --workers N`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CaptureReader } from '../../src/capture/index.js';
import { Engine } from '../../src/pipeline/engine.js';
import { loadKeys } from '../../src/pipeline/replay.js';
import { LimitsError, detectOption, parseLimits } from '../../src/pipeline/limits.js';
import { resolveRunConfig } from '../../src/kafka/config.js';
import { writeFileSync } from 'node:fs';
import type { EcsEvent } from '../../src/events/builder.js';
import { DEFAULT_THRESHOLD_OPTIONS, Detector, alertId, get, type EcsAlert, type Rule, type ThresholdOptions } from '../../src/detect/index.js';

const T0 = Date.parse('2026-11-22T10:00:00.000Z'); // an hour boundary

const ruleA: Rule = {
  id: 'test.a',
  name: 'Test A',
  description: 'fires on every event of dataset x (test)',
  severity: 'medium',
  category: 'Test',
  datasets: ['x'],
  evidence: 'handshake',
  predicate: () => ({ reason: 'hit', details: {} }),
};
const ruleB: Rule = { ...ruleA, id: 'test.b', name: 'Test B' };

let n = 0;
function ev(o: { t?: number; src?: string; dst?: string; port?: number; sni?: string } = {}): EcsEvent {
  const e: Record<string, unknown> = {
    '@timestamp': new Date(o.t ?? T0).toISOString(),
    ecs: { version: '8.11.0' },
    event: { kind: 'event', category: ['network'], type: ['connection'], dataset: 'x', module: 'tlsdecrypt', id: `ev${++n}` },
    source: { ip: o.src ?? '10.95.0.1', port: 40000 + (n % 1000) },
    destination: { ip: o.dst ?? '10.95.0.2', port: o.port ?? 443 },
    network: { community_id: `1:c${n}` },
  };
  if (o.sni !== undefined) e.tls = { client: { server_name: o.sni } };
  return e as EcsEvent;
}

function detector(th: Partial<ThresholdOptions> = {}, rules: Rule[] = [ruleA]): Detector {
  return new Detector({ rules, threshold: { ...DEFAULT_THRESHOLD_OPTIONS, ...th } });
}

/** Inspects the events, then flushes: every alert in output order. */
function feed(d: Detector, evs: EcsEvent[]): EcsAlert[] {
  return [...evs.flatMap((e) => d.inspect(e)), ...d.flush()];
}
const isSummary = (a: EcsAlert): boolean => get(a, 'detection.threshold.summary') === true;
const suppressed = (a: EcsAlert): number => Number(get(a, 'detection.threshold.suppressed'));

describe('alert thresholding', () => {
  it('limit 1 per pair (the default): one alert, the rest counted in one summary at the end', () => {
    const d = detector();
    const evs = Array.from({ length: 5 }, (_, i) => ev({ t: T0 + i * 1000 }));
    const out = feed(d, evs);
    expect(out.map(isSummary)).toEqual([false, true]);
    expect(out[0].event.id).toBe(alertId('ev' + evs[0].event.id.slice(2), 'test.a'));
    const s = out[1];
    expect(s.rule.id).toBe('test.a');
    expect(suppressed(s)).toBe(4);
    expect(get(s, 'detection.threshold.hits')).toBe(5);
    expect(get(s, 'detection.threshold.first_suppressed_event_id')).toBe(evs[1].event.id);
    expect(get(s, 'detection.threshold.last_suppressed_event_id')).toBe(evs[4].event.id);
    expect(get(s, 'event.start')).toBe('2026-11-22T10:00:00.000Z');
    expect(get(s, 'event.end')).toBe('2026-11-22T11:00:00.000Z');
    expect(get(s, 'source.ip')).toBe('10.95.0.1');
    expect(get(s, 'destination.ip')).toBe('10.95.0.2');
    expect(s['@timestamp']).toBe(evs[4]['@timestamp']);
    expect(d.stats).toMatchObject({ alerts: 2, thresholdSuppressed: 4, thresholdSummaries: 1 });
  });

  it('enabled: false (--alerts all) alerts every hit and writes no summary', () => {
    const out = feed(detector({ enabled: false }), Array.from({ length: 5 }, () => ev()));
    expect(out.length).toBe(5);
    expect(out.some(isSummary)).toBe(false);
  });

  it('the pair key separates sources, destinations and server names, and rules', () => {
    const evs = [ev(), ev({ src: '10.95.0.3' }), ev({ dst: '10.95.0.4' }), ev({ sni: 'a.example' }), ev({ sni: 'b.example' }), ev(), ev({ sni: 'a.example' })];
    const out = feed(detector({}, [ruleA, ruleB]), evs);
    const alerts = out.filter((a) => !isSummary(a));
    expect(alerts.length).toBe(2 * 5);
    const sums = out.filter(isSummary);
    expect(sums.map((s) => [s.rule.id, suppressed(s)]).sort()).toEqual([['test.a', 1], ['test.a', 1], ['test.b', 1], ['test.b', 1]]);
  });

  it.each([
    ['source', 2],
    ['destination', 3],
    ['asset', 4],
    ['rule', 1],
  ] as const)('track %s: one alert per %i keys of the same events', (track, keys) => {
    const evs = [
      ev({ src: '10.95.1.1', dst: '10.95.2.1' }),
      ev({ src: '10.95.1.1', dst: '10.95.2.2' }),
      ev({ src: '10.95.1.2', dst: '10.95.2.3' }),
      ev({ src: '10.95.1.2', dst: '10.95.2.3', port: 8443 }),
      ev({ src: '10.95.1.1', dst: '10.95.2.1' }),
    ];
    const out = feed(detector({ default: { type: 'limit', track, count: 1, seconds: 3600 } }), evs);
    const alerts = out.filter((a) => !isSummary(a));
    expect(alerts.length).toBe(keys);
    expect(out.filter(isSummary).reduce((s, a) => s + suppressed(a), 0)).toBe(5 - keys);
    for (const s of out.filter(isSummary)) expect(get(s, 'detection.threshold.track')).toBe(track);
  });

  it('type threshold alerts every count-th hit, type both once at the count-th hit', () => {
    const seven = () => Array.from({ length: 7 }, () => ev());
    const thr = feed(detector({ default: { type: 'threshold', track: 'pair', count: 3, seconds: 3600 } }), seven());
    expect(thr.filter((a) => !isSummary(a)).map((a) => get(a, 'detection.threshold.hits'))).toEqual([3, 3]);
    expect(thr.filter(isSummary).map(suppressed)).toEqual([5]);
    const both = feed(detector({ default: { type: 'both', track: 'pair', count: 3, seconds: 3600 } }), seven());
    expect(both.filter((a) => !isSummary(a)).map((a) => get(a, 'detection.threshold.hits'))).toEqual([3]);
    expect(both.filter(isSummary).map(suppressed)).toEqual([6]);
    const lim = feed(detector({ default: { type: 'limit', track: 'pair', count: 3, seconds: 3600 } }), seven());
    expect(lim.filter((a) => !isSummary(a)).length).toBe(3);
    expect(lim.filter((a) => !isSummary(a)).every((a) => get(a, 'detection.threshold') === undefined)).toBe(true);
    expect(lim.filter(isSummary).map(suppressed)).toEqual([4]);
  });

  it('per-rule settings override the default', () => {
    const d = detector({ rules: { 'test.b': { count: 3 } } }, [ruleA, ruleB]);
    const out = feed(d, Array.from({ length: 4 }, () => ev()));
    expect(out.filter((a) => !isSummary(a) && a.rule.id === 'test.a').length).toBe(1);
    expect(out.filter((a) => !isSummary(a) && a.rule.id === 'test.b').length).toBe(3);
  });

  it('windows follow capture time: a hit in the next hour alerts again, after the summary of the last', () => {
    const d = detector();
    const a = d.inspect(ev({ t: T0 + 60_000 }));
    const b = d.inspect(ev({ t: T0 + 30 * 60_000 }));
    const c = d.inspect(ev({ t: T0 + 59 * 60_000 }));
    const next = d.inspect(ev({ t: T0 + 61 * 60_000 }));
    expect([a.length, b.length, c.length]).toEqual([1, 0, 0]);
    expect(next.map(isSummary)).toEqual([true, false]);
    expect(suppressed(next[0])).toBe(2);
    expect(get(next[0], 'event.end')).toBe('2026-11-22T11:00:00.000Z');
    expect(d.flush()).toEqual([]);
  });

  it('a window with held-back hits is summarised once capture time passes its end by summaryDelaySec, whatever key moves the clock', () => {
    const d = detector({ summaryDelaySec: 600 });
    d.inspect(ev({ t: T0 }));
    d.inspect(ev({ t: T0 + 1000 }));
    expect(d.inspect(ev({ t: T0 + 3600_000 + 599_000, src: '10.95.9.9' })).filter(isSummary)).toEqual([]);
    const due = d.inspect(ev({ t: T0 + 3600_000 + 600_000, src: '10.95.9.8' }));
    expect(due.filter(isSummary).map(suppressed)).toEqual([1]);
    expect(d.flush()).toEqual([]);
  });

  it('bounded state: the least recently hit key is evicted and counted, its held-back hits reported at once', () => {
    const d = detector({ maxKeys: 2 });
    const evs = ['1', '1', '2', '2', '3', '3', '1'].map((x) => ev({ src: `10.95.3.${x}` }));
    const out = feed(d, evs);
    expect(d.stats.thresholdEvictions).toBeGreaterThan(0);
    expect(d.tracked.thresholdKeys).toBe(0);
    // every hit is an alert or counted in a summary
    const alerts = out.filter((a) => !isSummary(a)).length;
    expect(alerts + out.filter(isSummary).reduce((s, a) => s + suppressed(a), 0)).toBe(evs.length);
    // 10.95.3.1 was evicted (with its summary) before its third hit, which alerts again
    expect(out.filter((a) => !isSummary(a) && get(a, 'source.ip') === '10.95.3.1').length).toBe(2);
  });

  it('the same events give the same alerts and ids', () => {
    const mk = () => Array.from({ length: 20 }, (_, i) => ({ t: T0 + i * 400_000, src: `10.95.4.${i % 3}` }));
    n = 1000;
    const a = feed(detector(), mk().map((o) => ev(o)));
    n = 1000;
    const b = feed(detector(), mk().map((o) => ev(o)));
    expect(a).toEqual(b);
    expect(new Set(a.map((x) => x.event.id)).size).toBe(a.length);
  });
});

describe('detect settings (limits file detect section, run config)', () => {
  it('accepts thresholds, per-rule settings and disabled rules', () => {
    const l = parseLimits(
      {
        detect: {
          alerts: 'threshold',
          threshold: { type: 'both', track: 'source', count: 2, seconds: 60 },
          rules: { 'tls.missing_sni': { track: 'destination' } },
          maxThresholdKeys: 10,
          summaryDelaySec: 0,
          disabled: ['http.dga_host'],
        },
      },
      'x.json',
    );
    const o = detectOption(l.detect, {});
    expect(o).toMatchObject({
      disabled: ['http.dga_host'],
      threshold: { enabled: true, default: { type: 'both', track: 'source', count: 2, seconds: 60 }, rules: { 'tls.missing_sni': { track: 'destination' } }, maxKeys: 10, summaryDelaySec: 0 },
    });
    expect(detectOption(l.detect, { alerts: 'all' })).toMatchObject({ threshold: { enabled: false } });
    expect(detectOption(l.detect, { noDetect: true })).toBe(false);
    expect(detectOption(undefined, {})).toMatchObject({ threshold: { enabled: true, default: { type: 'limit', track: 'pair', count: 1, seconds: 3600 } } });
  });

  it('run takes the same settings: config file limits, --alerts, --no-detect, environment', () => {
    const dir = mkdtempSync(join(tmpdir(), 'h15-cfg-'));
    const cfg = join(dir, 'run.json');
    writeFileSync(cfg, JSON.stringify({ limits: { detect: { threshold: { track: 'asset', count: 2 } } } }));
    const base = { brokers: '127.0.0.1:1', stdout: true };
    expect(resolveRunConfig(base, {}, cfg).engine.detect).toMatchObject({ threshold: { enabled: true, default: { type: 'limit', track: 'asset', count: 2, seconds: 3600 } } });
    expect(resolveRunConfig({ ...base, alerts: 'all' }, {}, cfg).engine.detect).toMatchObject({ threshold: { enabled: false } });
    expect(resolveRunConfig(base, { TLSDECRYPT_NO_DETECT: 'true' }, cfg).engine.detect).toBe(false);
    expect(() => resolveRunConfig({ ...base, alerts: 'some' }, {})).toThrow(/alerts/);
    writeFileSync(cfg, JSON.stringify({ limits: { detect: { rules: { 'no.such': {} } } } }));
    expect(() => resolveRunConfig(base, {}, cfg)).toThrow(/unknown rule 'detect.rules.no.such'/);
  });

  it.each([
    [{ detect: { threshhold: {} } }, "unknown limit 'detect.threshhold'"],
    [{ detect: { threshold: { type: 'rate' } } }, 'detect.threshold.type'],
    [{ detect: { threshold: { track: 'by_src' } } }, 'detect.threshold.track'],
    [{ detect: { threshold: { count: 0 } } }, 'detect.threshold.count'],
    [{ detect: { threshold: { seconds: '3600' } } }, 'detect.threshold.seconds'],
    [{ detect: { threshold: { window: 60 } } }, "unknown key 'detect.threshold.window'"],
    [{ detect: { rules: { 'tls.no_such_rule': {} } } }, "unknown rule 'detect.rules.tls.no_such_rule'"],
    [{ detect: { alerts: 'some' } }, 'detect.alerts'],
    [{ detect: { disabled: ['nope'] } }, "unknown rule 'nope'"],
    [{ detect: [] }, "'detect' must be an object"],
  ])('rejects %j', (obj, msg) => {
    expect(() => parseLimits(obj, 'x.json')).toThrow(LimitsError);
    expect(() => parseLimits(obj, 'x.json')).toThrow(msg);
  });
});

describe('determinism on captures', () => {
  const NOSNI = 'fixtures/https/tls13-nosni-http11';
  const WEB = 'fixtures/detect/web-attacks';
  const SCAN = 'fixtures/detect/scanner-ua';

  function engineRun(capture: string, keylogs: string[], chunk: number): string[] {
    const out: string[] = [];
    const engine = new Engine((e) => out.push(JSON.stringify(e)), loadKeys(keylogs, []), {});
    const reader = new CaptureReader(engine);
    const data = readFileSync(capture);
    for (let o = 0; o < data.length; o += chunk) reader.push(data.subarray(o, o + chunk));
    reader.end();
    engine.finish();
    return out;
  }

  it('the same events in the same order whatever the batch split', () => {
    const keys = [`${WEB}/keys.log`];
    const whole = engineRun(`${WEB}/capture.pcap`, keys, 1 << 20);
    expect(whole.some((l) => l.includes('"summary":true'))).toBe(true);
    for (const chunk of [97, 1500, 16384]) expect(engineRun(`${WEB}/capture.pcap`, keys, chunk)).toEqual(whole);
  });

  it('replay --workers 3 gives the same events as one engine (thresholding keys stay within a host pair)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'h15-thr-'));
    const merged = join(dir, 'merged.pcap');
    const m = spawnSync('mergecap', ['-F', 'pcap', '-w', merged, `${NOSNI}/capture.pcap`, `${WEB}/capture.pcap`, `${SCAN}/capture.pcap`]);
    expect(m.status, m.stderr?.toString()).toBe(0);
    const args = ['dist/src/cli.js', 'replay', merged, '--keylog', `${NOSNI}/keys.log`, '--keylog', `${WEB}/keys.log`, '--keylog', `${SCAN}/keys.log`, '-q'];
    const lines = (extra: string[]) => {
      const r = spawnSync(process.execPath, [...args, ...extra], { encoding: 'utf8', timeout: 120_000 });
      expect(r.status, r.stderr).toBe(0);
      return r.stdout.trim().split('\n').sort();
    };
    const one = lines([]);
    expect(one.filter((l) => l.includes('"summary":true')).length).toBeGreaterThanOrEqual(3);
    expect(lines(['--workers', '3'])).toEqual(one);
    // --alerts all: more alerts, no summaries; --no-detect: no alerts at all, the same other events
    const all = lines(['--alerts', 'all']);
    expect(all.some((l) => l.includes('"summary":true'))).toBe(false);
    expect(all.filter((l) => l.includes('"kind":"alert"')).length).toBeGreaterThan(one.filter((l) => l.includes('"kind":"alert"') && !l.includes('"summary":true')).length);
    const none = lines(['--no-detect']);
    expect(none).toEqual(one.filter((l) => !l.includes('"kind":"alert"')));
  });
});
