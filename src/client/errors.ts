// The client library's errors. Every one carries a machine-readable `code` so callers
// (and the CLI's exit messages) can tell "the server said no" from "the server is gone".

import { formatHostPort } from "../../ffi/structs.ts";
import { ERROR_MESSAGES, errorCodeOf } from "../protocols/codec/errors.ts";

export class ClientError extends Error {
  override name = "ClientError";
  constructor(
    /** Machine-readable reason, e.g. "not_supported", "timeout", "connection_closed". */
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The server answered a request with an error (framed ERROR frame, json `{"type":"error"}`,
 * line `ERR` text). `code` is the protocol's error name ("no_such_client", "unauthorized").
 */
export class ServerError extends ClientError {
  override name = "ServerError";
  /** The numeric code shared by every protocol (codec/errors.ts), 0 when unknown. */
  readonly errorCode: number;
  constructor(code: string, readonly serverMessage: string) {
    // The default message of some codes is the code itself ("unauthorized"): say it once.
    super(code, serverMessage && serverMessage !== code ? `${code} (${serverMessage})` : code);
    this.errorCode = errorCodeOf(code);
  }

  /** From a numeric code, as framed ERROR frames carry it. */
  static fromCode(code: number, name: string, message: string): ServerError {
    return new ServerError(name, message || ERROR_MESSAGES[code] || "");
  }
}

/** The operation has no equivalent in the protocol the client speaks. */
export class NotSupportedError extends ClientError {
  override name = "NotSupportedError";
  constructor(readonly operation: string, readonly protocol: string) {
    super("not_supported", `${operation} is not supported by the ${protocol} protocol`);
  }
}

/** The connection closed (or was closed) while a request waited for its reply. */
export class ConnectionClosedError extends ClientError {
  override name = "ConnectionClosedError";
  constructor(detail: string) {
    super("connection_closed", `connection closed: ${detail}`);
  }
}

/** No reply within the request timeout. The connection stays usable. */
export class RequestTimeoutError extends ClientError {
  override name = "RequestTimeoutError";
  constructor(operation: string, ms: number) {
    super("timeout", `no reply to ${operation} within ${ms} ms`);
  }
}

/** TCP connect failed, or the handshake did not complete. */
export class ConnectError extends ClientError {
  override name = "ConnectError";
  constructor(
    readonly host: string,
    readonly port: number,
    /** errno name ("ECONNREFUSED") or a ClientError code ("timeout", "unauthorized"). */
    code: string,
    detail: string,
    override readonly cause?: unknown,
  ) {
    super(code, `cannot connect to ${formatHostPort(host, port)}: ${detail}`);
  }
}

/** The bytes from the server do not parse as the expected protocol. */
export class ProtocolMismatchError extends ClientError {
  override name = "ProtocolMismatchError";
  constructor(detail: string) {
    super("protocol_mismatch", detail);
  }
}

export { formatHostPort };
