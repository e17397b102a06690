-- Refresh chains: every request presents the refresh token that a previous
-- response returned, so each session is rotated in sequence and never twice at
-- once. BENCH_TOKENS_FILE holds one refresh token per line (one session per
-- connection); each thread takes BENCH_FAMILIES_PER_THREAD of them. wrk's Lua API
-- has no per-connection state, so the thread keeps its sessions in one pool: a
-- connection takes whichever token is waiting, and with as many sessions as
-- connections every session has at most one refresh in flight at any time.
-- A failed refresh loses its session and is counted in `failed`; a connection that
-- finds the pool empty sends a request bound to fail (counted in `starved`).
dofile(os.getenv("BENCH_DIR") .. "/common.lua")

function init(args)
  local per_thread = tonumber(os.getenv("BENCH_FAMILIES_PER_THREAD"))
  local file = assert(io.open(os.getenv("BENCH_TOKENS_FILE"), "r"))
  pool = {}
  local line_no = 0
  for line in file:lines() do
    if line_no >= id * per_thread and line_no < (id + 1) * per_thread then
      table.insert(pool, line)
    end
    line_no = line_no + 1
  end
  file:close()
  counts = {ok = 0, failed = 0, starved = 0}
  -- wrk 4 calls request() once on its first thread right after init, only to check
  -- that the request parses, and never sends it: that call must not use up a token.
  checking = id == 0
end

local headers = {["Content-Type"] = "application/json"}

function request()
  if checking then
    checking = false
    return wrk.format("POST", "/v1/auth/refresh", headers, '{"refresh_token":"' .. pool[#pool] .. '"}')
  end
  local token = table.remove(pool)
  if token == nil then
    count("starved")
    return wrk.format("POST", "/v1/auth/refresh", headers, "{}")
  end
  return wrk.format("POST", "/v1/auth/refresh", headers,
    '{"refresh_token":"' .. token .. '","delivery":"body"}')
end

function response(status, headers, body)
  local token = status == 200 and string.match(body, '"refresh_token":"([^"]+)"')
  if token then
    count("ok")
    table.insert(pool, token)
  else
    count("failed")
    -- Error bodies carry a code, never a token.
    count("failed_" .. status .. "_" .. (string.match(body, '"error":"([%w_]+)"') or "unknown"))
  end
end
