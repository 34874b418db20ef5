/**
 * End-to-end: every fixtures/smtp capture (real aiosmtpd/curl/smtplib traffic, see
 * scripts/fixtures/make-mail-ftp.sh) through capture -> TCP -> ProtocolDispatcher -> TLS -> SMTP,
 * compared with expected.json (computed from the client's transcript and the sent messages by
 * Python's email package, not by tlsdecrypt).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { get, runCapture } from '../dispatch/harness.js';

const ROOT = join(import.meta.dirname, '../../fixtures/smtp');
const dirs = existsSync(ROOT) ? readdirSync(ROOT).filter((d) => existsSync(join(ROOT, d, 'expected.json'))) : [];

describe.each(dirs)('fixture smtp/%s', (name) => {
  const dir = join(ROOT, name);
  let meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
  if (meta.derived_from) meta = { ...JSON.parse(readFileSync(join(ROOT, meta.derived_from, 'meta.json'), 'utf8')), ...meta };
  const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8'));
  const run = runCapture(join(dir, 'capture.pcap'), join(dir, 'keys.log'));
  const smtp = run.events.filter((e) => e.event.dataset === 'smtp');
  const tlsExpected = meta.starttls === true || meta.implicit_tls === true;

  it('reports every mail transaction as the client sent it', () => {
    const got = smtp.map((e) => ({
      from: get(e, 'email.from.address'),
      to: get(e, 'email.to.address'),
      cc: get(e, 'email.cc.address') ?? [],
      subject: get(e, 'email.subject') ?? null,
      message_id: get(e, 'email.message_id') ?? null,
      attachments: ((get(e, 'email.attachments') as { file: { name: string } }[] | undefined) ?? []).map((a) => a.file.name),
    }));
    expect(got).toEqual(expected.smtp);
  });

  it('tags decrypted content and only that', () => {
    for (const e of smtp) {
      expect(e.tags ?? []).toEqual(tlsExpected ? ['Decryption Detection'] : []);
      expect(get(e, 'smtp.starttls')).toBe(meta.starttls === true);
      expect(get(e, 'smtp.response.code')).toBe(250);
    }
    const sessions = run.events.filter((e) => e.event.dataset === 'tls.session');
    expect(sessions.length).toBe(tlsExpected ? 1 : 0);
    for (const s of sessions) expect(get(s, 'decryption.status')).toBe('decrypted');
    if (meta.starttls_refused) for (const e of smtp) expect(get(e, 'smtp.starttls_refused_code')).toBe(454);
  });

  it('reports the AUTH user, never the password', () => {
    if (meta.auth_user) for (const e of smtp) expect(get(e, 'smtp.auth.user')).toBe(meta.auth_user);
    const all = JSON.stringify(run.events);
    expect(all).not.toContain('s3cret');
    expect(all).not.toContain('never-logged');
  });

  // bad input (meta.bad_input, made by scripts/fixtures/mailftp-badinput.py): counted, exit 0
  it.runIf(meta.bad_input === true)('counts the damage under its anomaly codes and nothing else; the CLI exits 0', () => {
    expect(run.anomalies).toEqual(expected.anomalies);
    const r = spawnSync(process.execPath, ['dist/src/cli.js', 'replay', join(dir, 'capture.pcap'), '--keylog', join(dir, 'keys.log')], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.filter((e) => e.event.dataset === 'smtp').length).toBe(smtp.length);
    for (const code of Object.keys(expected.anomalies)) expect(r.stderr).toMatch(new RegExp(`${code} \\d+`));
  });

  it('counts the message bytes the server received', () => {
    const server = join(dir, 'server.jsonl');
    if (!existsSync(server)) return;
    const recs = readFileSync(server, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(smtp.map((e) => get(e, 'smtp.message.bytes'))).toEqual(recs.map((r) => r.bytes));
  });
});
