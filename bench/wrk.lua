-- The bench's wrk script (go run ./bench writes it out and runs
-- `wrk -s wrk.lua -H ... <url> <body-file>`). Every request is the same POST: the body is
-- read from the file named after the URL, the headers (one fixed, precomputed signature)
-- come from wrk's -H, so the request is built once per thread and costs wrk no Lua per
-- request. response() counts answers by status code, which wrk's own summary does not
-- (it only counts "non-2xx or 3xx"). done() prints one line, "bench-wrk: {json}", that
-- the bench parses: counts, socket errors, and latency percentiles from wrk's own
-- histogram (after wrk's coordinated-omission correction) on a grid fine enough to merge
-- rounds: every 0.1 % up to 99 %, every 0.01 % above.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   local f = assert(io.open(args[1], "rb"))
   wrk.body = f:read("*a")
   f:close()
   wrk.method = "POST"
   codes = {}
end

function response(status, headers, body)
   codes[status] = (codes[status] or 0) + 1
end

function done(summary, latency, requests)
   local counts = {}
   for _, t in ipairs(threads) do
      for code, n in pairs(t:get("codes") or {}) do
         counts[code] = (counts[code] or 0) + n
      end
   end
   local parts = {}
   for code, n in pairs(counts) do
      parts[#parts + 1] = string.format('"%d":%d', code, n)
   end
   local grid = {}
   for i = 1, 990 do
      local p = i * 0.1
      grid[#grid + 1] = string.format("[%.2f,%d]", p, latency:percentile(p))
   end
   for i = 1, 100 do
      local p = 99 + i * 0.01
      grid[#grid + 1] = string.format("[%.2f,%d]", p, latency:percentile(p))
   end
   local e = summary.errors
   io.write(string.format(
      'bench-wrk: {"requests":%d,"duration_us":%d,"codes":{%s},' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
      '"p50_us":%d,"p99_us":%d,"max_us":%d,"percentiles_us":[%s]}\n',
      summary.requests, summary.duration, table.concat(parts, ","),
      e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max, table.concat(grid, ",")))
end
