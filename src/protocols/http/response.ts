// Writing responses: the status line and fields as one string, the body as bytes, both
// into the stream's queue, so a turn's responses leave in one send. The Date field is
// formatted once a second; a static route's response is serialized once and written as
// bytes.

export const STATUS_TEXT: Record<number, string> = {
  100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
  206: "Partial Content", 301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified",
  307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
  404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 411: "Length Required",
  413: "Content Too Large", 414: "URI Too Long", 415: "Unsupported Media Type", 416: "Range Not Satisfiable",
  417: "Expectation Failed", 426: "Upgrade Required", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
  500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

const utf8 = new TextEncoder();

/** "date: <IMF-fixdate>\r\n", formatted at most once a second. */
export class DateField {
  /** The second the line was formatted for (epoch seconds). */
  second = -1;
  private line = "";
  get(): string {
    const now = Date.now();
    const s = Math.floor(now / 1000);
    if (s !== this.second) {
      this.second = s;
      this.line = `date: ${new Date(s * 1000).toUTCString()}\r\n`;
    }
    return this.line;
  }
}

/** Fields the server writes itself: a response's own values for them are not copied. */
const OWN_FIELDS = new Set(["content-length", "transfer-encoding", "connection", "date", "keep-alive"]);

/** What headLines() saw of the fields while it copied them (one object, reused). */
export const headInfo = { hasContentType: false, connectionClose: false };

// headLines()'s pass over the fields: module state and one function, so no closure is made
// per response (one thread, and the pass never re-enters).
let lines = "";
function addField(value: string, name: string): void {
  if (OWN_FIELDS.has(name)) {
    if (name === "connection" && value.toLowerCase() === "close") headInfo.connectionClose = true;
    return;
  }
  if (name === "content-type") headInfo.hasContentType = true;
  lines += `${name}: ${value}\r\n`;
}

/**
 * Status line and fields (without the blank line), from a Response's status and headers. One
 * pass over the fields also fills `headInfo`: whether a Content-Type was given, and whether
 * Connection says close (the server writes its own Connection field).
 */
export function headLines(status: number, statusText: string, headers: Headers): string {
  // A reason phrase is HTAB, SP, VCHAR or obs-text (RFC 9112 §4): anything else (a CR or LF
  // from user input) would split the response, so the standard phrase is written instead.
  const reason = statusText !== "" && /^[\t\x20-\x7e\x80-\xff]*$/.test(statusText) ? statusText : STATUS_TEXT[status] || "Unknown";
  headInfo.hasContentType = false;
  headInfo.connectionClose = false;
  lines = `HTTP/1.1 ${status} ${reason}\r\n`;
  // Bun's Headers count their fields: a response without any skips the pass.
  if ((headers as { count?: number }).count !== 0) headers.forEach(addField);
  const out = lines;
  lines = "";
  return out;
}

/** A response written the same way every time: serialized once (a route's static Response). */
export interface StaticResponse {
  readonly status: number;
  /** Status line and fields up to (not including) date and content-length. */
  readonly head: Uint8Array;
  readonly body: Uint8Array;
  /** "content-length: N\r\n". */
  readonly lengthLine: Uint8Array;
  /** The whole keep-alive response for `second` (the Date field changes once a second). */
  whole?: Uint8Array;
  /** Bytes of `whole` up to and including the blank line (a HEAD's answer). */
  headLength?: number;
  second?: number;
}

/** The complete keep-alive response of a static route, rebuilt once a second for its Date. */
export function wholeResponse(f: StaticResponse, date: DateField): Uint8Array {
  const line = date.get();
  if (f.second === date.second && f.whole !== undefined) return f.whole;
  const dateBytes = utf8.encode(line);
  const headLength = f.head.length + dateBytes.length + f.lengthLine.length + 2;
  const whole = new Uint8Array(new ArrayBuffer(headLength + f.body.length));
  let p = 0;
  for (const part of [f.head, dateBytes, f.lengthLine, CRLF_BYTES, f.body]) {
    whole.set(part, p);
    p += part.length;
  }
  f.whole = whole;
  f.headLength = headLength;
  f.second = date.second;
  return whole;
}

const CRLF_BYTES = utf8.encode("\r\n");

/** A Response serialized once, given its body's bytes (a static route's). */
export function staticResponse(res: Response, body: Uint8Array): StaticResponse {
  return {
    status: res.status,
    head: utf8.encode(headLines(res.status, res.statusText, res.headers)),
    body,
    lengthLine: utf8.encode(`content-length: ${body.length}\r\n`),
  };
}

/** The plain-text error response of a refused request, ending the connection. */
export function errorResponse(status: number, message: string, date: DateField): string {
  const body = `${message}\n`;
  return (
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Error"}\r\n` +
    `content-type: text/plain; charset=utf-8\r\n${date.get()}content-length: ${utf8.encode(body).length}\r\nconnection: close\r\n\r\n${body}`
  );
}
