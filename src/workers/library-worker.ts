// The entry of one worker thread of listenWorkers()/serveWorkers() (library.ts): imports the
// application's handler module, serves it on its own reactor (index = worker number, so ids
// stay unique in the process) with SO_REUSEPORT, and drains on the supervisor's word.

import { listen, type Server } from "../listen.ts";
import { serve } from "../serve.ts";

export type LibraryStart = {
  type: "start";
  kind: "listen" | "serve";
  module: string;
  index: number;
  /** Plain options (hostname, port, limits), merged over the module's default export. */
  options: Record<string, unknown>;
};

declare const self: Worker;
let stopper: (() => Promise<void>) | null = null;

self.onmessage = async (e: MessageEvent<LibraryStart | { type: "stop" }>) => {
  const m = e.data;
  if (m.type === "stop") {
    await stopper?.();
    self.postMessage({ type: "stopped" });
    return;
  }
  try {
    const mod = await import(m.module);
    const def = mod.default ?? mod;
    const reactorOptions = { ...(def.reactorOptions ?? {}), index: m.index };
    if (m.kind === "listen") {
      const server: Server = listen({ ...def, socket: def.socket ?? def, ...m.options, reusePort: true, reactorOptions } as never);
      stopper = () => server.stop();
      self.postMessage({ type: "ready", port: server.port, hostname: server.hostname });
    } else {
      const server = serve({ ...def, ...m.options, reusePort: true, reactorOptions });
      stopper = () => server.stop();
      self.postMessage({ type: "ready", port: server.port, hostname: server.hostname });
    }
  } catch (err) {
    self.postMessage({ type: "failed", message: (err as Error).message });
  }
};
