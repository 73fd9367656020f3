// Shared command line of the baseline servers: --port P [--host H] [--protocol echo|framed].

export interface ServerArgs {
  host: string;
  port: number;
  protocol: "echo" | "framed";
}

export function parseServerArgs(argv: string[], name: string): ServerArgs {
  const a: ServerArgs = { host: "127.0.0.1", port: 0, protocol: "echo" };
  const fail = (msg: string): never => {
    process.stderr.write(`${name}: ${msg}\nusage: ${name} --port P [--host 127.0.0.1] [--protocol echo|framed]\n`);
    process.exit(2);
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    if (v === undefined) fail(`missing value for ${k}`);
    i++;
    if (k === "--port") a.port = Number(v);
    else if (k === "--host") a.host = v!;
    else if (k === "--protocol") {
      if (v !== "echo" && v !== "framed") fail(`unknown protocol ${v}`);
      a.protocol = v as "echo" | "framed";
    } else fail(`unknown argument ${k}`);
  }
  if (!Number.isInteger(a.port) || a.port <= 0 || a.port > 65535) fail("--port is required");
  return a;
}
