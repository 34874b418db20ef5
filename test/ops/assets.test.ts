import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AssetPolicy, AssetTracker, compileRules, globToRegExp, SessionObservationBuffer, watchAssetsConfig, type SessionObservation } from '../../src/ops/assets.js';
import { OpsMetrics } from '../../src/ops/metrics.js';
import { Logger } from '../../src/ops/log.js';

const quiet = new Logger({ write: () => {} });
const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-assets-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('AssetPolicy', () => {
  const p = new AssetPolicy([
    { name: 'payroll', server: '10.1.2.3', enabled: false },
    { name: 'intranet', server: ['10.0.0.0/8', 'fd00::/8'], port: [443, 8443], sni: ['*.corp.example', 'corp.example'] },
    { name: 'dmz', sensor: 'dmz-1', enabled: false },
  ]);

  it('matches IPv4/IPv6 CIDRs, ports, SNI globs and sensors; first match wins', () => {
    expect(p.match('10.1.2.3', 443, 'x.corp.example')?.name).toBe('payroll');
    expect(p.isDecryptionEnabled('10.1.2.3', 443, 'x.corp.example')).toBe(false);
    expect(p.match('10.9.9.9', 443, 'WWW.Corp.Example')?.name).toBe('intranet');
    expect(p.match('fd00::1', 8443, 'corp.example')?.name).toBe('intranet');
    expect(p.match('fe80::1', 8443, 'corp.example')).toBeUndefined();
    expect(p.match('10.9.9.9', 80, 'a.corp.example')).toBeUndefined(); // port
    expect(p.match('10.9.9.9', 443, 'evil-corp.example')).toBeUndefined(); // glob anchored
    expect(p.match('10.9.9.9', 443, undefined)).toBeUndefined(); // an sni rule needs an SNI
    expect(p.match('192.0.2.1', 443, undefined, 'dmz-1')?.name).toBe('dmz');
    expect(p.isDecryptionEnabled('192.0.2.1', 443, undefined, 'dmz-1')).toBe(false);
    expect(p.isDecryptionEnabled('192.0.2.1', 443)).toBe(true); // default
    expect(new AssetPolicy([], false).isDecryptionEnabled('192.0.2.1', 443)).toBe(false);
  });

  it('rejects bad rules with one-line messages naming the rule and field', () => {
    expect(() => compileRules([{ server: '10.0.0.0/33' }])).toThrow("assets[0].server: '10.0.0.0/33' has an invalid prefix length");
    expect(() => compileRules([{ server: 'example.com' }])).toThrow("assets[0].server: 'example.com' is not an IP address or CIDR");
    expect(() => compileRules([{}, { port: 70000 }])).toThrow('assets[1].port');
    expect(() => compileRules([{ enabled: 'yes' }])).toThrow('assets[0].enabled: must be true or false');
    expect(() => compileRules([{ sever: '1.2.3.4' }])).toThrow("assets[0]: unknown field 'sever'");
    expect(() => compileRules([{ name: 'a' }, { name: 'a' }])).toThrow('names must be unique');
    expect(() => compileRules({})).toThrow('must be an array');
  });

  it('globs: * any run of characters, ? one, case-insensitive, everything else literal', () => {
    expect(globToRegExp('*.example.com').test('a.b.example.com')).toBe(true);
    expect(globToRegExp('api?.example.com').test('api1.example.com')).toBe(true);
    expect(globToRegExp('a.b').test('axb')).toBe(false);
  });
});

describe('AssetTracker status', () => {
  function setup(rules = [{ name: 'web', server: '10.0.0.10', port: 443 }, { name: 'off', server: '10.0.0.20', enabled: false }]) {
    const clock = { t: Date.UTC(2026, 10, 22, 0, 0, 0) };
    const gate = { paused: false, reason: undefined as string | undefined };
    const metrics = new OpsMetrics({ defaultMetrics: false });
    const tr = new AssetTracker({ rules, now: () => clock.t, gate, metrics, log: quiet, agentAbnormalAfterMs: 10 * 60_000, activeWindowMs: 15 * 60_000 });
    const obs = (status: string, ip = '10.0.0.10', extra: Partial<SessionObservation> = {}) => tr.observe({ serverIp: ip, serverPort: 443, status, decryptedBytes: status === 'decrypted' ? 1000 : 0, ts: clock.t / 1000 - 5, ...extra });
    return { clock, gate, metrics, tr, obs };
  }

  it('goes Enabled (idle) -> Enabling -> Agent abnormal -> Enabled (decrypting) -> Decryption failing -> Enabled', () => {
    const { clock, tr, obs } = setup();
    expect(tr.get('web')).toMatchObject({ status: 'enabled', decrypting: false, reason: 'decryption enabled; no TLS session seen yet' });
    obs('no_key');
    expect(tr.get('web')).toMatchObject({ status: 'enabling', statusLabel: 'Enabling', reason: expect.stringContaining('waiting for secrets') });
    clock.t += 9 * 60_000;
    obs('no_key');
    expect(tr.get('web')!.status).toBe('enabling');
    clock.t += 60_000;
    expect(tr.get('web')).toMatchObject({ status: 'agent_abnormal', statusLabel: 'Agent abnormal', reason: expect.stringContaining('TLS sessions for 10 min but no secrets') });
    obs('decrypted');
    expect(tr.get('web')).toMatchObject({ status: 'enabled', decrypting: true, decryptedBytes: 1000, reason: expect.stringMatching(/^decrypting: 1 sessions decrypted/) });
    expect(tr.decryptingCount()).toBe(1);
    obs('integrity_failure');
    obs('unsupported_cipher', '10.0.0.10', { cipher: 'TLS_SM4_GCM_SM3' });
    expect(tr.get('web')).toMatchObject({ status: 'decryption_failing', statusLabel: 'Decryption failing', reason: '1 integrity failure (key material does not match the traffic) and 1 session with an unsupported cipher suite (TLS_SM4_GCM_SM3) since the last successful decryption' });
    obs('partial');
    expect(tr.get('web')!.status).toBe('enabled');
    // Secrets stop: sessions without keys for the configured time -> agent abnormal, even after decrypting.
    obs('no_key');
    clock.t += 10 * 60_000;
    expect(tr.get('web')).toMatchObject({ status: 'agent_abnormal', reason: expect.stringContaining('last secrets 10 min ago') });
    // Decrypting stops counting after the active window.
    obs('decrypted');
    clock.t += 16 * 60_000;
    expect(tr.get('web')).toMatchObject({ status: 'enabled', decrypting: false });
    expect(tr.decryptingCount()).toBe(0);
  });

  it('Disabled by policy, Automatically disabled while the governor pauses', () => {
    const { gate, tr, obs } = setup();
    obs('decrypted');
    expect(tr.get('off')).toMatchObject({ status: 'disabled', statusLabel: 'Disabled', reason: "decryption disabled by the asset policy (rule 2 'off')" });
    gate.paused = true;
    gate.reason = 'CPU 90% of one core over 30 s exceeds the 60% budget';
    expect(tr.get('web')).toMatchObject({ status: 'auto_disabled', statusLabel: 'Automatically disabled', decrypting: false, reason: 'decryption paused by the resource governor: CPU 90% of one core over 30 s exceeds the 60% budget' });
    expect(tr.get('off')!.status).toBe('disabled');
    gate.paused = false;
    expect(tr.get('web')!.status).toBe('enabled');
  });

  it('discovers unconfigured servers, bounded, and counts them in assets_decrypting', async () => {
    const { tr, obs, metrics, clock } = setup();
    obs('decrypted', '192.0.2.7');
    clock.t += 1;
    obs('decrypted', '2001:db8::1');
    const list = tr.list();
    expect(list.map((a) => a.name)).toEqual(['web', 'off', '[2001:db8::1]:443', '192.0.2.7:443']);
    expect(list[3]).toMatchObject({ configured: false, enabled: true, status: 'enabled', decrypting: true });
    tr.updateMetrics();
    expect(await metrics.value(metrics.assetsDecrypting)).toBe(2);
    let t = 1_000_000;
    const small = new AssetTracker({ maxDiscovered: 2, log: quiet, now: () => (t += 1000) });
    for (const ip of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) small.observe({ serverIp: ip, serverPort: 443, status: 'decrypted' });
    expect(small.list().map((a) => a.name)).toEqual(['192.0.2.3:443', '192.0.2.2:443']);
  });

  it('exports tlsdecrypt_asset_status{asset,status} for configured assets and drops removed ones', async () => {
    const { tr, metrics, obs } = setup();
    obs('no_key');
    tr.updateMetrics();
    let text = await metrics.text();
    expect(text).toContain('tlsdecrypt_asset_status{asset="web",status="enabling"} 1');
    expect(text).toContain('tlsdecrypt_asset_status{asset="web",status="enabled"} 0');
    expect(text).toContain('tlsdecrypt_asset_status{asset="off",status="disabled"} 1');
    expect(tr.reload({ assets: [{ name: 'web', server: '10.0.0.10', port: 443 }] }).ok).toBe(true);
    text = await metrics.text();
    expect(text).not.toContain('asset="off"');
    expect(text).toContain('tlsdecrypt_asset_status{asset="web",status="enabling"} 1'); // state kept across reloads
    expect(text).toContain('tlsdecrypt_config_reloads_total{result="ok"} 1');
  });

  it('aggregated observations from workers give the same statuses', () => {
    const { tr } = setup();
    const buf = new SessionObservationBuffer();
    buf.add({ serverIp: '10.0.0.10', serverPort: 443, status: 'decrypted', decryptedBytes: 10 });
    buf.add({ serverIp: '10.0.0.10', serverPort: 443, status: 'decrypted', decryptedBytes: 20 });
    buf.add({ serverIp: '10.0.0.10', serverPort: 443, status: 'no_key' });
    const sums = structuredClone(buf.take());
    expect(buf.size).toBe(0);
    for (const s of sums) tr.observeSummary(s);
    expect(tr.get('web')).toMatchObject({ status: 'enabled', decrypting: true, sessions: 3, decryptedBytes: 30, sessionsByStatus: { decrypted: 2, no_key: 1 } });
  });

  it('reload keeps the previous policy on errors; file watch and SIGHUP re-read the config', async () => {
    const { tr } = setup();
    const bad = tr.reload({ assets: [{ server: 'nope' }] });
    expect(bad).toMatchObject({ ok: false, error: expect.stringContaining("assets[0].server: 'nope'") });
    expect(tr.isDecryptionEnabled('10.0.0.20', 443)).toBe(false);
    expect(tr.toJSON()).toMatchObject({ lastReload: { ok: false } });

    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ brokers: 'x:1', assets: [{ name: 'off', server: '10.0.0.20', enabled: true }] }));
    const policies: number[] = [];
    tr.onReload((p) => policies.push(p.assets.length));
    const stop = watchAssetsConfig(file, tr, { intervalMs: 50 });
    try {
      process.emit('SIGHUP', 'SIGHUP');
      expect(tr.isDecryptionEnabled('10.0.0.20', 443)).toBe(true);
      // Edit the file: the watcher picks it up without a signal.
      writeFileSync(file, JSON.stringify({ assets: [{ name: 'off', server: '10.0.0.20', enabled: false }, { name: 'new', sni: '*.example' }] }));
      await expect.poll(() => tr.isDecryptionEnabled('10.0.0.20', 443), { timeout: 10_000, interval: 50 }).toBe(false);
      expect(tr.list().filter((a) => a.configured).map((a) => a.name)).toEqual(['off', 'new']);
      writeFileSync(file, '{ not json');
      process.emit('SIGHUP', 'SIGHUP');
      expect(tr.lastReload).toMatchObject({ ok: false, error: expect.stringContaining('not valid JSON') });
      expect(tr.isDecryptionEnabled('10.0.0.20', 443)).toBe(false);
      expect(policies[0]).toBe(1);
    } finally {
      stop();
    }
  });
});
