-- wrk script: deposits of 1 cent spread over the accounts that `just bench`
-- opened (ids 00000000-0000-4000-8000-0000000000NN, NN < ACCOUNTS), each
-- with a fresh transactionId: every request is a real append, none a replay.
local accounts = tonumber(os.getenv("ACCOUNTS") or "64")
local threads = {}
local counter = 0

function setup(thread)
   thread:set("thread_id", #threads)
   table.insert(threads, thread)
end

function init(args)
   counter = 0
end

function request()
   counter = counter + 1
   local account = string.format("00000000-0000-4000-8000-%012x", counter % accounts)
   -- thread_id is set per thread by setup(): ids never collide across threads.
   local tx = string.format("%08x-0000-4000-8000-%012x", thread_id, counter)
   return wrk.format("PUT", "/api/account/" .. account .. "/deposit?amount=1&transactionId=" .. tx)
end

function done(summary, latency, requests)
   local errors = summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout
   io.write(string.format("non-204 answers or socket errors: %d\n", errors))
end
