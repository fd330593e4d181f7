-- wrk script for bench/bench.py: one workload per run, chosen by environment
-- variables, and a machine-readable summary at the end (one line starting
-- with "BENCH ", JSON), with every status counted, so that 409s and 503s are
-- reported instead of being hidden in wrk's "non-2xx" total.
--
--   MODE      ping | state | deposit | transfer | open
--   FIRST     number of the first account (ids 00000000-0000-4000-8000-NNNNNNNNNNNN)
--   ACCOUNTS  how many accounts, from FIRST on, the requests spread over
--   TAG       0..65535, part of every transactionId: each run's ids are new,
--             so every deposit is a real append, never an idempotent replay
--   LIMIT     if > 0, each thread stops after that many answers (seeding)
--             and then creates DONE_FILE
--   OWNER     the owner of the accounts that `open` opens
--   THREADS   wrk's -t, so that `open` threads take disjoint account numbers
local mode = os.getenv("MODE") or "deposit"
local first = tonumber(os.getenv("FIRST") or "0")
local accounts = tonumber(os.getenv("ACCOUNTS") or "64")
local tag = tonumber(os.getenv("TAG") or "0")
local limit = tonumber(os.getenv("LIMIT") or "0")
local owner = os.getenv("OWNER") or "3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a"
local thread_total = tonumber(os.getenv("THREADS") or "1")

local threads = {}

function setup(thread)
   thread:set("thread_id", #threads)
   table.insert(threads, thread)
end

local counter = 0
local answers = 0
-- Global, so that done() can read each thread's copy with thread:get().
statuses = {}

local function account(n)
   return string.format("00000000-0000-4000-8000-%012x", first + n)
end

-- Distinct across threads (thread_id), runs (tag) and requests (counter).
local function transaction()
   return string.format("%08x-%04x-4000-8000-%012x", thread_id, tag, counter)
end

function request()
   counter = counter + 1
   if mode == "state" then
      return wrk.format("GET", "/api/account/" .. account(counter % accounts))
   elseif mode == "deposit" then
      return wrk.format("PUT", "/api/account/" .. account(counter % accounts)
         .. "/deposit?amount=1&transactionId=" .. transaction())
   elseif mode == "transfer" then
      local from = counter % accounts
      local to = (from + 1) % accounts
      return wrk.format("PUT", "/api/account/" .. account(from)
         .. "/transfer?targetAccount=" .. account(to) .. "&amount=1&transactionId=" .. transaction())
   elseif mode == "open" then
      -- Threads take interleaved numbers so that none opens an id twice.
      local n = (counter - 1) * thread_total + thread_id
      return wrk.format("POST", "/api/account/" .. account(n) .. "?owner=" .. owner)
   end
   error("unknown MODE " .. mode)
end

if mode == "ping" then
   -- One fixed request, built once by wrk itself: the floor stays the
   -- server's, not the Lua interpreter's.
   wrk.method = "GET"
   wrk.path = "/ping"
   request = nil
end

function response(status, headers, body)
   answers = answers + 1
   local key = tostring(status)
   statuses[key] = (statuses[key] or 0) + 1
   if limit > 0 and answers == limit then
      -- wrk's main thread sleeps out its -d even when every thread has
      -- stopped: the file tells bench.py to end it now with SIGINT.
      local marker = io.open(os.getenv("DONE_FILE") or "/dev/null", "w")
      if marker then marker:close() end
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local total = {}
   for _, thread in ipairs(threads) do
      local counted = thread:get("statuses")
      for status, n in pairs(counted) do
         total[status] = (total[status] or 0) + n
      end
   end
   local parts = {}
   for status, n in pairs(total) do
      table.insert(parts, string.format('"%s":%d', status, n))
   end
   io.write(string.format(
      'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"statuses":{%s}}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.mean, summary.errors.connect, summary.errors.read,
      summary.errors.write, summary.errors.timeout, table.concat(parts, ",")))
end
