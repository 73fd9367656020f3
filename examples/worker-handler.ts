// A handler module for listenWorkers() (examples/README: several cores): each worker thread
// imports it and serves its default export as listen()'s `socket`. This one says which
// worker took the connection, then echoes.
import { reactorIndexOf, type SocketHandler } from "bunpoll";

export default {
  socket: {
    open(socket) {
      socket.write(`worker ${reactorIndexOf(socket.id)}\n`);
    },
    data(socket, bytes) {
      socket.write(bytes);
    },
  },
} satisfies { socket: SocketHandler };
