import { serve } from "bunpoll";

const server = serve({
  port: 3000,
  routes: {
    "/": new Response("home"),                       // static: serialized once, written as bytes
    "/users/:id": (req) => Response.json({ id: req.params.id }),
    "/items": { GET: () => new Response("list"), POST: async (req) => new Response(await req.text(), { status: 201 }) },
  },
  async fetch(req, server) {                         // everything else
    return new Response(`${req.method} ${new URL(req.url).pathname} from ${server.requestIP(req)?.address}`);
  },
  error: (err) => new Response(`oops: ${err.message}`, { status: 500 }),
  maxRequestBodySize: 1024 * 1024,                   // 413 past it
  idleTimeout: 10,                                   // seconds, as Bun
});
console.log(server.url.href);
await server.stop();
