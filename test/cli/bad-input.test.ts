/**
 * Damaged captures (fixtures/bad, made with editcap from a real fixture; fixtures/https/variant-*
 * made by impair.py) replay to exit 0: what cannot be used is counted in the summary's anomalies
 * and every connection still gets its tls.session event.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const CLI = 'dist/src/cli.js';

function replay(dir: string) {
  const r = spawnSync(process.execPath, [CLI, 'replay', `${dir}/capture.pcap`, '--keylog', `${dir}/keys.log`], { encoding: 'utf8', timeout: 120_000 });
  const events = r.stdout.trim() ? r.stdout.trim().split('\n').map((l) => JSON.parse(l)) : [];
  return { code: r.status, events, stderr: r.stderr };
}

describe('damaged captures', () => {
  it('editcap -E 0.02 (2% of all bytes corrupted) replays to exit 0 with anomalies counted', () => {
    const r = replay('fixtures/bad/editcap-e0.02');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/anomalies: \w+ \d+/);
    expect(r.events.filter((e) => e.event.dataset === 'tls.session').length).toBeGreaterThan(0);
  });

  it('a capture snapped to 200 bytes per frame replays to exit 0 and counts the snapped segments', () => {
    const r = replay('fixtures/bad/snaplen-200');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/tcp_snapped_segment \d+/);
    const sessions = r.events.filter((e) => e.event.dataset === 'tls.session');
    expect(sessions).toHaveLength(1);
    expect(sessions[0].decryption.status).not.toBe('decrypted');
  });

  it('a capture cut inside a record replays to exit 0 with the first exchange and a partial session', () => {
    const r = replay('fixtures/https/variant-truncated');
    expect(r.code).toBe(0);
    expect(r.events.filter((e) => e.event.dataset === 'http').length).toBeGreaterThanOrEqual(1);
    expect(r.events.find((e) => e.event.dataset === 'tls.session')?.decryption.status).toBe('partial');
  });

  it('bit errors inside records fail authentication for those records only', () => {
    const r = replay('fixtures/https/variant-corrupted');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/tls_decrypt_failed \d+/);
    expect(r.events.find((e) => e.event.dataset === 'tls.session')?.decryption.status).toBe('partial');
  });
});
