// Error codes shared by the framed, json and line protocols. Codes 1-8 are the framed
// protocol's wire codes (the u16 in an ERROR frame). Codes 9-11 only occur in the json
// protocol, which names errors by string; they get numbers so that one counter array
// covers all protocols. `registerErrors` registers them (and the close reasons they
// cause) with a ProtocolStats, which indexes its error counters by code.

import type { ProtocolStats } from "../../stats/protocol-stats.ts";

export const ErrorCode = {
  UNKNOWN_TYPE: 1,
  BAD_BODY: 2,
  NO_SUCH_CLIENT: 3,
  FRAME_TOO_LARGE: 4,
  RATE_LIMITED: 5,
  UNAUTHORIZED: 6,
  SERVER_FULL: 7,
  SHUTTING_DOWN: 8,
  INVALID_JSON: 9,
  INVALID_UTF8: 10,
  MISSING_TYPE: 11,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Machine-readable names: the json protocol's `"error"` field and the stats keys. */
export const ERROR_NAMES: readonly string[] = [
  "none",
  "unknown_type",
  "bad_body",
  "no_such_client",
  "frame_too_large",
  "rate_limited",
  "unauthorized",
  "server_full",
  "shutting_down",
  "invalid_json",
  "invalid_utf8",
  "missing_type",
];

/** Default human-readable messages (framed ERROR body text, json `"message"`, line `ERR` text). */
export const ERROR_MESSAGES: readonly string[] = [
  "",
  "unknown message type",
  "body shape wrong for its type",
  "no such client",
  "frame too large",
  "rate limited",
  "unauthorized",
  "server full",
  "shutting down",
  "invalid JSON",
  "invalid UTF-8",
  "missing type field",
];

export function errorName(code: number): string {
  return ERROR_NAMES[code] ?? `error_${code}`;
}

/** Inverse of ERROR_NAMES, for clients that receive json errors. 0 when unknown. */
export function errorCodeOf(name: string): number {
  const i = ERROR_NAMES.indexOf(name);
  return i > 0 ? i : 0;
}

/** The close reasons closeReasonFor adds to the reactor's own (transport) reasons. */
export const APPLICATION_CLOSE_REASONS = ["protocol", "unauthorized", "rate-limited"] as const;

/**
 * Register every ErrorCode with its name, and the application close reasons, with
 * `stats`. Registering again (a second context sharing the stats) is a no-op.
 */
export function registerErrors(stats: Pick<ProtocolStats, "registerError" | "registerCloseReason">): void {
  for (const code of Object.values(ErrorCode)) stats.registerError(code, ERROR_NAMES[code]!);
  for (const reason of APPLICATION_CLOSE_REASONS) stats.registerCloseReason(reason);
}

/** What a connection closed after error `code` is counted as (the reactor's close reasons). */
export function closeReasonFor(code: number): "unauthorized" | "rate-limited" | "server-full" | "shutdown" | "protocol" {
  switch (code) {
    case ErrorCode.UNAUTHORIZED: return "unauthorized";
    case ErrorCode.RATE_LIMITED: return "rate-limited";
    case ErrorCode.SERVER_FULL: return "server-full";
    case ErrorCode.SHUTTING_DOWN: return "shutdown";
    default: return "protocol";
  }
}
