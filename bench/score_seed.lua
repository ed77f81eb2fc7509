-- wrk script for the seed's FastAPI stack (../shared/peers/fastapi_seed/app.py), used by
-- section h of bench/run.sh: the very requests of bench/score_fraudlake.lua (same ids, times,
-- customers, terminals, amounts, same RESULT line), with the time field named `ts` as the seed's
-- app and its own score.lua have it. The seed's score.lua reports neither non-2xx answers nor a
-- parseable line, hence this script.
--
--   wrk -t2 -c32 -d60s --latency -s bench/score_seed.lua http://127.0.0.1:18001
TS_FIELD = "ts"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
dofile(here .. "score_fraudlake.lua")
