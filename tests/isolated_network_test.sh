#!/usr/bin/env bash
# --isolated-network against a test host of our own: a network namespace "sbtest-PID" joined to
# this machine by a veth pair (10.213.0.1 here, 10.213.0.2 there), with listeners we start. The
# payload must reach 10.213.0.2 through pasta, and must not reach this machine's own addresses
# (10.213.0.1), a metadata stand-in (169.254.169.254, which we put on the test host: a leak would
# land there, nowhere else), this machine's 127.0.0.1 listener, abstract sockets or /proc/net.
# No traffic goes to any address this script did not create. Needs root (ip netns).
# Usage: tests/isolated_network_test.sh SANDBOX_BINARY VENV
# Ends with the line "N passed, N failed, N skipped".
set -u
SB=$1
VENV=$2
. "$(dirname "$0")/lib.sh"
plan 10
NS=sbtest-$$
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sandbox-isolated-XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  ip route del 169.254.169.254/32 via 10.213.0.2 2>/dev/null
  ip route del local 10.213.77.0/24 dev lo table local 2>/dev/null
  ip netns del "$NS" 2>/dev/null
  ip link del "veth-$$" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
if [ "$(id -u)" != 0 ]; then
  for i in $(seq 10); do skip "isolated network check $i" "a test host (ip netns, veth) needs root"; done
  finish; exit
fi
if ! command -v pasta >/dev/null; then
  for i in $(seq 10); do skip "isolated network check $i" "pasta is not installed (apt-get install passt; .ci/packages has it)"; done
  finish; exit
fi
ip netns add "$NS" && ip link add "veth-$$" type veth peer name eth0 netns "$NS" &&
  ip addr add 10.213.0.1/24 dev "veth-$$" && ip link set "veth-$$" up &&
  ip -n "$NS" addr add 10.213.0.2/24 dev eth0 && ip -n "$NS" addr add 169.254.169.254/32 dev eth0 &&
  ip -n "$NS" link set eth0 up && ip -n "$NS" link set lo up &&
  ip -n "$NS" route add 10.213.0.0/24 dev eth0 2>/dev/null
ip route add 169.254.169.254/32 via 10.213.0.2 2>/dev/null  # the stand-in is reached through the test host only
# an AnyIP range of this machine (a local route, no interface address): this machine too
ip route add local 10.213.77.0/24 dev lo table local
# listeners: a web server on the test host (and its metadata stand-in), and one on this machine's
# 10.213.0.1 and 127.0.0.1 that logs every contact
mkdir -p "$TMP/www" && echo "test host says hi" > "$TMP/www/index.html"
ip netns exec "$NS" python3 -m http.server 8080 --bind 0.0.0.0 --directory "$TMP/www" >"$TMP/testhost.log" 2>&1 &
PIDS+=($!)
python3 - "$TMP/contacts.log" <<'PY' &
import socket, sys, threading
log = open(sys.argv[1], "a", buffering=1)
def serve(family, address):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(address); s.listen(8)
    while True:
        c, peer = s.accept(); log.write(f"{address} from {peer}\n"); c.close()
for address in (("10.213.0.1", 8081), ("127.0.0.1", 8081), ("10.213.77.9", 8081)):
    threading.Thread(target=serve, args=(socket.AF_INET, address), daemon=True).start()
a = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); a.bind("\0sandbox-isolated-test"); a.listen(8)
def abstract():
    while True:
        c, _ = a.accept(); log.write("abstract\n"); c.close()
threading.Thread(target=abstract, daemon=True).start()
threading.Event().wait()
PY
PIDS+=($!)
for _ in $(seq 50); do ip netns exec "$NS" python3 -c 'import socket; socket.create_connection(("10.213.0.2", 8080), 1)' 2>/dev/null && break; sleep 0.1; done

run() { "$SB" run --no-apparmor --venv "$VENV" --isolated-network --json --timeout 30 --code "$1" 2>/dev/null; }
stdout_of() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])["stdout"], end="")' "$1" 2>/dev/null; }
out=$(stdout_of "$(run 'import urllib.request; print(urllib.request.build_opener(urllib.request.ProxyHandler({})).open("http://10.213.0.2:8080/index.html", timeout=10).read().decode(), end="")')")
check "isolated network: the payload reaches a server on the test host through pasta" test "$out" = "test host says hi"
probe='
import errno, socket, sys
family = socket.AF_UNIX if sys.argv[1] == "abstract" else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM); s.settimeout(3)
try:
    s.connect("\0sandbox-isolated-test" if family == socket.AF_UNIX else (sys.argv[1], int(sys.argv[2])))
    print("REACHED")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))'
for target in "10.213.0.1 8081 this machine's own address" "10.213.77.9 8081 an AnyIP address of this machine (local route)" \
  "169.254.169.254 8080 the metadata stand-in" \
  "127.0.0.1 8081 this machine's 127.0.0.1 listener" "abstract 0 this machine's abstract socket"; do
  set -- $target
  code="import sys; sys.argv = ['', '$1', '$2']
$probe"
  out=$(stdout_of "$(run "$code")")
  check "isolated network: ${*:3} is unreachable ($out)" test -n "$out" -a "$out" != REACHED
done
sleep 0.3
check "isolated network: none of this machine's listeners was contacted" test ! -s "$TMP/contacts.log"
check "isolated network: the test host's server saw no request for the metadata stand-in" \
  bash -c '! grep -q "169.254" "$1"' _ "$TMP/testhost.log"
out=$(stdout_of "$(run 'print(sum(1 for l in open("/proc/net/tcp").read().splitlines()[1:] if l.split()[1].endswith(":1F91")))')")
check "isolated network: /proc/net/tcp shows none of this machine's listeners (port 8081)" test "$out" = 0
before=$(pgrep -c -x pasta || true)
for _ in 1 2 3; do run 'print(1)' >/dev/null; done
check "isolated network: no pasta is left after the runs" test "$(pgrep -c -x pasta || true)" = "$before"
finish
