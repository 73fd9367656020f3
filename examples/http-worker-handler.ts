// A handler module for serveWorkers(): serve()'s options minus the port, loaded in every worker.
export default {
  fetch(req: Request) {
    return new Response(`hello from ${new URL(req.url).pathname}\n`);
  },
};
