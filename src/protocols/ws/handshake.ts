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
 * How a socket compresses: a compressor per socket that keeps its window between messages
 * ("dedicated", or one of uWebSockets' sizes), or one per thread reset after every message
 * ("shared": no memory per socket, and a published message is compressed once for every
 * subscriber). Bun.serve's names.
 */
export type WebSocketCompressor = "disable" | "shared" | "dedicated" | "3KB" | "4KB" | "8KB" | "16KB" | "32KB" | "64KB" | "128KB" | "256KB";

export interface PerMessageDeflateOptions {
  /** How the server compresses what it sends (default "shared"; false: it sends uncompressed). */
  compress?: WebSocketCompressor | boolean;
  /**
   * How the server inflates what the client sends: "shared" (default) asks the client for
   * client_no_context_takeover, so one inflater per thread serves every socket; "dedicated"
   * lets the client keep its window (a 32 KiB inflater per socket, better compression).
   */
  decompress?: WebSocketCompressor | boolean;
}

/** What was agreed for one socket (RFC 7692 §7). */
export interface DeflateParams {
  /** The server keeps its window between messages (a deflater of the socket's own). */
  serverTakeover: boolean;
  /** The client keeps its window: the server inflates with an inflater of the socket's own. */
  clientTakeover: boolean;
  /** The server's LZ77 window, 9..15 bits. */
  serverWindowBits: number;
  /** zlib's memLevel for a dedicated deflater. */
  memLevel: number;
  /** The server sends compressed messages at all (compress not disabled). */
  compress: boolean;
}

/** uWebSockets' dedicated compressor sizes: [windowBits, memLevel] (zlib: 2^(w+2) + 2^(m+9) bytes). */
const SIZES: Record<string, [number, number]> = {
  dedicated: [15, 8], "256KB": [15, 8], "128KB": [14, 7], "64KB": [13, 6], "32KB": [12, 5],
  "16KB": [11, 4], "8KB": [10, 3], "4KB": [9, 2], "3KB": [9, 1],
};

/** The server's side of the negotiation, from WebSocketHandler.perMessageDeflate; null: off. */
export interface DeflateConfig {
  compress: "off" | "shared" | [number, number];
  decompressTakeover: boolean;
}

export function deflateConfig(option: boolean | PerMessageDeflateOptions | undefined): DeflateConfig | null {
  if (option === undefined || option === false) return null;
  const o: PerMessageDeflateOptions = option === true ? {} : option;
  const c = o.compress ?? "shared";
  const d = o.decompress ?? "shared";
  const compress = c === false || c === "disable" ? "off" : c === true || c === "shared" ? "shared" : SIZES[c];
  if (compress === undefined) throw new RangeError(`perMessageDeflate.compress: unknown compressor ${JSON.stringify(c)}`);
  if (d !== true && d !== false && d !== "disable" && d !== "shared" && SIZES[d] === undefined) {
    throw new RangeError(`perMessageDeflate.decompress: unknown compressor ${JSON.stringify(d)}`);
  }
  return { compress, decompressTakeover: d !== true && d !== false && d !== "disable" && d !== "shared" };
}

/**
 * Picks the first acceptable permessage-deflate offer (RFC 7692 §7.1) and answers it. An offer
 * with an unknown or repeated parameter, or a bad value, is declined, as §7.1 requires; so is
 * server_max_window_bits=8, which zlib's raw deflate cannot honour (it uses 9). Returns the
 * Sec-WebSocket-Extensions answer and the agreed parameters, or null: no compression.
 */
export function negotiateDeflate(offers: string | null, config: DeflateConfig | null): { header: string; params: DeflateParams } | null {
  if (offers === null || config === null) return null;
  for (const offer of splitOffers(offers)) {
    const [name, ...rawParams] = offer.split(";").map((p) => p.trim());
    if (name!.toLowerCase() !== "permessage-deflate") continue;
    const seen = new Map<string, string | null>();
    let ok = true;
    for (const p of rawParams) {
      if (p === "") { ok = false; break; }
      const eq = p.indexOf("=");
      const key = (eq < 0 ? p : p.slice(0, eq)).trim().toLowerCase();
      let value: string | null = eq < 0 ? null : p.slice(eq + 1).trim();
      if (value !== null && value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
      if (seen.has(key)) { ok = false; break; }
      seen.set(key, value);
      if (key === "server_no_context_takeover" || key === "client_no_context_takeover") ok = value === null;
      else if (key === "server_max_window_bits") ok = value !== null && windowBits(value) !== 0;
      else if (key === "client_max_window_bits") ok = value === null || windowBits(value) !== 0;
      else ok = false; // an unknown parameter
      if (!ok) break;
    }
    if (!ok) continue;
    const [ourBits, memLevel] = config.compress === "shared" || config.compress === "off" ? [15, 8] : config.compress;
    let bits = ourBits;
    const asked = seen.get("server_max_window_bits");
    if (asked !== undefined) {
      const max = windowBits(asked!);
      if (max < 9) continue; // 8: not something zlib can keep to
      if (max < bits) bits = max;
    }
    const serverTakeover = config.compress !== "shared" && config.compress !== "off" && !seen.has("server_no_context_takeover");
    const clientTakeover = config.decompressTakeover && !seen.has("client_no_context_takeover");
    const parts = ["permessage-deflate"];
    if (!serverTakeover) parts.push("server_no_context_takeover");
    if (!clientTakeover) parts.push("client_no_context_takeover");
    if (asked !== undefined || bits < 15) parts.push(`server_max_window_bits=${bits}`);
    return {
      header: parts.join("; "),
      params: { serverTakeover, clientTakeover, serverWindowBits: bits, memLevel, compress: config.compress !== "off" },
    };
  }
  return null;
}

/** 8..15 as a number, 0 for anything else (leading zeros, signs and spaces are not allowed). */
function windowBits(v: string): number {
  return /^(8|9|1[0-5])$/.test(v) ? Number(v) : 0;
}

/** Offers are separated by commas outside quoted strings. */
function splitOffers(header: string): string[] {
  const out: string[] = [];
  let cur = "", quoted = false;
  for (const ch of header) {
    if (ch === '"') quoted = !quoted;
    if (ch === "," && !quoted) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out.map((o) => o.trim()).filter((o) => o !== "");
}
