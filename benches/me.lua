-- GET /v1/me with one access token (verification + session lookup per request).
local token = os.getenv("BENCH_ACCESS_TOKEN")
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer " .. token

function response(status, headers, body)
  if status ~= 200 then errors = (errors or 0) + 1 end
end
