#!/usr/bin/env bash
# Loads a drift report in real headless Chromium and checks it the way a person would see it.
#
#   chromium_check.sh [--expand] REPORT.html OUT.png [EXPECTED_SVGS]
#   chromium_check.sh --page URL OUT.png        (any page: (a), (b) and CHECK_EVAL only)
#
#  (a) the page loads with no JavaScript error (uncaught exception or promise rejection,
#      console.error / console.assert, a browser-side console error such as "Failed to load
#      resource" or a Content-Security-Policy violation), no failed request (network error,
#      blocked request, HTTP status >= 400), no alert/confirm dialog and no renderer crash;
#  (b) a full-page PNG screenshot, 1280 px wide (at least 2400 px tall), is written to OUT.png;
#  (c) the DOM after load has the columns table (id="columns-table") with at least one row, and
#      exactly EXPECTED_SVGS `<svg` charts (when not given: at least one chart per table row),
#      each with role="img".
# --expand opens every <details> before the screenshot (the charts of columns without drift are
# collapsed on the page).
#
# Chromium is driven over the DevTools protocol on --remote-debugging-pipe by a small python3
# (standard library only) client, since Chromium's --enable-logging output neither tells
# console.error from console.log nor reports failed requests. Host resolution is mapped to
# NOTFOUND (localhost excepted), so a reference to any external host fails at once, without
# network traffic, and shows up as a failed request.
#
# Environment: CHROMIUM (browser binary; default: chromium, chromium-browser or google-chrome
# on PATH), CHECK_TIMEOUT (seconds for the whole browser run, default 90), CHECK_WIDTH (1280),
# CHECK_MIN_HEIGHT (2400), CHECK_MEDIA (set to "print" to lay the page out for printing).
# CHECK_EVAL: a JavaScript expression run in the page after it settled (a promise is awaited),
# to act on the page as a person would (fill a field, click); its value is printed as
# "chromium_check: eval: VALUE" and written to OUT.eval.txt, and an exception in it fails.
# Exit status: 0 when every check passes; 1 when a check fails (a failed DOM check leaves the
# DOM beside the screenshot as OUT.dom.html); 2 on a usage or setup error.
set -euo pipefail

die() { echo "chromium_check: $*" >&2; exit 2; }
fail() { echo "chromium_check: FAIL: $*" >&2; exit 1; }

expand=0
page=0
if [[ ${1:-} == --expand ]]; then expand=1; shift; fi
if [[ ${1:-} == --page ]]; then page=1; shift; fi
[[ $# -ge 2 && $# -le 3 ]] || die "usage: $0 [--expand] REPORT.html OUT.png [EXPECTED_SVGS] | --page URL OUT.png"
report=$1
out=$2
expected=${3:-}
[[ -z $expected || $expected =~ ^[0-9]+$ ]] || die "EXPECTED_SVGS must be a number, got '$expected'"
if [[ $page -eq 1 ]]; then
  [[ $report =~ ^https?://(127\.0\.0\.1|localhost)[:/] ]] || die "--page takes a loopback http URL, got '$report'"
else
  [[ -f $report && -r $report ]] || die "no readable report at '$report'"
  [[ -s $report ]] || fail "report '$report' is empty"
fi
out_dir=$(dirname -- "$out")
[[ -d $out_dir ]] || die "output directory '$out_dir' does not exist"

browser=${CHROMIUM:-}
if [[ -z $browser ]]; then
  for candidate in chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null 2>&1; then browser=$(command -v "$candidate"); break; fi
  done
fi
if [[ -z $browser ]] || ! command -v "$browser" >/dev/null 2>&1; then
  die "no Chromium found: install Debian's package (apt-get install -y chromium) or set CHROMIUM"
fi
command -v python3 >/dev/null 2>&1 || die "python3 is needed to speak the DevTools protocol"
timeout_s=${CHECK_TIMEOUT:-90}
[[ $timeout_s =~ ^[0-9]+$ && $timeout_s -gt 0 ]] || die "CHECK_TIMEOUT must be a positive number of seconds"

work=$(mktemp -d "${TMPDIR:-/tmp}/chromium_check.XXXXXX")
cleanup() {
  # The browser runs in its own process group, whose id the client writes down: end it if the
  # client could not (killed by the timeout).
  if [[ -s $work/browser.pgid ]]; then
    kill -KILL -- "-$(cat "$work/browser.pgid")" 2>/dev/null || true
  fi
  rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ $page -eq 1 ]]; then report_abs=$report; else report_abs=$(realpath -- "$report"); fi
rm -f -- "$out" "$out.eval.txt"

set +e
timeout --kill-after=5 "$timeout_s" python3 - "$browser" "$report_abs" "$out" "$work" "$expand" \
  "${CHECK_WIDTH:-1280}" "${CHECK_MIN_HEIGHT:-2400}" "$timeout_s" "${CHECK_MEDIA:-}" <<'PYTHON'
import base64, fcntl, json, os, pathlib, select, signal, subprocess, sys, time

browser, path, out, work, expand, width, min_height, budget, media = sys.argv[1:10]
# percent-encoded: spaces, #, ? stay in the path; a loopback URL (--page) is taken as it is
url = path if path.startswith(("http://", "https://")) else pathlib.Path(path).as_uri()
check_eval = os.environ.get("CHECK_EVAL", "")
expand, width, min_height = expand == "1", int(width), int(min_height)
deadline = time.monotonic() + max(5.0, float(budget) - 5.0)
problems, warnings = [], []


class Setup(Exception):
    pass


class Timeout(Setup):
    pass


def on_term(signum, frame):
    raise SystemExit(3)


signal.signal(signal.SIGTERM, on_term)

# DevTools pipe: the browser reads commands on fd 3 and writes replies and events on fd 4,
# each message NUL-terminated JSON.
cmd_r, cmd_w = os.pipe()
evt_r, evt_w = os.pipe()
hi = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (cmd_r, cmd_w, evt_r, evt_w)]
for fd in (cmd_r, cmd_w, evt_r, evt_w):
    os.close(fd)
cmd_r, cmd_w, evt_r, evt_w = hi
os.dup2(cmd_r, 3)
os.dup2(evt_w, 4)
args = [
    browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions",
    "--disable-default-apps", "--disable-quic", "--disable-crash-reporter", "--disable-breakpad", "--mute-audio", "--hide-scrollbars",
    "--force-device-scale-factor=1", "--lang=en-US",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    f"--user-data-dir={work}/profile", f"--window-size={width},{min_height}",
    "--remote-debugging-pipe", "about:blank",
]
log = open(os.path.join(work, "browser.log"), "wb")
proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                        pass_fds=(3, 4), start_new_session=True)
with open(os.path.join(work, "browser.pgid"), "w") as f:
    f.write(str(proc.pid))
for fd in (3, 4, cmd_r, evt_w):
    os.close(fd)

buf, next_id, requests = b"", 0, {}
state = {"loaded": False, "inflight": set(), "last_event": time.monotonic()}


def send(method, params=None, session=None):
    global next_id
    next_id += 1
    msg = {"id": next_id, "method": method, "params": params or {}}
    if session:
        msg["sessionId"] = session
    os.write(cmd_w, json.dumps(msg).encode() + b"\0")
    return next_id


def recv(timeout):
    """One message, or None when none came within timeout seconds."""
    global buf
    end = min(deadline, time.monotonic() + timeout)
    while b"\0" not in buf:
        left = end - time.monotonic()
        if left <= 0:
            if time.monotonic() >= deadline:
                raise Timeout("timed out waiting for the browser")
            return None
        ready, _, _ = select.select([evt_r], [], [], left)
        if ready:
            chunk = os.read(evt_r, 1 << 20)
            if not chunk:
                raise Setup(f"the browser closed the DevTools pipe (exit status {proc.poll()})")
            buf += chunk
    msg, buf = buf.split(b"\0", 1)
    return json.loads(msg)


def where(d):
    src, line = d.get("url") or "", d.get("lineNumber")
    if not src:
        return ""
    return f" ({src}:{line + 1})" if line is not None else f" ({src})"


def remote_text(arg):
    if "value" in arg:
        return str(arg["value"])
    return arg.get("description") or arg.get("unserializableValue") or arg.get("type", "?")


def on_event(msg):
    method, p = msg.get("method"), msg.get("params", {})
    state["last_event"] = time.monotonic()
    if method == "Runtime.exceptionThrown":
        d = p.get("exceptionDetails", {})
        desc = (d.get("exception") or {}).get("description") or ""
        text = d.get("text", "Uncaught")
        problems.append(f"JS exception: {text} {desc.splitlines()[0] if desc else ''}".strip() + where(d))
    elif method == "Runtime.consoleAPICalled":
        text = " ".join(remote_text(a) for a in p.get("args", []))
        if p.get("type") in ("error", "assert"):
            problems.append(f"console.{p['type']}: {text}")
        elif p.get("type") == "warning":
            warnings.append(f"console.warn: {text}")
    elif method == "Log.entryAdded":
        e = p.get("entry", {})
        text = f"console {e.get('level')} [{e.get('source')}]: {e.get('text')}{where(e)}"
        if e.get("level") == "error":
            problems.append(text)
        elif e.get("level") == "warning":
            warnings.append(text)
    elif method == "Network.requestWillBeSent":
        requests[p["requestId"]] = p.get("request", {}).get("url", "?")
        state["inflight"].add(p["requestId"])
    elif method == "Network.responseReceived":
        r = p.get("response", {})
        if int(r.get("status") or 0) >= 400:
            problems.append(f"failed request: HTTP {r.get('status')} {r.get('url')}")
    elif method == "Network.loadingFinished":
        state["inflight"].discard(p.get("requestId"))
    elif method == "Network.loadingFailed":
        state["inflight"].discard(p.get("requestId"))
        why = p.get("blockedReason") or p.get("corsErrorStatus", {}).get("corsError") or ""
        problems.append(f"failed request: {p.get('errorText')} {why} {requests.get(p.get('requestId'), '?')}".replace("  ", " "))
    elif method == "Page.loadEventFired":
        state["loaded"] = True
    elif method == "Page.javascriptDialogOpening":
        problems.append(f"JS dialog ({p.get('type')}): {p.get('message')}")
        send("Page.handleJavaScriptDialog", {"accept": False}, msg.get("sessionId"))
    elif method in ("Inspector.targetCrashed", "Target.targetCrashed"):
        problems.append("the page's renderer crashed")


def call(method, params=None, session=None, timeout=30.0):
    want = send(method, params, session)
    end = time.monotonic() + timeout
    while True:
        msg = recv(max(0.0, end - time.monotonic()))
        if msg is None:
            raise Setup(f"no reply to {method}")
        if msg.get("id") == want:
            if "error" in msg:
                raise Setup(f"{method} failed: {msg['error']}")
            return msg.get("result", {})
        if "method" in msg:
            on_event(msg)


def pump(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        msg = recv(end - time.monotonic())
        if msg and "method" in msg:
            on_event(msg)


code = 0
try:
    target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
    s = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network", "Inspector"):
        call(f"{domain}.enable", session=s)
    call("Network.setCacheDisabled", {"cacheDisabled": True}, s)
    metrics = {"width": width, "height": min_height, "deviceScaleFactor": 1, "mobile": False}
    call("Emulation.setDeviceMetricsOverride", metrics, s)
    if media:
        call("Emulation.setEmulatedMedia", {"media": media}, s)
    nav = call("Page.navigate", {"url": url}, s)
    if nav.get("errorText"):
        problems.append(f"navigation failed: {nav['errorText']}")
        raise Setup("the page did not load")
    while not state["loaded"]:
        msg = recv(1.0)
        if msg and "method" in msg:
            on_event(msg)
    # Settle: no request in flight and 500 ms without any event, for at most 30 s: room for a
    # loaded machine's slow page load, and for the steps below within the run's deadline.
    settle_end = min(deadline - 10, time.monotonic() + 30)
    while time.monotonic() < settle_end:
        msg = recv(0.1)
        if msg and "method" in msg:
            on_event(msg)
        quiet = time.monotonic() - state["last_event"] > 0.5
        if quiet and not state["inflight"]:
            break
    if state["inflight"]:
        problems.append("requests still pending after 30 s: " + ", ".join(requests.get(r, r) for r in state["inflight"]))
    if expand:
        call("Runtime.evaluate", {"expression": "document.querySelectorAll('details').forEach(d => d.open = true)"}, s)
        pump(0.3)
    if check_eval:
        got = call("Runtime.evaluate", {"expression": check_eval, "awaitPromise": True,
                                        "returnByValue": True}, s, timeout=60)
        if got.get("exceptionDetails"):
            d = got["exceptionDetails"]
            problems.append(f"CHECK_EVAL threw: {(d.get('exception') or {}).get('description') or d.get('text')}")
        value = str(got.get("result", {}).get("value", ""))
        with open(out + ".eval.txt", "w", encoding="utf-8") as f:
            f.write(value)
        print(f"chromium_check: eval: {value[:2000]}")
        pump(0.3)
    dom = call("Runtime.evaluate", {"expression": "document.documentElement.outerHTML", "returnByValue": True}, s)
    with open(os.path.join(work, "dom.html"), "w", encoding="utf-8") as f:
        f.write("<!DOCTYPE html>\n" + dom["result"].get("value", ""))
    size = call("Page.getLayoutMetrics", session=s).get("cssContentSize", {})
    height = min(16384, max(min_height, int(size.get("height", min_height) + 0.999)))
    call("Emulation.setDeviceMetricsOverride", dict(metrics, height=height), s)
    pump(0.3)
    shot = call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False}, s, timeout=60)
    with open(out, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    pump(0.2)  # anything the resize or the screenshot triggered
    print(f"chromium_check: screenshot {out} ({width}x{height})")
    try:
        call("Browser.close", timeout=5)
    except Setup:
        pass
except Setup as e:
    print(f"chromium_check: browser run failed: {e}", file=sys.stderr)
    code = 124 if isinstance(e, Timeout) else 2
finally:
    try:
        proc.wait(timeout=5 if code == 0 else 0.5)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the browser's own group: whatever is left of it
    except ProcessLookupError:
        pass
    proc.wait()
    os.unlink(os.path.join(work, "browser.pgid"))

for w in warnings:
    print(f"chromium_check: warning: {w}", file=sys.stderr)
for p in problems:
    print(f"chromium_check: {p}", file=sys.stderr)
if problems and code == 0:
    code = 1
sys.exit(code)
PYTHON
status=$?
set -e

if [[ $status -eq 124 || $status -eq 137 ]]; then
  fail "the page did not load and settle within CHECK_TIMEOUT=${timeout_s}s"
elif [[ $status -eq 1 ]]; then
  fail "console errors or failed requests while loading $report_abs (listed above)"
elif [[ $status -ne 0 ]]; then
  echo "--- last lines of the browser's log:" >&2
  tail -n 20 "$work/browser.log" >&2 2>/dev/null || true
  die "could not drive Chromium ($browser), status $status"
fi

# (b) the screenshot
[[ -s $out ]] || fail "no screenshot written to $out"
[[ $(head -c 8 "$out" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] || fail "$out is not a PNG"

if [[ $page -eq 1 ]]; then
  [[ -s $work/dom.html ]] || fail "no DOM was captured"
  echo "chromium_check: OK: $report_abs loaded with no console errors or failed requests; screenshot $out"
  exit 0
fi

# (c) the DOM after load
dom=$work/dom.html
[[ -s $dom ]] || fail "no DOM was captured"
fail_dom() { # keep the DOM beside the screenshot to look at
  cp -- "$dom" "${out%.png}.dom.html" && fail "$* (DOM after load: ${out%.png}.dom.html)"
}
count() { { grep -oE -- "$1" "$dom" || true; } | wc -l | tr -d ' '; }
grep -q 'id="columns-table"' "$dom" || fail_dom "the columns table (id=\"columns-table\") is missing"
rows=$(count '<tr class="(drifted|stable)"')
[[ $rows -ge 1 ]] || fail_dom "the columns table has no column rows"
svgs=$(count '<svg')
labelled=$(count '<svg[^>]* role="img"')
if [[ -n $expected ]]; then
  [[ $svgs -eq $expected ]] || fail_dom "expected $expected <svg> charts, found $svgs"
else
  [[ $svgs -ge $rows ]] || fail_dom "$rows columns but only $svgs <svg> charts"
fi
[[ $labelled -eq $svgs ]] || fail_dom "$((svgs - labelled)) of $svgs <svg> charts lack role=\"img\""

echo "chromium_check: OK: $rows columns, $svgs charts, no console errors or failed requests; screenshot $out"
