/**
 * SASL user-name extraction for SMTP AUTH (RFC 4954) and FTP AUTH-less logins. Only the
 * authentication identity is ever returned: passwords, tokens and digests are dropped here, at
 * the earliest point, so they cannot reach an event.
 */
import { wireText } from '../../events/text.js';

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Strict base64 decode (RFC 4954 Section 4: "=" alone is an empty initial response). */
export function decodeBase64Strict(s: string): Buffer | undefined {
  s = s.trim();
  if (s === '=') return Buffer.alloc(0);
  if (!B64.test(s) || s.length % 4 === 1) return undefined;
  return Buffer.from(s, 'base64');
}

/** Printable rendition of an identity (control characters replaced, bounded length). */
export function cleanIdentity(b: Buffer): string {
  let s = b.toString('utf8');
  if (s.includes('\uFFFD')) s = b.toString('latin1');
  return wireText(s).slice(0, 256);
}

/** RFC 4616 PLAIN: [authzid] NUL authcid NUL passwd -> authcid (authzid when authcid is empty). */
export function plainUser(msg: Buffer): string | undefined {
  const a = msg.indexOf(0);
  if (a < 0) return undefined;
  const b = msg.indexOf(0, a + 1);
  if (b < 0) return undefined;
  const authcid = msg.subarray(a + 1, b);
  const authzid = msg.subarray(0, a);
  return cleanIdentity(authcid.length ? authcid : authzid);
}

/** RFC 7628 OAUTHBEARER GS2 header `n,a=user,` and XOAUTH2 `user=...\x01auth=...`. */
export function oauthUser(msg: Buffer): string | undefined {
  const s = msg.toString('latin1');
  const x = /^user=([^\x01]*)\x01/.exec(s);
  if (x) return cleanIdentity(Buffer.from(x[1], 'latin1'));
  const o = /^[nyp][^,]*,a=([^,]*),/.exec(s);
  if (o) return cleanIdentity(Buffer.from(o[1].replace(/=2C/g, ',').replace(/=3D/g, '='), 'latin1'));
  return undefined;
}

/** RFC 2195 CRAM-MD5 response `user SP digest` -> user. */
export function cramUser(msg: Buffer): string | undefined {
  const sp = msg.lastIndexOf(0x20);
  return sp > 0 ? cleanIdentity(msg.subarray(0, sp)) : undefined;
}
