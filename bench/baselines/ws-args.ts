// The command line of the WebSocket benchmark servers: --port P [--host H].

export function benchServerArgs(name: string, argv = process.argv.slice(2)): { host: string; port: number } {
  let host = "127.0.0.1";
  let port = 0;
  const fail = (msg: string): never => {
    process.stderr.write(`${name}: ${msg}\nusage: ${name} --port P [--host H]\n`);
    process.exit(2);
  };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i];
    const v = argv[i + 1];
    if (v === undefined) fail(`missing value for ${k}`);
    if (k === "--port") port = Number(v);
    else if (k === "--host") host = v!;
    else fail(`unknown argument ${k}`);
  }
  if (!Number.isInteger(port) || port <= 0 || port > 65535) fail("--port is required");
  return { host, port };
}
