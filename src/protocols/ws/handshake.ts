// The WebSocket opening handshake, server side (RFC 6455 §4.2): checks an Upgrade request and
// computes Sec-WebSocket-Accept. A refused request gets a status that says why (426 with
// Sec-WebSocket-Version: 13 for another version), never a hang.

import { createHash } from "node:crypto";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** base64(SHA-1(key + GUID)): the Sec-WebSocket-Accept of a Sec-WebSocket-Key. */
export function acceptKey(key: string): string {
  return createHash("sha1").update(key + GUID).digest("base64");
}

export interface UpgradeRequest {
  method: string;
  header(lowerName: string): string | null;
}

export type UpgradeCheck = { ok: true; key: string } | { ok: false; status: number; message: string; headers?: Record<string, string> };

/** Whether `req` is a valid WebSocket Upgrade (RFC 6455 §4.2.1), and if not the answer to give. */
export function checkUpgrade(req: UpgradeRequest): UpgradeCheck {
  if (req.method !== "GET") return { ok: false, status: 405, message: "a WebSocket handshake is a GET", headers: { allow: "GET" } };
  if (!hasToken(req.header("upgrade"), "websocket")) return { ok: false, status: 400, message: "Upgrade: websocket is missing" };
  if (!hasToken(req.header("connection"), "upgrade")) return { ok: false, status: 400, message: "Connection: Upgrade is missing" };
  const version = req.header("sec-websocket-version");
  if (version !== "13") {
    return { ok: false, status: 426, message: `WebSocket version ${version === null ? "missing" : JSON.stringify(version)}: only 13 is spoken`, headers: { "sec-websocket-version": "13" } };
  }
  const key = req.header("sec-websocket-key");
  if (key === null) return { ok: false, status: 400, message: "Sec-WebSocket-Key is missing" };
  // 16 random bytes, base64: 24 characters, the last two "==".
  if (!/^[A-Za-z0-9+/]{22}==$/.test(key.trim())) return { ok: false, status: 400, message: "Sec-WebSocket-Key is not 16 bytes in base64" };
  return { ok: true, key: key.trim() };
}

/** Whether a comma-separated header value has the token `lower` (any case). */
export function hasToken(value: string | null | undefined, lower: string): boolean {
  if (value === null || value === undefined) return false;
  for (const t of value.split(",")) if (t.trim().toLowerCase() === lower) return true;
  return false;
}

/**
 * permessage-deflate (RFC 7692) as bunpoll takes it: offered by the client, answered with
 * server_no_context_takeover and client_no_context_takeover, so every message is compressed
 * on its own (one-shot zlib calls, no per-connection compressor to keep: no memory per socket,
 * and a published message can be compressed once for every subscriber). Returns the response
 * header value, or null when the client made no acceptable offer.
 */
export function acceptDeflate(offers: string | null): string | null {
  if (offers === null) return null;
  for (const offer of offers.split(",")) {
    const [name, ...params] = offer.split(";").map((p) => p.trim());
    if (name !== "permessage-deflate") continue;
    let ok = true;
    for (const p of params) {
      const [k, v] = p.split("=").map((x) => x.trim());
      // A window smaller than 15 bits from the server cannot be honoured by one-shot zlib calls.
      if (k === "server_max_window_bits" && v !== undefined && v.replace(/"/g, "") !== "15") ok = false;
      else if (!["server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits", "client_max_window_bits"].includes(k!)) ok = false;
    }
    if (ok) return "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
  }
  return null;
}
