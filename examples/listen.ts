import { listen } from "bunpoll";   // inside this repo, or a project that installed it

const server = listen<{ n: number }>({   // the shape Bun.listen users know
  hostname: "127.0.0.1",
  port: 5050,
  socket: {
    open(socket) { socket.data = { n: 0 }; },
    data(socket, bytes) { socket.data.n++; socket.write(bytes); },  // bytes: valid during the call only
    drain(socket) {},                    // queue fell below half the high-water mark
    end(socket) {},                      // peer sent FIN; pending output is still flushed
    close(socket, error, reason) {},     // Bun's (socket, error), then why: "end", "reset", "idle-timeout"...
    error(socket, err) {},               // a handler threw: only this connection closes
    timeout(socket) {},                  // idleTimeoutMs passed without traffic
  },
  idleTimeoutMs: 30_000,
  highWaterMark: 256 * 1024,
});
console.log(server.port, server.connections);
await server.stop();                     // stop accepting, flush, close
