-- Refresh chains: every connection owns refresh-token families and rotates them in
-- a loop, each request presenting the token the previous response returned.
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local per_thread = tonumber(os.getenv("BENCH_TOKENS_PER_THREAD"))
  local file = io.open(os.getenv("BENCH_TOKENS_FILE"), "r")
  pool = {}
  local line_no = 0
  for line in file:lines() do
    if line_no >= id * per_thread and line_no < (id + 1) * per_thread then
      table.insert(pool, line)
    end
    line_no = line_no + 1
  end
  file:close()
  failures = 0
end

function request()
  local token = table.remove(pool)
  if token == nil then
    -- Every family failed; keep wrk busy with a request that is counted as an error.
    return wrk.format("POST", "/v1/auth/refresh", {["Content-Type"] = "application/json"}, "{}")
  end
  return wrk.format("POST", "/v1/auth/refresh", {["Content-Type"] = "application/json"},
    '{"refresh_token":"' .. token .. '","delivery":"body"}')
end

function response(status, headers, body)
  if status == 200 then
    local token = string.match(body, '"refresh_token":"([^"]+)"')
    table.insert(pool, token)
  else
    failures = failures + 1
    if failures <= 3 then io.stderr:write("refresh failed: " .. status .. " " .. body .. "\n") end
  end
end

function done(summary, latency, requests)
  local failed = 0
  for _, t in ipairs(threads) do failed = failed + t:get("failures") end
  io.write(string.format("refresh failures: %d\n", failed))
end
