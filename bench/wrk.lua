-- wrk script for bench/run.ts --protocol http: optional pipelining and a JSON summary.
--
--   wrk -t1 -c50 -d5s --latency -s bench/wrk.lua http://127.0.0.1:P/plaintext -- DEPTH
--
-- DEPTH > 1 sends DEPTH copies of the request in one write and waits for all DEPTH
-- responses before the next batch (wrk counts each response). DEPTH 1 defines no
-- `request` function, so wrk keeps its static-request fast path, the same as no script.
-- done() prints one line, "WRK_JSON {...}", with the counts, errors and the latency
-- percentiles in µs that the runner reads. (done() runs in wrk's main Lua state, where
-- init() never ran: it cannot see `depth`.)

local depth = 1

function init(args)
  depth = tonumber(args[1] or "1") or 1
  if depth > 1 then
    local one = wrk.format()
    local batch = {}
    for i = 1, depth do batch[i] = one end
    local req = table.concat(batch)
    request = function() return req end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"durationUs":%d,"bytes":%d,' ..
    '"connectErrors":%d,"readErrors":%d,"writeErrors":%d,"statusErrors":%d,"timeouts":%d,' ..
    '"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
