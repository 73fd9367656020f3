// Routes as Bun.serve takes them: exact paths, `:name` parameters, a trailing `*`, per-method
// handlers ({ GET, POST }: other methods get 405 with Allow), and static Responses that are
// serialized once and written as bytes.

import type { HttpRequest } from "./request.ts";
import type { HttpServerInfo } from "./server.ts";
import { staticResponse, type StaticResponse } from "./response.ts";

export type RouteHandler = (req: HttpRequest, server: HttpServerInfo) => Response | Promise<Response> | undefined;
export type RouteTarget = Response | RouteHandler;
export type MethodTable = Partial<Record<"GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS", RouteTarget>>;
export type Routes = Record<string, RouteTarget | MethodTable>;

export interface RouteMatch {
  /** A static response to write as is (no request object needed). */
  fixed: StaticResponse | null;
  handler: RouteHandler | null;
  params: Record<string, string>;
  /** 405 when the path exists but not for this method, with `allow` listing the ones that do. */
  status: number;
  allow: string;
}

interface Entry {
  /** For every method, or per method. */
  any: Target | null;
  methods: Map<string, Target>;
  allow: string;
}

interface Target {
  fixed: StaticResponse | null;
  handler: RouteHandler | null;
  /** The match an exact path returns: built once, no allocation per request. */
  exact: RouteMatch;
}

interface Pattern {
  segments: string[];
  /** Index of a `:name` segment -> name. */
  names: (string | null)[];
  wildcard: boolean;
  entry: Entry;
}

const utf8 = new TextEncoder();
const NO_PARAMS: Record<string, string> = Object.freeze({}) as Record<string, string>;

export class RouteTable {
  private readonly exact = new Map<string, Entry>();
  /** The exact paths as bytes, for matching a target without making a string of it. */
  private readonly exactBytes: { path: Uint8Array; entry: Entry }[] = [];
  private readonly patterns: Pattern[] = [];

  add(path: string, value: RouteTarget | MethodTable): void {
    if (!path.startsWith("/")) throw new TypeError(`route "${path}": a path starts with /`);
    const entry = toEntry(path, value);
    if (!path.includes(":") && !path.endsWith("*")) {
      this.exact.set(path, entry);
      if (this.exactBytes.length < 16) this.exactBytes.push({ path: utf8.encode(path), entry });
      return;
    }
    const wildcard = path.endsWith("/*");
    const segments = (wildcard ? path.slice(0, -2) : path).split("/").slice(1);
    this.patterns.push({ segments, names: segments.map((s) => (s.startsWith(":") ? s.slice(1) : null)), wildcard, entry });
  }

  get size(): number {
    return this.exact.size + this.patterns.length;
  }

  /**
   * The route of an exact path given as bytes raw[start, end) (the target up to "?"), or
   * undefined when no exact route has it (then call match() with the path as a string).
   * A byte comparison with a few routes costs less than making the string.
   */
  matchExactBytes(method: string, raw: Uint8Array, start: number, end: number): RouteMatch | null | undefined {
    const n = end - start;
    const list = this.exactBytes;
    outer: for (let i = 0; i < list.length; i++) {
      const p = list[i]!.path;
      if (p.length !== n) continue;
      for (let k = 0; k < n; k++) if (raw[start + k] !== p[k]) continue outer;
      return this.forEntry(list[i]!.entry, method, NO_PARAMS);
    }
    return this.exactBytes.length === this.exact.size && this.patterns.length === 0 ? null : undefined;
  }

  private forEntry(entry: Entry, method: string, params: Record<string, string>): RouteMatch {
    const t = entry.methods.get(method) ?? (method === "HEAD" ? entry.methods.get("GET") : undefined) ?? entry.any;
    if (t === undefined || t === null) return { fixed: null, handler: null, params, status: 405, allow: entry.allow };
    if (params === NO_PARAMS) return t.exact;
    return { fixed: t.fixed, handler: t.handler, params, status: 0, allow: "" };
  }

  /** The route for method and path (the target's path, undecoded), or null. */
  match(method: string, path: string): RouteMatch | null {
    if (this.size === 0) return null;
    let entry = this.exact.get(path);
    let params = NO_PARAMS;
    if (entry === undefined) {
      const found = this.matchPattern(path);
      if (found === null) return null;
      entry = found.entry;
      params = found.params;
    }
    return this.forEntry(entry, method, params);
  }

  private matchPattern(path: string): { entry: Entry; params: Record<string, string> } | null {
    const parts = path.split("/").slice(1);
    outer: for (const p of this.patterns) {
      if (p.wildcard ? parts.length < p.segments.length : parts.length !== p.segments.length) continue;
      let params: Record<string, string> | null = null;
      for (let i = 0; i < p.segments.length; i++) {
        const name = p.names[i];
        if (name === null) {
          if (parts[i] !== p.segments[i]) continue outer;
        } else {
          if (parts[i] === "") continue outer;
          (params ??= {})[name!] = safeDecode(parts[i]!);
        }
      }
      return { entry: p.entry, params: params ?? NO_PARAMS };
    }
    return null;
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function toEntry(path: string, value: RouteTarget | MethodTable): Entry {
  const methods = new Map<string, Target>();
  if (value instanceof Response || typeof value === "function") {
    return { any: toTarget(path, value), methods, allow: "" };
  }
  for (const [m, t] of Object.entries(value)) {
    if (t === undefined) continue;
    methods.set(m.toUpperCase(), toTarget(`${m} ${path}`, t));
  }
  const allow = [...methods.keys()];
  if (methods.has("GET") && !methods.has("HEAD")) allow.push("HEAD");
  return { any: null, methods, allow: allow.join(", ") };
}

function toTarget(what: string, t: RouteTarget): Target {
  const fixed = typeof t === "function" ? null : serializeOnce(what, t);
  const handler = typeof t === "function" ? t : null;
  return { fixed, handler, exact: { fixed, handler, params: NO_PARAMS, status: 0, allow: "" } };
}

/** A static Response's bytes, taken once at startup (its body must already be in memory). */
function serializeOnce(what: string, res: Response): StaticResponse {
  const p = res.clone().bytes();
  const body = Bun.peek(p);
  if (!(body instanceof Uint8Array)) {
    p.catch(() => {});
    throw new TypeError(`route ${what}: a static Response needs a body already in memory (a string, bytes, a Blob or JSON), not a stream`);
  }
  return staticResponse(res, body);
}

export function compileRoutes(routes: Routes): RouteTable {
  const t = new RouteTable();
  for (const [path, value] of Object.entries(routes)) t.add(path, value);
  return t;
}
