-- wrk script for `fraudlake serve`: POST /score with the seed's request mix
-- (../shared/peers/fastapi_seed/score.lua), used by sections h, j, l, m, n and o of bench/run.sh.
--
--   wrk -t2 -c32 -d60s --latency -s bench/score_fraudlake.lua http://127.0.0.1:18080
--
-- Request n of a thread (n = 1, 2, ...):
--   tx_id       10,000,000 + (thread - 1) * 100,000,000 + n: above every id of the handbook
--               lake (< 1,754,155) and never the same in two threads, so every request is a new
--               transaction (a repeated tx_id is scored again but takes another path)
--   tx_ts       2018-10-01T00:00:00Z + 7 s * n: after the lake's last transaction (2018-09-30)
--               (with WRK_REALTIME=1: that start + the wall-clock seconds since WRK_CLOCK0)
--   customer_id n % 5000, terminal_id (n * 7919) % 10000, amount 10 + n % 200
--
-- Environment:
--   WRK_START     first n minus 1 (default 0): a run after a warm-up starts where the warm-up
--                 stopped (its RESULT line's `last`), so ids and event time go on, not repeat
--   WRK_TS_FIELD  name of the time field (default tx_ts; bench/score_seed.lua sets ts)
--   WRK_TS0       the first event time, Unix seconds (default 2018-10-01T00:00:00Z)
--   WRK_BEARER    an API key, sent as `Authorization: Bearer ...` (sections h, j, l, o)
--   WRK_REALTIME  1: event time advances with the wall clock, not 7 s per request of a thread:
--                 tx_ts = WRK_TS0 + (now - WRK_CLOCK0), in whole seconds (os.time(): all requests
--                 of one second share it; the server orders ties by tx_id) (section l)
--   WRK_CLOCK0    with WRK_REALTIME: the Unix time at which event time is WRK_TS0 (default: when
--                 the script loads; pass it so every thread and run shares one origin)
--   WRK_DELAY_MS  milliseconds each connection waits between an answer and its next request
--                 (wrk's delay() hook; the delay is not counted in the latency): a rate limit of
--                 about connections * 1000 / WRK_DELAY_MS requests/s. Unset: full speed
--
-- At the end it prints one parseable line (latency from wrk's histogram, in ms):
--   RESULT rps=... p50_ms=... p99_ms=... non2xx=... errors=... requests=... seconds=... last=...
-- non2xx counts answers outside 200..299; errors is wrk's socket errors (connect, read, write,
-- timeout) plus its status errors (answers >= 400), summed. The first non-2xx answer of each
-- thread is printed too, to see what went wrong.

local TX_BASE = 10000000
local THREAD_SPAN = 100000000
local TS0 = tonumber(os.getenv("WRK_TS0") or "") or 1538352000 -- 2018-10-01T00:00:00Z
local STEP_S = 7       -- event time per request of a thread, as the seed's score.lua
local REALTIME = os.getenv("WRK_REALTIME") == "1"
local CLOCK0 = tonumber(os.getenv("WRK_CLOCK0") or "") or os.time()
local DELAY_MS = tonumber(os.getenv("WRK_DELAY_MS") or "")
local HEADERS = { ["Content-Type"] = "application/json" }
if os.getenv("WRK_BEARER") then
  HEADERS["Authorization"] = "Bearer " .. os.getenv("WRK_BEARER")
end
local TS_FIELD = TS_FIELD or os.getenv("WRK_TS_FIELD") or "tx_ts"

-- setup() and done() run in the main Lua state, the rest in each thread's own state.
local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_no", thread_count)
  table.insert(threads, thread)
end

function init(args)
  counter = tonumber(os.getenv("WRK_START") or "") or 0
  id_base = TX_BASE + ((thread_no or 1) - 1) * THREAD_SPAN
  non2xx = 0
  first_bad = nil
end

function request()
  counter = counter + 1
  local ts
  if REALTIME then
    ts = TS0 + (os.time() - CLOCK0)
  else
    ts = TS0 + counter * STEP_S
  end
  local body = string.format(
    '{"tx_id":%d,"%s":"%s","customer_id":%d,"terminal_id":%d,"amount":%.2f}',
    id_base + counter, TS_FIELD, os.date("!%Y-%m-%dT%H:%M:%SZ", ts),
    counter % 5000, (counter * 7919) % 10000, 10 + counter % 200)
  return wrk.format("POST", "/score", HEADERS, body)
end

-- Defined only when asked for: wrk calls delay() before every request once it exists.
if DELAY_MS then
  function delay()
    return DELAY_MS
  end
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if first_bad == nil then
      first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 300)
    end
  end
end

function done(summary, latency, requests)
  local bad, last = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("non2xx") or 0)
    local c = t:get("counter") or 0
    if c > last then last = c end
    local first = t:get("first_bad")
    if first then
      io.write(string.format("first non-2xx answer of thread %d: %s\n", t:get("thread_no"), first))
    end
  end
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  local seconds = summary.duration / 1e6
  local rps = 0
  if seconds > 0 then rps = summary.requests / seconds end
  io.write(string.format(
    "RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d requests=%d seconds=%.3f last=%d\n",
    rps, latency:percentile(50) / 1000, latency:percentile(99) / 1000, bad, errors,
    summary.requests, seconds, last))
end
