// One structured JSON logger for the whole relay. Lines go to stdout so that container runtimes
// collect them; fields that identify a message (queueId) are always top-level keys.

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFields = Record<string, unknown>;

const levelRank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

function serialiseError(value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message };
  return value;
}

/**
 * A line writer that sends the lines of one event-loop turn in a single write. The relay logs two
 * lines per message (queued, delivered), and a write system call each was a measurable share of
 * its CPU under load (docs/benchmarks.md). Pending lines are written at exit; a kill -9 loses at
 * most the lines of the turn it interrupts.
 */
export function batchedLineWriter(out: { write(chunk: string): unknown } = process.stdout): (line: string) => void {
  let pending: string[] = [];
  const flush = (): void => {
    if (pending.length === 0) return;
    const text = pending.join("");
    pending = [];
    out.write(text);
  };
  process.once("exit", flush);
  return (line) => {
    if (pending.length === 0) setImmediate(flush);
    pending.push(`${line}\n`);
  };
}

let stdoutWriter: ((line: string) => void) | undefined;
const writeStdout = (line: string): void => (stdoutWriter ??= batchedLineWriter())(line);

export function createLogger(
  base: LogFields = {},
  minLevel: LogLevel = (process.env.MXWARDEN_LOG_LEVEL as LogLevel | undefined) ?? "info",
  write: (line: string) => void = writeStdout,
): Logger {
  const threshold = levelRank[minLevel] ?? levelRank.info;
  const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (levelRank[level] < threshold) return;
    const record: LogFields = { time: new Date().toISOString(), level, msg, ...base };
    for (const [key, value] of Object.entries(fields ?? {})) record[key] = serialiseError(value);
    write(JSON.stringify(record));
  };
  return {
    debug: (msg, fields) => emit("debug", msg, fields),
    info: (msg, fields) => emit("info", msg, fields),
    warn: (msg, fields) => emit("warn", msg, fields),
    error: (msg, fields) => emit("error", msg, fields),
    child: (fields) => createLogger({ ...base, ...fields }, minLevel, write),
  };
}
