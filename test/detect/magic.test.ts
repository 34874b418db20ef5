/**
 * Downloads are recognised by their magic bytes (http.response.body.magic, after content
 * decoding), not only by a file name: update.exe in the downloads fixture is an ELF binary.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_THRESHOLD_OPTIONS } from '../../src/detect/index.js';
import { replayDetect } from './harness.js';

describe('executable downloads by magic bytes', () => {
  // every hit (--alerts all): by default the four downloads from one client alert once per hour
  const run = replayDetect('fixtures/detect/downloads/capture.pcap', ['fixtures/detect/downloads/keys.log'], { threshold: { ...DEFAULT_THRESHOLD_OPTIONS, enabled: false } });
  const byPath = (p: string) => run.alerts.find((a) => (a as Record<string, any>).url?.path === p) as Record<string, any> | undefined;

  it('names the real file type whatever the extension says', () => {
    expect(byPath('/files/update.exe')?.event.reason).toMatch(/^ELF executable/);
    expect(byPath('/files/setup.dll')?.event.reason).toMatch(/^PE\/DOS executable/);
    expect(byPath('/files/archive.zip')?.event.reason).toMatch(/^ZIP archive/);
    expect(byPath('/files/install.sh')?.event.reason).toMatch(/shebang/);
  });

  it('exposes the first 16 bytes on every response body and stays silent on the HTML page', () => {
    const html = run.events.find((e) => (e as Record<string, any>).url?.path === '/') as Record<string, any>;
    expect(html.http.response.body.magic).toBe(Buffer.from('<!DOCTYPE html><').toString('hex'));
    expect(byPath('/')).toBeUndefined();
  });
});
