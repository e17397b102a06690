-- GET /v1/me with one access token: token verification plus the session read.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_ACCESS_TOKEN")
