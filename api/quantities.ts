// Parsers for the human-written quantities in RelayDomain specs: durations ("90s", "1h30m", "5d")
// and byte sizes (Kubernetes quantities such as "25Mi", or a plain number of bytes).

const durationUnits: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const durationPattern = /^(?:\d+(?:ms|s|m|h|d))+$/;

/** Milliseconds in a duration such as "5d", "1h30m" or "250ms"; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  if (!durationPattern.test(text)) return undefined;
  let total = 0;
  for (const match of text.matchAll(/(\d+)(ms|s|m|h|d)/g)) {
    total += Number(match[1]) * (durationUnits[match[2] as string] as number);
  }
  return total;
}

const sizeUnits: Record<string, number> = {
  "": 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
};

/** Bytes in a size such as 52428800, "50Mi" or "20M"; undefined when malformed. */
export function parseByteSize(value: number | string): number | undefined {
  if (typeof value === "number") return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  const match = /^(\d+)(k|M|G|Ki|Mi|Gi)?$/.exec(value);
  if (!match) return undefined;
  return Number(match[1]) * (sizeUnits[match[2] ?? ""] as number);
}
