/**
 * End-to-end: every fixtures/ftp capture (real vsftpd/curl traffic, see
 * scripts/fixtures/make-mail-ftp.sh) through the pipeline with the ProtocolDispatcher, compared
 * with expected.json: commands, arguments and reply codes from curl's own transcript (-v), data
 * sizes and SHA-256 from the files curl saved (tshark cannot decrypt these FTPS sessions).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { get, runCapture } from '../dispatch/harness.js';

const ROOT = join(import.meta.dirname, '../../fixtures/ftp');
const dirs = existsSync(ROOT) ? readdirSync(ROOT).filter((d) => existsSync(join(ROOT, d, 'expected.json'))) : [];
const TRANSFER = new Set(['LIST', 'NLST', 'MLSD', 'RETR', 'STOR', 'APPE']);

describe.each(dirs)('fixture ftp/%s', (name) => {
  const dir = join(ROOT, name);
  let meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
  // derived variants (impaired, orphan) describe the capture they were made from
  if (meta.derived_from) meta = { ...JSON.parse(readFileSync(join(ROOT, meta.derived_from, 'meta.json'), 'utf8')), ...meta };
  const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8'));
  const run = runCapture(join(dir, 'capture.pcap'), join(dir, 'keys.log'));
  const ftp = run.events.filter((e) => e.event.dataset === 'ftp');
  const commands = ftp
    .filter((e) => get(e, 'ftp.request.command') !== undefined)
    .sort((a, b) => (get(a, 'ftp.command_index') as number) - (get(b, 'ftp.command_index') as number));

  it('reports every command with its final reply and every transfer with its data', () => {
    const got = commands.map((e) => {
      const cmd = get(e, 'ftp.request.command') as string;
      const o: Record<string, unknown> = { command: cmd, arg: get(e, 'ftp.request.arg') ?? null, code: get(e, 'ftp.response.code') ?? null };
      if (TRANSFER.has(cmd)) {
        o.data_bytes = get(e, 'ftp.data.bytes');
        o.sha256 = get(e, 'ftp.data.sha256');
        o.file_name = get(e, 'file.name') ?? null;
      }
      return o;
    });
    // curl -v does not print the QUIT it sends when it closes the connection at exit (curl 7.88
    // ftp_disconnect runs without verbose output): accept exactly that one extra, answered 221
    const last = got[got.length - 1];
    if (last?.command === 'QUIT' && expected.ftp[expected.ftp.length - 1]?.command !== 'QUIT') {
      expect(last.code).toBe(221);
      got.pop();
    }
    expect(got).toEqual(expected.ftp);
  });

  it('hashes files, marks decrypted data channels and tags decrypted events', () => {
    // commands before AUTH (lftp sends FEAT first) travel in clear text
    const authAt = commands.findIndex((x) => get(x, 'ftp.request.command') === 'AUTH');
    for (const [i, e] of commands.entries()) {
      const cmd = get(e, 'ftp.request.command');
      const fileName = get(e, 'file.name') as string | undefined;
      // bad-input fixtures: a transfer cut mid-way (a prefix, not the file) or whose TLS is garbage
      const incomplete = fileName !== undefined && (expected.incomplete ?? []).includes(fileName);
      const undecryptable = fileName !== undefined && (expected.undecryptable ?? []).includes(fileName);
      if (incomplete || undecryptable) {
        expect(get(e, 'file.size')).toBeUndefined();
        expect(get(e, 'file.hash')).toBeUndefined();
        if (incomplete) expect(get(e, 'ftp.data.truncated')).toBe(true);
      } else if (cmd === 'RETR' || cmd === 'STOR') {
        expect(get(e, 'file.hash.sha256')).toBe(get(e, 'ftp.data.sha256'));
        expect(get(e, 'file.size')).toBe(get(e, 'ftp.data.bytes'));
      }
      if (TRANSFER.has(cmd as string)) {
        expect(get(e, 'ftp.data.tls')).toBe(meta.data_protection === 'P');
        expect(get(e, 'ftp.data.decrypted')).toBe(meta.data_protection === 'P' && !undecryptable);
        expect(get(e, 'ftp.data.transfer')).toBe(cmd === 'STOR' || cmd === 'APPE' ? 'upload' : 'download');
      }
      const afterAuth = meta.implicit_tls || (meta.data_protection !== 'none' && authAt >= 0 && i > authAt);
      expect(e.tags ?? []).toEqual(afterAuth ? ['Decryption Detection'] : []);
    }
    const sessions = run.events.filter((x) => x.event.dataset === 'tls.session');
    if (expected.tls_sessions) {
      const by: Record<string, number> = {};
      for (const s of sessions) by[get(s, 'decryption.status') as string] = (by[get(s, 'decryption.status') as string] ?? 0) + 1;
      expect(by).toEqual(expected.tls_sessions);
    } else for (const s of sessions) expect(get(s, 'decryption.status')).toBe('decrypted');
  });

  // bad input (meta.bad_input, made by scripts/fixtures/mailftp-badinput.py): counted, exit 0
  it.runIf(meta.bad_input === true)('counts the damage under its anomaly codes and nothing else; the CLI exits 0', () => {
    const codes = Object.keys(run.anomalies);
    if (expected.anomalies) {
      for (const [code, n] of Object.entries(expected.anomalies)) expect(run.anomalies[code] ?? 0, code).toBe(n);
      if (!expected.anomalies_only) expect(codes.sort()).toEqual(Object.keys(expected.anomalies).sort());
    }
    if (expected.anomalies_only) {
      expect(codes.length).toBeGreaterThan(0);
      for (const c of codes) expect((expected.anomalies_only as string[]).some((p) => c.startsWith(p)), c).toBe(true);
    }
    const r = spawnSync(process.execPath, ['dist/src/cli.js', 'replay', join(dir, 'capture.pcap'), '--keylog', join(dir, 'keys.log')], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.filter((e) => e.event.dataset === 'ftp').length).toBe(ftp.length);
    if (codes.length) expect(r.stderr).toMatch(new RegExp(`${codes[0]} \\d+`));
  });

  it('reports data connections without a control session as orphans, never guessed', () => {
    const orphans = ftp.filter((e) => get(e, 'ftp.data.orphan') === true);
    expect(orphans.length).toBe(expected.orphans ?? 0);
    if (meta.orphan) expect(commands).toEqual([]);
    for (const o of orphans) {
      expect(get(o, 'ftp.data.reason')).toBe('control_session_not_seen');
      expect(get(o, 'ftp.data.sha256')).toMatch(/^[0-9a-f]{64}$/);
    }
  });

  it('never reports the password', () => {
    for (const e of commands.filter((x) => get(x, 'ftp.request.command') === 'PASS')) expect(get(e, 'ftp.request.arg')).toBe('<redacted>');
    // the password curl sent in ftp-authtls-refused (clear text after AUTH was refused)
    expect(JSON.stringify(run.events)).not.toContain('guest-secret');
    if (meta.auth_tls_refused) {
      const auth = commands.filter((x) => get(x, 'ftp.request.command') === 'AUTH');
      expect(auth.length).toBeGreaterThan(0);
      for (const a of auth) expect(get(a, 'ftp.response.code') as number).toBeGreaterThanOrEqual(500);
      expect(commands.some((x) => get(x, 'ftp.request.command') === 'PASS')).toBe(true);
      expect(run.events.filter((x) => x.event.dataset === 'tls.session')).toEqual([]);
    }
  });
});
