// The client address as filters see it: an IPv4 client reached over an IPv6 socket
// ("::ffff:192.0.2.1") is the IPv4 address it is, and IPv6 addresses can be expanded to their
// eight groups (for /64 networks and reverse-nibble DNS names).

/** "::ffff:192.0.2.1" becomes "192.0.2.1"; everything else is returned as it is. */
export function plainAddress(address: string): string {
  return address.replace(/^::ffff:(?=\d+\.)/i, "");
}

/** The eight 16-bit groups of an IPv6 address, as written (no leading zeros added). */
export function ipv6Groups(address: string): string[] {
  const [head = "", tail = ""] = address.includes("::") ? address.split("::") : [address, ""];
  const headGroups = head.split(":").filter(Boolean);
  const tailGroups = tail.split(":").filter(Boolean);
  return [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill("0"), ...tailGroups];
}
