-- Password logins (a login flood): each thread cycles through the accounts in
-- BENCH_USERS_FILE (one login name per line, all with BENCH_PASSWORD), starting
-- at its own offset. Responses are counted by status: only 200s are logins; 503
-- means the hash queue was full.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")

function init(args)
  users = {}
  for line in assert(io.open(os.getenv("BENCH_USERS_FILE"), "r")):lines() do
    table.insert(users, line)
  end
  next_user = (id * 7919) % #users
  password = os.getenv("BENCH_PASSWORD")
end

local headers = {["Content-Type"] = "application/json"}

function request()
  next_user = next_user % #users + 1
  return wrk.format("POST", "/v1/auth/login", headers,
    '{"login":"' .. users[next_user] .. '","password":"' .. password .. '","delivery":"body"}')
end

function response(status, headers, body)
  count("status_" .. status)
end
