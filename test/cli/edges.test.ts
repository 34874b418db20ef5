/**
 * Input edges on fixtures made with real software (scripts/fixtures/make-edges.sh):
 * - fixtures/ftp/ftp-control-chars: Python ftplib sent arguments with byte 0x85 (C1 NEL), an ESC
 *   sequence and U+2028 to vsftpd; the client's transcript (client.log) is the oracle of what was
 *   on the wire. Events carry U+FFFD in their place (README: control characters), and Python's
 *   str.splitlines() sees one line per event.
 * - fixtures/https/variant-body-gap: a download of a text file that is itself an HTTP transcript,
 *   with 4 segments inside the body lost: one exchange, no response invented from body bytes.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const CLI = 'dist/src/cli.js';

function replay(dir: string, keys = true) {
  const args = [CLI, 'replay', `${dir}/capture.pcap`, ...(keys ? ['--keylog', `${dir}/keys.log`] : [])];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 120_000 });
  expect(r.status).toBe(0);
  return { stdout: r.stdout, stderr: r.stderr, events: r.stdout.trim().split('\n').map((l) => JSON.parse(l)) };
}

describe('control characters from the wire (fixtures/ftp/ftp-control-chars)', () => {
  const dir = 'fixtures/ftp/ftp-control-chars';
  it('the capture carries the bytes the client says it sent', () => {
    const sent = readFileSync(`${dir}/client.log`, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('sent '))
      .map((l) => Buffer.from(l.split(' ')[1], 'hex'));
    expect(sent.map((b) => b.toString('latin1'))).toEqual(['CWD pub\x85dir', 'SIZE report\x1b[31m.txt', 'MDTM a\xe2\x80\xa8b.txt', 'SIZE tab\there.txt']);
    const pcap = readFileSync(`${dir}/capture.pcap`);
    for (const b of sent) expect(pcap.includes(b)).toBe(true);
  });

  it('events carry U+FFFD in place of C1, ESC and U+2028; TAB and other text stay', () => {
    const { events } = replay(dir, false);
    const args = events.filter((e) => e.ftp?.request?.arg !== undefined).map((e) => [e.ftp.request.command, e.ftp.request.arg]);
    expect(args).toEqual([
      ['USER', 'anonymous'],
      ['CWD', 'pub\uFFFDdir'],
      ['SIZE', 'report\uFFFD[31m.txt'],
      ['MDTM', 'a\uFFFDb.txt'],
      ['SIZE', 'tab\there.txt'],
    ]);
    expect(events.find((e) => e.ftp?.request?.command === 'CWD').ftp.response.code).toBe(550);
  });

  it("Python's str.splitlines() sees exactly one line per event", () => {
    const { stdout, events } = replay(dir, false);
    const r = spawnSync('python3', ['-c', 'import sys; print(len(sys.stdin.buffer.read().decode("utf-8").splitlines()))'], { input: stdout, encoding: 'utf8' });
    expect(Number(r.stdout.trim())).toBe(events.length);
  });
});

describe('capture loss inside a body that looks like HTTP (fixtures/https/variant-body-gap)', () => {
  it('the complete download is one exchange of the whole body', () => {
    const { events } = replay('fixtures/https/http11-transcript-body');
    const http = events.filter((e) => e.event.dataset === 'http');
    expect(http).toHaveLength(1);
    expect(http[0].http.response.body.bytes).toBe(120010);
  });

  it('with segments lost inside the body: still one exchange, no response without request', () => {
    const { events, stderr } = replay('fixtures/https/variant-body-gap');
    const http = events.filter((e) => e.event.dataset === 'http');
    expect(http.map((e) => [e.url?.path, e.http.response?.status_code])).toEqual([['/transcript.txt', 200]]);
    expect(stderr).not.toContain('http_response_without_request');
    expect(stderr).not.toContain('http_malformed');
    expect(stderr).toMatch(/tcp_capture_loss \d+/); // the loss is what gets reported
    expect(events.find((e) => e.event.dataset === 'tls.session').decryption.status).toBe('partial');
  });
});
