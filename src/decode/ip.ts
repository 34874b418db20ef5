/**
 * Text form of a raw IP address as Wireshark, Zeek and ECS print it: IPv4 dotted decimal; IPv6 in
 * the RFC 5952 canonical form (section 4: lower-case hex, no leading zeros, the longest run of two
 * or more zero groups — the first one on a tie — shortened to "::"), with the IPv4-mapped prefix
 * ::ffff:0:0/96 in mixed notation (section 5: "::ffff:192.0.2.1").
 * Other lengths (not an IP address) come out as plain hex rather than throwing.
 */
export function ipToString(addr: Uint8Array): string {
  if (addr.length === 4) return `${addr[0]}.${addr[1]}.${addr[2]}.${addr[3]}`;
  if (addr.length !== 16) return Buffer.from(addr.buffer, addr.byteOffset, addr.length).toString('hex');
  if (isV4Mapped(addr)) return `::ffff:${addr[12]}.${addr[13]}.${addr[14]}.${addr[15]}`;
  // Longest run of zero 16-bit groups (length >= 2; RFC 5952 section 4.2.2 forbids "::" for one).
  let bestStart = -1;
  let bestLen = 1;
  let runStart = -1;
  for (let g = 0; g <= 8; g++) {
    const zero = g < 8 && addr[2 * g] === 0 && addr[2 * g + 1] === 0;
    if (zero) {
      if (runStart < 0) runStart = g;
    } else if (runStart >= 0) {
      if (g - runStart > bestLen) {
        bestStart = runStart;
        bestLen = g - runStart;
      }
      runStart = -1;
    }
  }
  let s = '';
  for (let g = 0; g < 8; g++) {
    if (g === bestStart) {
      s += g === 0 ? '::' : ':';
      g += bestLen - 1;
      continue;
    }
    s += ((addr[2 * g] << 8) | addr[2 * g + 1]).toString(16);
    if (g < 7) s += ':';
  }
  return s;
}

function isV4Mapped(a: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (a[i] !== 0) return false;
  return a[10] === 0xff && a[11] === 0xff;
}
