// Static files: staticFiles(dir) is a fetch handler that answers GET and HEAD from the files
// under dir. Its file responses carry an open file (FileResponse) instead of bytes: the HTTP
// session writes the head and then stream.writeFile(), so the body leaves by sendfile(2) in
// order with everything else the connection writes, and never passes through memory.
//
// No path outside dir is served: the path is percent-decoded once, NUL and ".." segments
// are refused, and the real path of the opened fd (symbolic links resolved, read from the
// fd itself, so no rename can race it) must lie under dir's real path. All of these are 404.
// Only single ranges are served as 206; several ranges get the whole file (200), which RFC
// 9110 allows and which spares a multipart body.

import { realpathSync, statSync } from "node:fs";
import { FileKind, openNormalizedFile, type OpenedFile } from "../../driver/files.ts";
import type { SharedFile } from "../../buffers/shared-file.ts";
import { STATUS_TEXT } from "./response.ts";

/** Content types by extension (lower case); anything else is application/octet-stream. */
export const CONTENT_TYPES: Readonly<Record<string, string>> = {
  html: "text/html; charset=utf-8",
  htm: "text/html; charset=utf-8",
  css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  mjs: "text/javascript; charset=utf-8",
  json: "application/json",
  txt: "text/plain; charset=utf-8",
  svg: "image/svg+xml",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  ico: "image/x-icon",
  wasm: "application/wasm",
  pdf: "application/pdf",
  woff: "font/woff",
  woff2: "font/woff2",
  mp4: "video/mp4",
};
export const DEFAULT_CONTENT_TYPE = "application/octet-stream";

export function contentTypeOf(path: string): string {
  const slash = path.lastIndexOf("/");
  const dot = path.lastIndexOf(".");
  if (dot <= slash + 1) return DEFAULT_CONTENT_TYPE; // no extension, or a dotfile's name
  return CONTENT_TYPES[path.slice(dot + 1).toLowerCase()] ?? DEFAULT_CONTENT_TYPE;
}

/** A request path as a path under the root: its segments, and whether it named a directory. */
export interface RelativePath {
  /** Decoded segments, "" and "." dropped: joined with "/" under the root. */
  readonly segments: readonly string[];
  /** The path ended in "/". */
  readonly trailingSlash: boolean;
}

/**
 * Resolves the path of a request target (no query) under a root: decoded once; null when it
 * must not be served (not absolute, NUL, a ".." segment after decoding: 404), "bad" when its
 * percent-encoding is malformed (400).
 */
export function resolveRequestPath(rawPath: string): RelativePath | null | "bad" {
  if (rawPath.charCodeAt(0) !== 0x2f) return null;
  let path: string;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    return "bad";
  }
  if (path.includes("\0")) return null;
  const segments: string[] = [];
  for (const seg of path.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") return null;
    segments.push(seg);
  }
  return { segments, trailingSlash: path.length > 1 && path.endsWith("/") };
}

/** A byte range [start, end) of a file. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

/**
 * A Range header against a file of `size` bytes (RFC 9110 §14.1.2): one range `a-b`, `a-`
 * or `-n`. null: serve the whole file (no header, not bytes, malformed, or several ranges);
 * "unsatisfiable": 416.
 */
export function parseRange(header: string | null, size: number): ByteRange | null | "unsatisfiable" {
  if (header === null) return null;
  const m = /^bytes=[ \t]*(\d*)-(\d*)[ \t]*$/i.exec(header);
  if (m === null) return null; // several ranges (a comma), another unit, or not a range at all
  const [, a, b] = m as unknown as [string, string, string];
  if (a === "" && b === "") return null;
  if (a === "") {
    const n = Number(b);
    if (n === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - n), end: size };
  }
  const start = Number(a);
  if (b !== "" && Number(b) < start) return null; // an invalid range: the header is ignored
  if (start >= size) return "unsatisfiable";
  const last = b === "" ? size - 1 : Math.min(Number(b), size - 1);
  return { start, end: last + 1 };
}

/** A weak validator from size and modification time. */
export function etagOf(file: SharedFile): string {
  return `W/"${file.size.toString(16)}-${Math.floor(file.mtimeMs).toString(16)}"`;
}

/** If-None-Match against an ETag, with the weak comparison of RFC 9110 §13.1.2. */
export function etagMatches(header: string, etag: string): boolean {
  const opaque = etag.startsWith("W/") ? etag.slice(2) : etag;
  for (let tag of header.split(",")) {
    tag = tag.trim();
    if (tag === "*") return true;
    if (tag.startsWith("W/")) tag = tag.slice(2);
    if (tag === opaque) return true;
  }
  return false;
}

/**
 * A response whose body is a range of an open file. In bunpoll's HTTP server the body goes
 * out with sendfile(2) (stream.writeFile) and the server releases the file once it is
 * queued; anywhere else its body is the same bytes read by Bun (Bun.file), and dispose()
 * (or `using`) releases the file. Forgetting to do that leaks the fd only until collected.
 */
export class FileResponse extends Response implements Disposable {
  private held: SharedFile | null;

  constructor(
    file: SharedFile,
    /** The range sent: [start, end) of the file. */
    readonly start: number,
    readonly end: number,
    realPath: string,
    init: { status: number; headers: Record<string, string> },
    head: boolean,
  ) {
    super(head || end === start ? null : Bun.file(realPath).slice(start, end), init);
    this.held = file;
  }

  /** The open file, until released. */
  get file(): SharedFile | null {
    return this.held;
  }

  /** Bytes the body holds (Content-Length). */
  get length(): number {
    return this.end - this.start;
  }

  [Symbol.dispose](): void {
    const f = this.held;
    this.held = null;
    f?.release();
  }
}

/** What staticFiles needs of a request: ours (HttpRequest) or a standard Request. */
export interface StaticRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Headers;
  /** HttpRequest's: the raw path without the query (a standard Request's URL is normalized). */
  readonly pathname?: string;
  header?(lower: string): string | null;
}

export interface StaticFilesOptions {
  /** The file served for a directory (default index.html). */
  index?: string;
}

const ALLOW = "GET, HEAD";

function textResponse(status: number, extra?: Record<string, string>): Response {
  return new Response(`${STATUS_TEXT[status]}\n`, { status, headers: { "content-type": "text/plain; charset=utf-8", ...extra } });
}

/**
 * A fetch handler serving the files under `dir` (checked now: a missing or non-directory
 * `dir` throws). Usable as serve({ fetch: staticFiles(dir) }), or called from a fetch
 * handler for the paths its routes do not have.
 */
export function staticFiles(dir: string, options: StaticFilesOptions = {}): (req: StaticRequest) => Response {
  let root: string;
  try {
    root = realpathSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`cannot serve "${dir}": ${code === "ENOENT" ? "no such directory (ENOENT)" : (code ?? (e as Error).message)}`);
  }
  if (!statSync(root).isDirectory()) throw new Error(`cannot serve "${dir}": not a directory`);
  const index = options.index ?? "index.html";
  if (index.includes("/") || index === "" || index === "." || index === "..") throw new Error(`staticFiles: index "${index}" must be a file name`);
  const inside = root.endsWith("/") ? root : `${root}/`;

  /** Opens root/rel; null unless what was opened really lies under the root. */
  const open = (rel: string): OpenedFile | null => {
    // Normalized: root is a real path, and the segments hold no "", ".", ".." or "/".
    const o = openNormalizedFile(rel === "" ? root : `${inside}${rel}`);
    if (typeof o === "number") return null;
    const real = o.realPath;
    if (real === null || (real !== root && !real.startsWith(inside))) {
      o.file.release();
      return null;
    }
    return o;
  };

  return (req: StaticRequest): Response => {
    const method = req.method;
    const isHead = method === "HEAD";
    if (method !== "GET" && !isHead) return textResponse(405, { allow: ALLOW });
    const rawPath = req.pathname ?? rawPathOf(req.url);
    const rel = resolveRequestPath(rawPath);
    if (rel === "bad") return textResponse(400);
    if (rel === null) return textResponse(404);
    let opened = open(rel.segments.join("/"));
    // The type comes from the name asked for (a link's target may have none).
    let name = rel.segments[rel.segments.length - 1] ?? "";
    if (opened === null) return textResponse(404);
    if (opened.kind === FileKind.Directory) {
      opened.file.release();
      if (!rel.trailingSlash && rel.segments.length > 0) {
        // Relative links in the index page resolve against the directory only with its slash.
        const q = req.url.indexOf("?");
        // Built from the checked segments: "//host" must not become a protocol-relative Location.
        const location = `/${rel.segments.map(encodeURIComponent).join("/")}/${q < 0 ? "" : req.url.slice(q)}`;
        return new Response(null, { status: 301, headers: { location } });
      }
      opened = open([...rel.segments, index].join("/"));
      name = index;
      if (opened === null) return textResponse(404);
    }
    if (opened.kind !== FileKind.Regular) {
      opened.file.release();
      return textResponse(404);
    }
    return fileResponse(req, opened, contentTypeOf(name), isHead);
  };
}

const header = (req: StaticRequest, name: string): string | null => (req.header !== undefined ? req.header(name) : req.headers.get(name));

/** The response for an opened regular file: 304, 206, 416 or 200. Takes over the file's reference. */
function fileResponse(req: StaticRequest, opened: OpenedFile, contentType: string, isHead: boolean): Response {
  const file = opened.file;
  const etag = etagOf(file);
  const lastModified = new Date(Math.floor(file.mtimeMs / 1000) * 1000).toUTCString();
  const validators = { etag, "last-modified": lastModified };
  const inm = header(req, "if-none-match");
  const ims = inm === null ? header(req, "if-modified-since") : null; // If-None-Match wins (RFC 9110 §13.2.2)
  if ((inm !== null && etagMatches(inm, etag)) || (ims !== null && notModifiedSince(ims, file.mtimeMs))) {
    file.release();
    return new Response(null, { status: 304, headers: validators });
  }
  const size = file.size;
  const headers: Record<string, string> = { "content-type": contentType, ...validators, "accept-ranges": "bytes" };
  const ifRange = header(req, "if-range");
  // If-Range: a range of a file that changed since the client's copy would not fit it.
  const range = ifRange === null || ifRange === etag || ifRange === lastModified ? parseRange(header(req, "range"), size) : null;
  if (range === "unsatisfiable") {
    file.release();
    return new Response(`${STATUS_TEXT[416]}\n`, { status: 416, headers: { "content-type": "text/plain; charset=utf-8", "content-range": `bytes */${size}` } });
  }
  if (range === null) return new FileResponse(file, 0, size, opened.realPath!, { status: 200, headers }, isHead);
  headers["content-range"] = `bytes ${range.start}-${range.end - 1}/${size}`;
  return new FileResponse(file, range.start, range.end, opened.realPath!, { status: 206, headers }, isHead);
}

function notModifiedSince(header: string, mtimeMs: number): boolean {
  const since = Date.parse(header);
  return Number.isFinite(since) && Math.floor(mtimeMs / 1000) * 1000 <= since;
}

/** The path of an absolute URL, as sent (WHATWG URL would already have removed dot segments). */
function rawPathOf(url: string): string {
  const scheme = url.indexOf("://");
  const slash = scheme < 0 ? -1 : url.indexOf("/", scheme + 3);
  if (slash < 0) return "/";
  const end = url.search(/[?#]/);
  return url.slice(slash, end < 0 || end < slash ? undefined : end);
}
