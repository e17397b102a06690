-- A plain GET of the URL wrk is given (GET /healthz), reported like the others.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")
