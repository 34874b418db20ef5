/**
 * Text from the wire in event fields: one rule, applied by the event builder to every string of
 * every event (and by the line protocols to the text they show in messages).
 *
 * Control characters are replaced by U+FFFD: C0 (U+0000-U+001F) except TAB, DEL (U+007F), C1
 * (U+0080-U+009F, e.g. a Latin-1 byte 0x85 that decodes to NEL) and the Unicode line and
 * paragraph separators U+2028/U+2029. JSON would carry them, but consumers split on them:
 * Python's str.splitlines() breaks a line at U+0085, U+2028, U+2029, VT, FF and FS/GS/RS, and
 * terminals act on escape sequences. Multi-line fields (captured bodies, `*.body.content`) keep
 * LF and CR as well. Everything else, including other non-ASCII text, is kept as decoded.
 */

const SINGLE_LINE = /[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]/;
const SINGLE_LINE_ALL = new RegExp(SINGLE_LINE.source, 'g');
const MULTI_LINE = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]/;
const MULTI_LINE_ALL = new RegExp(MULTI_LINE.source, 'g');

/** Fields whose value is multi-line text (line breaks kept). */
const MULTI_LINE_KEYS: ReadonlySet<string> = new Set(['content']);

export const REPLACEMENT = '\uFFFD';

/** `s` with control characters replaced (see the module comment). Returns `s` itself when clean. */
export function wireText(s: string, multiline = false): string {
  if (multiline) return MULTI_LINE.test(s) ? s.replace(MULTI_LINE_ALL, REPLACEMENT) : s;
  return SINGLE_LINE.test(s) ? s.replace(SINGLE_LINE_ALL, REPLACEMENT) : s;
}

/** Applies wireText to every string in an event's fields, in place (arrays and objects walked). */
export function cleanWireStrings(o: Record<string, unknown> | unknown[], multiline = false): void {
  if (Array.isArray(o)) {
    for (let i = 0; i < o.length; i++) {
      const v = o[i];
      if (typeof v === 'string') o[i] = wireText(v, multiline);
      else if (v !== null && typeof v === 'object' && !Buffer.isBuffer(v)) cleanWireStrings(v as Record<string, unknown>, multiline);
    }
    return;
  }
  // for-in, not Object.keys: no key array per object (event fields are plain objects: own keys only)
  for (const k in o) {
    const v = o[k];
    if (typeof v === 'string') {
      const c = wireText(v, multiline || MULTI_LINE_KEYS.has(k));
      if (c !== v) o[k] = c;
    } else if (v !== null && typeof v === 'object' && !Buffer.isBuffer(v)) {
      cleanWireStrings(v as Record<string, unknown>, multiline || MULTI_LINE_KEYS.has(k));
    }
  }
}
