# The cgroup v2 layer, in the AppArmor VM (its guest mounts cgroup2 with every controller; this
# host and CI's have cgroup v1 only). Sourced by tests/apparmor_in_vm.sh, in the same boot and
# tally; needs SB, VENV, T, TEST_USER and, for the unprivileged part, STAGE (its sandbox and venv).
# The VM's command runs in the root cgroup; the test builds what systemd's Delegate=yes gives a
# service: a parent marked delegated (trusted.delegate=1) with controllers for its children, and a
# subgroup holding the service's own processes (here: this shell). Nothing runs on the host.
CG=/sys/fs/cgroup
CG_TESTS=17
json_get() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2], {"d": d}))' "$@" 2>/dev/null; }
runs_left() { find "$1" -maxdepth 1 -name 'sandbox-*' -type d | wc -l; }

if [ ! -e "$CG/cgroup.subtree_control" ] || ! grep -q memory "$CG/cgroup.subtree_control"; then
  for i in $(seq 1 $CG_TESTS); do skip "cgroup: layer test $i" "no cgroup v2 with controllers in this guest"; done
  return 0 2>/dev/null || exit 0
fi

out=$("$SB" --no-apparmor --venv "$VENV" 2>&1 | grep '^# cgroup:')
check "cgroup: in the root cgroup the layer is not in force, and the header says why" grep -q 'not in force: this process runs in the root cgroup' <<<"$out"

# A delegated service: sbx-svc (controllers on, marked), sbx-svc/host (this shell).
SVC=$CG/sbx-svc
mkdir "$SVC" "$SVC/host"
echo "+memory +pids +cpu" >"$SVC/cgroup.subtree_control"
python3 -c 'import os, sys; os.setxattr(sys.argv[1], "trusted.delegate", b"1")' "$SVC"
echo $$ >"$SVC/host/cgroup.procs"
out=$("$SB" --no-apparmor --venv "$VENV" 2>&1 | grep '^# cgroup:')
check "cgroup: under a delegated parent (Delegate=yes), detected and in force" grep -q "in force, one per run in $SVC" <<<"$out"

cgrun() { "$SB" run --no-apparmor --venv "$VENV" --json "$@" 2>/dev/null; }
out=$(cgrun --memory-mb 64 --code 'import mmap
m = mmap.mmap(-1, 700 << 20)  # shared and anonymous: RLIMIT_DATA does not count it
for i in range(0, 700 << 20, 4096): m[i] = 1')
check "cgroup: 700 MiB of shared mmap under --memory-mb 64 is OOM-killed (limit_hit memory, peak $(json_get "$out" 'd["memory_peak_bytes"]'))" \
  test "$(json_get "$out" 'd["limit_hit"] == "memory" and 0 < d["memory_peak_bytes"] <= 64 << 20 and "memory:cgroup" in d["layers"] and "cgroup" in d["layers"]')" = True
out=$(cgrun --memory-mb 64 --code 'import os
fd = os.memfd_create("bomb")
for _ in range(700): os.write(fd, b"x" * (1 << 20))')
check "cgroup: 700 MiB through memfd_create under --memory-mb 64 is OOM-killed (limit_hit memory)" test "$(json_get "$out" 'd["limit_hit"]')" = memory
out=$(cgrun --memory-mb 128 --code 'f = open("/tmp/fill", "wb")
for _ in range(512): f.write(b"x" * (1 << 20)); f.flush()')
check "cgroup: filling /tmp (a 512 MiB tmpfs) under --memory-mb 128 is stopped at the memory limit" test "$(json_get "$out" 'd["limit_hit"]')" = memory
out=$(cgrun --max-processes 20 --code "$(fork_probe 200)")
check "cgroup: as root, --max-processes 20 (pids.max) caps a fork bomb: 18 forks (pid 1 and the payload are the others)" test "$(json_get "$out" 'd["stdout"]')" = 18
out=$(cgrun --cpus 0.5 --code 'import time
end = time.monotonic() + 2
while time.monotonic() < end: pass')
check "cgroup: --cpus 0.5 (cpu.max) holds a spinning payload to about half a CPU ($(json_get "$out" 'round(d["cpu_seconds"] / d["duration_seconds"], 2)'))" \
  test "$(json_get "$out" 'd["cpu_seconds"] is not None and d["cpu_seconds"] / d["duration_seconds"] < 0.7')" = True
out=$(cgrun --code 'print(open("/proc/self/cgroup").read().strip())')
check "cgroup: the payload's cgroup is the run's own (its cgroup namespace shows it beside the host's)" \
  bash -c 'grep -q "^0::/../sandbox-" <<<"$1"' _ "$(json_get "$out" 'd["stdout"]')"
# A session under the cgroup layer: a cell that holds 700 MiB of shared memory under --memory-mb 64
# is stopped by the kernel (limit_hit memory, its word), and each cell reports the session's peak.
out=$(printf '%s\n' '{"code": "x = 1"}' '{"code": "import mmap\nm = mmap.mmap(-1, 700 << 20)\nfor i in range(0, 700 << 20, 4096): m[i] = 1"}' |
  "$SB" session --no-apparmor --venv "$VENV" --memory-mb 64 2>/dev/null)
check "cgroup: a session's cell past --memory-mb is stopped by the kernel (limit_hit memory) and cells report memory_peak_bytes" \
  python3 -c 'import json,sys; l=[json.loads(x) for x in sys.argv[1].splitlines()]; assert 0 < l[0]["memory_peak_bytes"] <= 64 << 20 and l[-1]["limit_hit"] == "memory" and l[-1]["session_ended"], l' "$out"
# A warm pool under the cgroup layer: each slot is a run with its cgroup (the preload counts in it);
# a warm run past --memory-mb is stopped by the kernel. One request at a time: requests run
# concurrently, and a second one sent at once could take the slot first.
check "cgroup: a pool's warm runs have the layer (memory_peak_bytes) and one past --memory-mb is stopped by the kernel" python3 -c '
import json, subprocess, sys, time
server = subprocess.Popen([sys.argv[1], "serve", "--no-apparmor", "--venv", sys.argv[2], "--memory-mb", "64", "--no-self-test",
                           "--pool", "1", "--preload", "json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
def ask(request):
    server.stdin.write((json.dumps(request) + "\n").encode())
    server.stdin.flush()
    return json.loads(server.stdout.readline())["result"]
small = ask({"id": 1, "op": "run", "code": "print(1)"})
for attempt in range(600):  # the slot it used is replaced (health says when)
    if ask({"id": "h%d" % attempt, "op": "health"})["pool"]["ready"] == 1:
        break
    time.sleep(0.1)
big = ask({"id": 2, "op": "run", "code": "import mmap\nm = mmap.mmap(-1, 700 << 20)\nfor i in range(0, 700 << 20, 4096): m[i] = 1"})
server.stdin.close()
assert server.wait(timeout=120) == 0
assert small["warm"] and "cgroup" in small["layers"] and 0 < small["memory_peak_bytes"] <= 64 << 20, small
assert big["warm"] and big["limit_hit"] == "memory", big' "$SB" "$VENV"
check "cgroup: every run's cgroup is removed once the run is over" test "$(runs_left "$SVC")" = 0

# Host death: SIGKILLed hosts leave empty cgroups at most, and the next host's first run sweeps them.
for i in 1 2 3 4 5; do
  "$SB" run --no-apparmor --venv "$VENV" --code 'import time; time.sleep(30)' >/dev/null 2>&1 &
  sleep 1.5
  kill -KILL $! 2>/dev/null
  wait $! 2>/dev/null
done
sleep 1
busy=$(for d in "$SVC"/sandbox-*; do [ -d "$d" ] && grep -q 'populated 1' "$d/cgroup.events" && echo "$d"; done | wc -l)
check "cgroup: after 5 host SIGKILLs no run's cgroup holds a process" test "$busy" = 0
cgrun --code 1 >/dev/null
check "cgroup: ... and the next host's first run sweeps their cgroups away" test "$(runs_left "$SVC")" = 0

# Configured parents.
PLAIN=$CG/sbx-plain
mkdir "$PLAIN"
echo "+memory" >"$PLAIN/cgroup.subtree_control"
out=$("$SB" run --no-apparmor --venv "$VENV" --cgroup-parent "$PLAIN" --code 1 2>&1); rc=$?
check "cgroup: --cgroup-parent without pids handed down is refused (exit 2), naming the fix" \
  bash -c 'test "$1" = 2 && grep -q "lacks pids" <<<"$2"' _ "$rc" "$out"
echo "+pids" >"$PLAIN/cgroup.subtree_control"
out=$(cgrun --cgroup-parent "$PLAIN" --require-cgroup --memory-mb 32 --code 'x = bytearray(200 << 20)')
check "cgroup: --cgroup-parent DIR (empty, with memory and pids) is used, --require-cgroup is satisfied" \
  test "$(json_get "$out" 'd["limit_hit"] == "memory" and "cgroup" in d["layers"]')" = True
out=$("$SB" run --no-apparmor --venv "$VENV" --cgroup-parent "$PLAIN" --cpus 1 --code 1 2>&1)
check "cgroup: --cpus under a parent without the cpu controller is refused, naming it" grep -q 'cpu controller' <<<"$out"

# A root caller's --user where root has CAP_SYS_RESOURCE (the guest's): prlimit directly, as ever.
if id "$TEST_USER" >/dev/null 2>&1; then
  out=$(cgrun --user "$TEST_USER" --max-open-files 77 --code 'import os, resource; print(os.stat("/proc/self").st_uid != 0, resource.getrlimit(resource.RLIMIT_NOFILE))')
  check "--user $TEST_USER (root with CAP_SYS_RESOURCE): the payload is not host root and has its limits" \
    test "$(json_get "$out" 'd["stdout"]')" = "True (77, 77)"
else
  skip "--user: the payload is not host root and has its limits" "no user $TEST_USER in the guest"
fi

# An unprivileged service with a delegated subtree (chown, as systemd's Delegate=yes does for User=).
if [ -n "${STAGE:-}" ] && [ -x "$STAGE/sandbox" ] && id "$TEST_USER" >/dev/null 2>&1; then
  USVC=$CG/sbx-user
  mkdir "$USVC" "$USVC/host"
  echo "+memory +pids" >"$USVC/cgroup.subtree_control"
  # systemd marks both: trusted.* for root, user.* for the unprivileged service to read.
  python3 -c 'import os, sys; [os.setxattr(sys.argv[1], n, b"1") for n in ("trusted.delegate", "user.delegate")]' "$USVC"
  chown "$TEST_USER" "$USVC" "$USVC/cgroup.procs" "$USVC/cgroup.subtree_control" "$USVC/cgroup.threads" \
    "$USVC/host" "$USVC/host/cgroup.procs" "$USVC/host/cgroup.threads"
  out=$( (echo "$BASHPID" >"$USVC/host/cgroup.procs" && cd /tmp && exec runuser -u "$TEST_USER" -- env -i PATH=/usr/bin:/bin HOME=/tmp TMPDIR=/tmp \
    "$STAGE/sandbox" run --no-apparmor --venv "$STAGE/venv" --json --max-processes 10 --code "$(fork_probe 100)") 2>/dev/null)
  check "cgroup: $TEST_USER under a delegated subtree gets the layer: --max-processes 10 (pids.max) allows 8 forks" \
    test "$(json_get "$out" '"cgroup" in d["layers"] and d["stdout"] == "8\n"')" = True
  [ "$(json_get "$out" '"cgroup" in d["layers"]')" = True ] || echo "#   $(head -c 600 <<<"$out")"
  check "cgroup: ... and its run's cgroup is removed" test "$(runs_left "$USVC")" = 0
else
  skip "cgroup: $TEST_USER under a delegated subtree gets the layer" "no staged copy or no user $TEST_USER"
  skip "cgroup: ... and its run's cgroup is removed" "no staged copy or no user $TEST_USER"
fi
