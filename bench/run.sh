#!/usr/bin/env bash
# Side-by-side benchmarks: fraudlake against its peers, same data, same machine, one run.
#
#   bench/run.sh [SECTION...]      # sections a..f (default: all); `make bench` builds first
#
# Sections: a simulate, b ingest, c offline features (vs DuckDB, pandas), d handbook match,
# e online/offline parity, f online engine (vs the seed's Python feature code), g training
# (vs Python XGBoost on the same rows) and model quality (vs the handbook's published results).
# c..f run on the lake section b ingests, so b runs whenever one of them is asked for; d needs
# the pandas reference of c, and e needs the features c builds.
#
# Environment:
#   FRAUDLAKE_BIN        the binary (default ${CARGO_TARGET_DIR:-~/.cache/fraudlake-target}/release/fraudlake)
#   PEERS_VENV           the peers' venvs (default ~/.cache/fraudlake-peers; create: ../shared/peers/setup.sh)
#   FRAUDLAKE_HANDBOOK   the handbook file (default ../shared/data/handbook/transactions.parquet)
#   BENCH_ONLINE_PEER=0  skip the Python online peer of section f (about half a minute)
#   BENCH_KEEP=1         keep the work directory (lakes, Parquet outputs, logs)
#   TMPDIR               where the work directory goes (needs about 1 GB)
#
# Benchmarks report, they do not assert: a missed goal is printed, not an error. The exit
# status is non-zero only when the script itself cannot run (no binary, no python3).
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
SECTIONS=${*:-a b c d e f g}
for s in $SECTIONS; do
  case "$s" in a|b|c|d|e|f|g) ;; *) echo "error: unknown section '$s' (a..g)" >&2; exit 2 ;; esac
done
want() { case " $SECTIONS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
WANT_HB_LAKE=0; for s in b c d e f g; do want "$s" && WANT_HB_LAKE=1; done
WANT_FEATURES=0; for s in c d e g; do want "$s" && WANT_FEATURES=1; done
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
cleanup() {
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
verdict() { if "$@"; then echo met; else echo missed; fi; }

# jget FILE KEY[|KEY...]: a value from a JSON document (the first of the alternative dotted
# paths present; list indexes are numbers), empty when absent. Text before the JSON is skipped.
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

    header "g. model quality (fraudlake defaults) vs the handbook's published XGBoost" "handbook"
    run quality_ch3 "$BIN" --lake "$LAKE_HB" --quiet train --train-start 2018-07-25 --no-register --format json
    for m in auc_roc:0.862 average_precision:0.639 card_precision_at_100:0.273; do
      k=${m%%:*}; ref=${m##*:}
      val=$(jget "$WORK/quality_ch3.out" "metrics.$k")
      line "ch. 3 protocol: $k" "$(fmt "$val" 3)" "$ref" "$(ratio "$val" "$ref" 3)" ""
      row "g. quality ch. 3" "$k" "$(fmt "$val" 3)" "$ref" "$(ratio "$val" "$ref" 3)" "—"
    done
    run quality_ch5 "$BIN" --lake "$LAKE_HB" --quiet train --train-start 2018-08-15 --folds 4 --format json
    for m in auc_roc:0.872 average_precision:0.687 card_precision_at_100:0.303; do
      k=${m%%:*}; ref=${m##*:}
      mean=$(jget "$WORK/quality_ch5.out" "0.$k.mean"); std=$(jget "$WORK/quality_ch5.out" "0.$k.std")
      line "ch. 5 protocol (4 folds): $k" "$(fmt "$mean" 3) ± $(fmt "$std" 3)" "$ref" "$(ratio "$mean" "$ref" 3)" ""
      row "g. quality ch. 5" "$k (mean ± std, 4 folds)" "$(fmt "$mean" 3) ± $(fmt "$std" 3)" "$ref ± 0.01" "$(ratio "$mean" "$ref" 3)" "—"
    done
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
