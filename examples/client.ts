import { connect } from "bunpoll/client";
const c = await connect({ host: "127.0.0.1", port: 7000, protocol: "framed" });
console.log(await c.ping(), c.clientId); // round-trip ms, the id the server gave us
await c.close(); // an open connection keeps the process running
