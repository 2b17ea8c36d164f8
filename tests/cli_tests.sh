#!/usr/bin/env bash
# Command-line tests of `sandbox run` and the self-test mode's argument handling.
# Usage: tests/cli_tests.sh SANDBOX_BINARY VENV
# Checks the file's header and README.md against --help when they lie beside this script.
# Ends with the line "N passed, N failed, N skipped".
set -u
SB=$1
VENV=$2
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
plan 148
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sandbox-cli-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
run() { "$SB" run --no-apparmor --venv "$VENV" "$@"; }
json_field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps(d[sys.argv[1]]))' "$1"; }

# Usage errors: exit 2, a message on stderr, nothing on stdout, nothing run.
usage_case() {
  local name=$1; shift
  local out err rc
  out=$("$SB" "$@" 2>"$TMP/err"); rc=$?
  if [ "$1" = run ] && printf '%s\n' "$@" | grep -qx -- --json; then
    # --json: the same message, also as one JSON error object on stdout
    check "usage: $name exits 2 with a message and a JSON error object on stdout" \
      python3 -c 'import json,sys; d=json.loads(sys.argv[1]); e=d["error"]; assert d["schema"] == 3 and e["exit_status"] == 2 and e["kind"] == "usage" and e["message"], d' "$out"
  else
    check "usage: $name exits 2 with a message and an empty stdout" \
      test "$rc" = 2 -a -z "$out" -a -s "$TMP/err"
  fi
}
usage_case "an unknown flag" run --no-apparmor --venv "$VENV" --frobnicate
usage_case "a missing value" run --no-apparmor --venv "$VENV" --code
usage_case "--code with --script" run --no-apparmor --venv "$VENV" --code 1 --script /mnt/a.py
usage_case "both network flags" run --no-apparmor --venv "$VENV" --enable-network --disable-network --code 1
usage_case "a profile with --no-apparmor" run --no-apparmor --apparmor-profile-name p --venv "$VENV" --code 1
usage_case "--script outside /mnt" run --no-apparmor --venv "$VENV" --script /etc/passwd
usage_case "--script through .." run --no-apparmor --venv "$VENV" --script /mnt/../etc/passwd
usage_case "a bad timeout" run --no-apparmor --venv "$VENV" --timeout -3 --code 1
usage_case "a zero timeout" run --no-apparmor --venv "$VENV" --timeout 0 --code 1
usage_case "--output without --json" run --no-apparmor --venv "$VENV" --mnt-dir "$TMP" --output a --code 1
usage_case "--output without --mnt-dir" run --no-apparmor --venv "$VENV" --json --output a --code 1
usage_case "--env without =" run --no-apparmor --venv "$VENV" --env FOO --code 1
usage_case "a run flag without 'run'" --no-apparmor --venv "$VENV" --json
usage_case "a malformed profile name" run --venv "$VENV" --apparmor-profile-name 'x{y' --code 1
usage_case "a nonexistent venv" run --no-apparmor --venv "$TMP/none" --code 1
usage_case "a mount dir outside the temp dir" run --no-apparmor --venv "$VENV" --mnt-dir /var --code 1
usage_case "the temp dir itself as mount dir" run --no-apparmor --venv "$VENV" --mnt-dir "${TMPDIR:-/tmp}" --code 1
ln -s /etc "$TMP/to-etc"
usage_case "a mount dir symlinked out of the temp dir" run --no-apparmor --venv "$VENV" --mnt-dir "$TMP/to-etc" --code 1
usage_case "a nonexistent mount dir" run --no-apparmor --venv "$VENV" --mnt-dir "$TMP/nope" --code 1
# $TMPDIR cannot widen what may be bound writable: not /, not a home or above one, sticky or the caller's.
for temp in / /home "$HOME"; do
  out=$(TMPDIR=$temp "$SB" run --no-apparmor --venv "$VENV" --mnt-dir "$HOME" --code 'print("ran")' 2>&1); rc=$?
  check "temp dir: TMPDIR=$temp is refused (exit 2) with the reason, nothing runs" \
    test "$rc" = 2 -a -n "$(grep -e 'the temp dir is /' -e 'home directory' -e 'nor yours' <<<"$out")" -a -z "$(grep -x ran <<<"$out")"
done

# Configuration from the environment.
# Messages name what the command line lacks, with the hint for this host.
out=$(env -u CODEEXEC_SANDBOX_VENV -u CODEEXEC_SANDBOX_AA_PROFILE_NAME "$SB" run --venv "$VENV" --code 1 2>&1); rc=$?
if [ ! -e /sys/module/apparmor/parameters/enabled ]; then
  check "config: --venv alone on a kernel without AppArmor names the profile and hints --no-apparmor (exit 2)" \
    test "$rc" = 2 -a -n "$(grep 'CODEEXEC_SANDBOX_AA_PROFILE_NAME is not set' <<<"$out")" -a -n "$(grep 'hint: this kernel has no AppArmor.*pass --no-apparmor' <<<"$out")" -a -z "$(grep 'CODEEXEC_SANDBOX_VENV is not set' <<<"$out")"
else
  check "config: --venv alone names the profile and says the two go together (exit 2)" \
    test "$rc" = 2 -a -n "$(grep 'CODEEXEC_SANDBOX_AA_PROFILE_NAME is not set' <<<"$out")" -a -n "$(grep 'only together' <<<"$out")"
fi
out=$(env -u CODEEXEC_SANDBOX_VENV "$SB" run --no-apparmor --code 1 2>&1); rc=$?
check "config: --no-apparmor without a venv hints --venv and not that two flags go together" \
  test "$rc" = 2 -a -n "$(grep 'pass --venv PATH' <<<"$out")" -a -z "$(grep 'together' <<<"$out")"
out=$("$SB" --no-apparmor run --venv "$VENV" --code 1 2>&1); rc=$?
check "config: 'run' after a flag says the subcommand comes first (exit 2)" \
  test "$rc" = 2 -a -n "$(grep "'run' is a subcommand and comes first" <<<"$out")"
out=$(TMPDIR="$TMP/no-such-dir" "$SB" --no-apparmor --venv "$VENV" 2>&1); rc=$?
check "config: a missing TMPDIR in self-test mode is named with a hint before any test runs" \
  test "$rc" = 125 -a -n "$(grep 'hint: the temp dir .*no-such-dir.* is not a directory' <<<"$out")" -a -z "$(grep '^1\.\.' <<<"$out")"
out=$(run --json --code 1 --timeout 0 2>/dev/null); rc=$?
check "json: a usage error is a JSON error object with kind, message, hint and the exit status" \
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); e=d["error"]; assert sys.argv[2] == "2" and set(d) == {"schema", "error"} and e["kind"] == "invalid_timeout" and "timeout" in e["message"] and "hint" in e and e["exit_status"] == 2, d' "$out" "$rc"
out=$("$SB" run --json --venv "$VENV" --apparmor-profile-name sandbox_cli_absent --code 1 2>/dev/null); rc=$?
check "json: a configuration error keeps stdout one JSON object (no profile text on stdout)" \
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["error"]["exit_status"] == int(sys.argv[2]) == 2, d' "$out" "$rc"
out=$(run --json --code 'print(1)' 2>/dev/null)
check "json: a run without a mount dir does not list disk-watch among its layers" \
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert "disk-watch" not in d["layers"] and "seccomp" in d["layers"], d' "$out"
out=$(run --json --mnt-dir "$(mkdir -p "$TMP/lay/mnt" && echo "$TMP/lay/mnt")" --code 'print(1)' 2>/dev/null)
check "json: a run with a mount dir lists disk-watch" \
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert "disk-watch" in d["layers"], d' "$out"
out=$(env -u CODEEXEC_SANDBOX_VENV -u CODEEXEC_SANDBOX_AA_PROFILE_NAME "$SB" run --code 1 2>&1); rc=$?
check "config: no venv configured names CODEEXEC_SANDBOX_VENV and exits 2" test "$rc" = 2 -a -n "$(grep CODEEXEC_SANDBOX_VENV <<<"$out")"
out=$(CODEEXEC_SANDBOX_VENV=$VENV "$SB" run --no-apparmor --code 'print("env venv")' 2>/dev/null)
check "config: --no-apparmor takes the venv from CODEEXEC_SANDBOX_VENV" test "$out" = "env venv"
out=$(CODEEXEC_SANDBOX_VENV=$VENV CODEEXEC_SANDBOX_AA_PROFILE_NAME=sandbox_test "$SB" run --venv "$VENV" --code 1 2>&1); rc=$?
check "config: --venv alone is ignored with a warning" grep -q "only count together" <<<"$out"
if [ ! -e /sys/module/apparmor/parameters/enabled ]; then
  check "config: a profile on a kernel without AppArmor is refused with exit 2 and says why" \
    test "$rc" = 2 -a -n "$(grep 'cannot be applied here' <<<"$out")"
else
  skip "config: a profile on a kernel without AppArmor is refused" "this kernel has AppArmor (tests/apparmor_in_vm.sh covers profiles)"
fi
out=$("$SB" run --no-apparmor --venv "$VENV" --code 1 2>&1 >/dev/null)
check "config: --no-apparmor says in one line that the AppArmor layer is off" test "$(grep -c 'AppArmor layer is OFF' <<<"$out")" = 1

# Exit statuses without --json.
run --code 'print("hi")' >"$TMP/out" 2>/dev/null; rc=$?
check "run: stdout passes through, exit 0" test "$rc" = 0 -a "$(cat "$TMP/out")" = hi
run --code 'import sys; sys.stderr.write("to err\n"); sys.exit(7)' 2>"$TMP/err" >/dev/null; rc=$?
check "run: the payload's exit status and stderr pass through" test "$rc" = 7 -a -n "$(grep 'to err' "$TMP/err")"
run --timeout 0.5 --code 'import time; time.sleep(20)' >/dev/null 2>&1; rc=$?
check "run: a timeout exits 124" test "$rc" = 124
run --code 'import os; os.kill(os.getpid(), 9)' >/dev/null 2>&1; rc=$?
check "run: death by SIGKILL exits 137" test "$rc" = 137
out=$(echo 'print(6 * 7)' | run 2>/dev/null)
check "run: without --code or --script the code is read from stdin" test "$out" = 42

# --json.
MNT=$TMP/mnt; mkdir "$MNT"; echo old > "$MNT/gone.txt"
out=$(run --json --mnt-dir "$MNT" --code 'import os, sys
open("/mnt/new.txt", "w").write("n")
os.remove("/mnt/gone.txt")
sys.stdout.buffer.write(b"bad \xff byte\n")
sys.exit(3)' 2>/dev/null); rc=$?
check "json: exit 0 although the payload exited 3" test "$rc" = 0
check "json: exactly one JSON object on stdout" python3 -c 'import json,sys; json.loads(sys.argv[1])' "$out"
check "json: returncode" test "$(json_field returncode <<<"$out")" = 3
check "json: invalid UTF-8 is replaced" test "$(json_field stdout <<<"$out")" = '"bad \ufffd byte\n"'
check "json: changed_files" test "$(json_field changed_files <<<"$out")" = '["new.txt"]'
check "json: deleted_files" test "$(json_field deleted_files <<<"$out")" = '["gone.txt"]'
check "json: timed_out and duration_seconds are present" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["timed_out"] is False and d["duration_seconds"] > 0 and d["output_truncated"] is False' "$out"
check "json: the written file is on the host" test "$(cat "$MNT/new.txt")" = n
out=$(run --json --timeout 0.5 --code 'print("partial", flush=True)
import time; time.sleep(20)' 2>/dev/null)
check "json: a timeout is reported with the partial output" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["timed_out"] is True and d["stdout"] == "partial\n" and d["returncode"] < 0' "$out"
printf 'print("from script")\n' > "$MNT/job.py"
out=$(run --json --mnt-dir "$MNT" --script /mnt/job.py 2>/dev/null)
check "json: --script runs /mnt/job.py and excludes it from changed_files" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["stdout"] == "from script\n" and d["changed_files"] == []' "$out"
out=$(run --json --disable-network --code 'import socket
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2); print("REACHED")
except OSError: print("BLOCKED")' 2>/dev/null)
check "json: --disable-network blocks outbound TCP" test "$(json_field stdout <<<"$out")" = '"BLOCKED\n"'
out=$(SECRET_FOR_TEST=leak run --json --env GIVEN=1 --code 'import os; print(os.environ.get("GIVEN"), os.environ.get("SECRET_FOR_TEST"))' 2>/dev/null)
check "json: --env reaches the payload, host variables do not" test "$(json_field stdout <<<"$out")" = '"1 None\n"'
out=$(run --print-bwrap-argv --code 1 2>/dev/null)
check "debug: --print-bwrap-argv prints the bwrap command line" test -n "$(grep -x -- --unshare-pid <<<"$out")"

# The binary is position independent: two runs map it at different addresses (ASLR kept).
base_of_run() {
  "$SB" run --no-apparmor --venv "$VENV" --code 'import time; time.sleep(1)' >/dev/null 2>&1 &
  local pid=$!
  sleep 0.3
  head -c 12 "/proc/$pid/maps" 2>/dev/null
  wait "$pid"
}
first=$(base_of_run) second=$(base_of_run)
check "binary: loaded at a randomized address ($first, $second)" test -n "$first" -a "$first" != "$second"

# Limits from the command line.
usage_case "a negative limit" run --no-apparmor --venv "$VENV" --memory-mb -5 --code 1
usage_case "a non-numeric limit" run --no-apparmor --venv "$VENV" --cpu-seconds soon --code 1
out=$(run --json --cpu-seconds 1 --code 'while True: pass' 2>/dev/null)
check "limits: --cpu-seconds ends a spin and the JSON says limit_hit cpu" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["limit_hit"] == "cpu" and d["returncode"] == -24, d' "$out"
out=$(run --json --memory-mb 128 --code 'x = bytearray(1 << 30)' 2>/dev/null)
check "limits: --memory-mb ends a memory bomb in MemoryError (limit_hit memory)" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["limit_hit"] == "memory" and "MemoryError" in d["stderr"], d' "$out"
out=$(run --json --code 'print(1)' 2>/dev/null)
check "layers: the JSON lists the active layers" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert {"namespaces", "mounts", "environment", "rlimits", "tmpfs-size", "seccomp"} <= set(d["layers"]) and "apparmor" not in d["layers"] and d["limit_hit"] is None, d' "$out"
# Peak RSS of the CLI (the largest of its waited-for descendants, so the sandbox's too).
rss=$(python3 - "$SB" "$VENV" "$TMP/flood.json" <<'PY'
import resource, subprocess, sys
sandbox, venv, out = sys.argv[1:4]
code = "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(200): sys.stdout.write(chunk)"
with open(out, "wb") as f:
    subprocess.run([sandbox, "run", "--no-apparmor", "--venv", venv, "--json", "--max-output-bytes", "1048576", "--code", code],
                   stdout=f, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
)
check "limits: a 200 MiB flood with a 1 MiB cap keeps the host process under 100 MiB RSS (${rss} KiB)" \
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["output_truncated"] and len(d["stdout"]) == 1 << 20 and int(sys.argv[2]) < 100 * 1024' "$TMP/flood.json" "$rss"
DISK=$TMP/disk; mkdir "$DISK"
out=$(run --json --max-mnt-mb 30 --mnt-dir "$DISK" --code 'for i in range(60): open(f"/mnt/f{i}", "wb").write(b"x" * (5 << 20))' 2>/dev/null)
check "limits: --max-mnt-mb stops many files filling the mount dir's filesystem (limit_hit disk)" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["limit_hit"] == "disk", d' "$out"
rm -rf "$DISK"
if [ "$(id -u)" = 0 ]; then
  out=$(run --max-processes 20 --code 1 2>&1); rc=$?
  check "limits: --max-processes as root without the cgroup layer is refused (RLIMIT_NPROC does not bind root)" test "$rc" = 2 -a -n "$(grep 'resource limits layer cannot be applied' <<<"$out")" -a -n "$(grep 'cgroup layer is off' <<<"$out")"
else
  skip "limits: --max-processes as root is refused" "not root (the library tests cover the limit for this caller)"
fi
out=$(run --json --no-seccomp --code 'import ctypes; print(ctypes.CDLL(None).ptrace(0x4206, 1, None, None))' 2>/dev/null)
check "seccomp: --no-seccomp relaxes the layer explicitly (and the JSON says so)" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["stdout"] == "0\n" and "seccomp" not in d["layers"], d' "$out"

# Resources without the cgroup layer (this host has cgroup v1 only; tests/apparmor_in_vm.sh
# covers the layer itself): what the fallback guarantees, and that it says what it lacks.
header=$("$SB" --no-apparmor --venv "$VENV" --verbose 2>/dev/null | grep '^# cgroup:')
if grep -q 'not in force' <<<"$header"; then
  check "cgroup: the self-test header says the layer is not in force, why, and what --memory-mb means then" \
    grep -q 'private memory per process only' <<<"$header"
  out=$(run --require-cgroup --code 'print("ran")' 2>&1); rc=$?
  check "cgroup: --require-cgroup is refused (exit 2) with the reason, and nothing runs" \
    test "$rc" = 2 -a -n "$(grep 'cgroup layer cannot be applied' <<<"$out")" -a -z "$(grep -x ran <<<"$out")"
  out=$(run --cpus 1 --code 'print("ran")' 2>&1); rc=$?
  check "cgroup: --cpus without the layer is refused (exit 2)" test "$rc" = 2 -a -n "$(grep -- '--cpus needs the cgroup layer' <<<"$out")"
  out=$(run --json --code 1 2>/dev/null)
  check "cgroup: the JSON's layers say memory:private-only, and the usage numbers are null" python3 -c '
import json, sys; d = json.loads(sys.argv[1])
assert "memory:private-only" in d["layers"] and "cgroup" not in d["layers"] and d["memory_peak_bytes"] is None, d' "$out"
  out=$(run --memory-mb 256 --code 'import os
n = 0
try:
    with open("/tmp/fill", "wb") as f:
        for _ in range(512):
            f.write(b"x" * (1 << 20)); f.flush(); n += 1
except OSError as e:
    print(n, e.errno)' 2>/dev/null)
  check "memory: without the cgroup layer, /tmp holds at most a sixth of --memory-mb 256 (ENOSPC at ${out% *} MiB)" \
    test "${out#* }" = 28 -a "${out% *}" -le 43
else
  for name in "the header says the layer is not in force" "--require-cgroup is refused" "--cpus is refused" "layers say memory:private-only" "/tmp within --memory-mb"; do
    skip "cgroup: $name" "the cgroup layer is in force on this host ($header)"
  done
fi
usage_case "--no-cgroup with --require-cgroup" run --no-apparmor --venv "$VENV" --no-cgroup --require-cgroup --code 1
usage_case "a negative --cpus" run --no-apparmor --venv "$VENV" --cpus -1 --code 1
out=$(run --max-processes 1 --code 1 2>&1); rc=$?
check "limits: --max-processes 1 is refused (bwrap's pid 1 is one of the N)" test "$rc" = 2 -a -n "$(grep 'N-1' <<<"$out")"
if [ "$(id -u)" != 0 ]; then
  out=$(run --max-processes 6 --code "$(fork_probe 40)" 2>/dev/null)
  check "limits: --max-processes 6 gives the payload 5 tasks (itself and 4 forks; pid 1 is the sixth)" test "$out" = 4
else
  skip "limits: --max-processes N gives the payload N-1 tasks" "root: RLIMIT_NPROC does not bind root (the AppArmor VM tests pids.max)"
fi
out=$(run --code 'import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print(libc.shmget(0, 1 << 20, 0o1600), ctypes.get_errno())
fd = os.open("/tmp/f", os.O_CREAT | os.O_WRONLY)
print("fallocate", libc.fallocate(fd, 0, ctypes.c_long(0), ctypes.c_long(1 << 30)), ctypes.get_errno())
space = (ctypes.c_int64 * 6)(0, 0, 0, 1 << 30, 0, 0)  # struct space_resv: 1 GiB from 0
for name, number in (("resvsp64", 0x4030582A), ("zero_range", 0x40305839)):
    print(name, libc.ioctl(fd, number, space), ctypes.get_errno())
libc.mmap.restype = ctypes.c_void_p
print("growsdown", libc.mmap(None, 1 << 20, 3, 0x22 | 0x100, -1, 0) == 2**64 - 1, ctypes.get_errno())
import resource
try:
    resource.setrlimit(resource.RLIMIT_STACK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
except ValueError:
    print("stack fixed", resource.getrlimit(resource.RLIMIT_STACK))' 2>/dev/null)
check "seccomp and limits: shmget ENOSYS, fallocate EOPNOTSUPP, its ioctl doors and MAP_GROWSDOWN EPERM, the stack limit fixed" test "$out" = "-1 38
fallocate -1 95
resvsp64 -1 1
zero_range -1 1
growsdown True 1
stack fixed (8388608, 8388608)"
FALLOC=$TMP/falloc; mkdir "$FALLOC"
out=$(run --json --max-mnt-mb 50 --mnt-dir "$FALLOC" --code 'import os
fd = os.open("/mnt/big", os.O_CREAT | os.O_RDWR)
for i in range(1, 41):  # up to 2 GiB, capped by the test
    os.posix_fallocate(fd, 0, i * (50 << 20))' 2>/dev/null)
size=$(du -sm "$FALLOC" | cut -f1)
check "disk: posix_fallocate falls back to writes the watch follows: a 50 MiB budget stops it (limit_hit disk, ${size} MiB written)" \
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["limit_hit"] == "disk" and int(sys.argv[2]) < 400, (d["limit_hit"], d["stderr"][-300:])' "$out" "$size"
rm -rf "$FALLOC"
if [ "$(id -u)" = 0 ]; then
  SMALL=$TMP/smallfs; mkdir "$SMALL"
  if mount -t tmpfs -o size=256m,nr_inodes=200000 sandbox-cli-inodes "$SMALL" 2>/dev/null; then
    mkdir "$SMALL/mnt"
    out=$(run --json --max-mnt-inodes 20000 --mnt-dir "$SMALL/mnt" --code 'import os
for i in range(300000):  # more than the filesystem has, capped by the test
    try:
        open("/mnt/f%d" % i, "w").close()
    except OSError:
        break' 2>/dev/null)
    made=$(find "$SMALL/mnt" -type f | wc -l)
    check "disk: an empty-file flood is stopped by --max-mnt-inodes 20000 (limit_hit disk after ${made} files)" \
      python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["limit_hit"] == "disk" and int(sys.argv[2]) < 100000, d["limit_hit"]' "$out" "$made"
    umount "$SMALL"
  else
    skip "disk: an empty-file flood is stopped by --max-mnt-inodes" "mounting a small tmpfs failed"
  fi
else
  skip "disk: an empty-file flood is stopped by --max-mnt-inodes" "not root (the test mounts a small tmpfs of its own)"
fi
for where in /tmp /dev/shm; do
  out=$(run --json --tmpfs-inodes 5000 --code "import os
for i in range(300000):  # capped by the test too
    open('$where/f%d' % i, 'w').close()" 2>/dev/null)
  check "tmpfs: an empty-file flood in $where is stopped by its inode cap (limit_hit tmpfs, promptly)" python3 -c '
import json, sys; d = json.loads(sys.argv[1]); assert d["limit_hit"] == "tmpfs" and d["duration_seconds"] < 10, (d["limit_hit"], d["duration_seconds"])' "$out"
done
out=$(run --address-space-mb 512 --code 'import mmap
try:
    m = mmap.mmap(-1, 700 << 20)
    print("mapped")
except OSError as e:
    print("refused", e.errno)' 2>/dev/null)
check "memory: --address-space-mb 512 refuses a 700 MiB shared mapping (ENOMEM), which --memory-mb alone does not count" test "$out" = "refused 12"

# Root callers: --user drops bwrap and the payload to an unprivileged account (DECISIONS 13).
if [ "$(id -u)" = 0 ] && id sandboxci >/dev/null 2>&1; then
  out=$(run --code 1 2>&1 >/dev/null)
  check "root: every run recommends --user, in one line" test "$(grep -c 'running as root: .* pass --user NAME' <<<"$out")" = 1
  USERDIR=$(mktemp -d); mkdir "$USERDIR/mnt"; chown sandboxci "$USERDIR" "$USERDIR/mnt"  # the account's private pair
  out=$(run --json --user sandboxci --max-processes 6 --mnt-dir "$USERDIR/mnt" --code "open('/mnt/left', 'w').close()
$(fork_probe 40)" 2>"$TMP/err")
  check "root --user sandboxci: RLIMIT_NPROC binds (--max-processes 6: 4 forks), no root warning" \
    bash -c 'test "$1" = "\"4\\n\"" && ! grep -q "running as root" "$2"' _ "$(json_field stdout <<<"$out")" "$TMP/err"
  check "root --user sandboxci: what the payload leaves in /mnt belongs to sandboxci, not to root" test "$(stat -c %U "$USERDIR/mnt/left")" = sandboxci
  out=$(run --json --user sandboxci --code 'import os; print(os.stat("/proc/self").st_uid, open("/proc/self/status").read().count("\n"))' 2>/dev/null)
  check "root --user sandboxci: the payload is not uid 0 of the host" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["stdout"].split()[0] != "0", d["stdout"]' "$out"
  rm -rf "$USERDIR"
  ROOTDIR=$TMP/root-owned; mkdir -p "$ROOTDIR/mnt"
  out=$(run --user sandboxci --mnt-dir "$ROOTDIR/mnt" --code 'print("ran")' 2>&1); rc=$?
  check "root --user: a mount dir the account does not own is refused (exit 2), nothing runs" \
    test "$rc" = 2 -a -n "$(grep 'who must own it' <<<"$out")" -a -z "$(grep -x ran <<<"$out")"
  mkdir -m 700 "$TMP/private" && /usr/bin/python3 -m venv --without-pip "$TMP/private/venv"
  out=$("$SB" run --no-apparmor --venv "$TMP/private/venv" --user sandboxci --code 'print("ran")' 2>&1); rc=$?
  check "root --user: a venv the account cannot read is refused (exit 2), naming the path" \
    test "$rc" = 2 -a -n "$(grep "cannot read and enter $TMP/private" <<<"$out")"
  usage_case "--user root" run --no-apparmor --venv "$VENV" --user root --code 1
  usage_case "--user of no account" run --no-apparmor --venv "$VENV" --user no-such-account-here --code 1
else
  for name in "every run recommends --user" "RLIMIT_NPROC binds" "files belong to the account" "not uid 0" "a mount dir it does not own" "a venv it cannot read" "--user root or of no account"; do
    skip "root --user: $name" "not root, or no user sandboxci"
  done
  out=$(run --user nobody --code 1 2>&1); rc=$?
  check "--user as an unprivileged caller is refused (exit 2)" test "$rc" = 2 -a -n "$(grep 'only a root caller' <<<"$out")"
fi

# A bwrap older than 0.8.0 is refused before anything runs, in both modes.
mkdir -p "$TMP/oldbwrap"
cat > "$TMP/oldbwrap/bwrap" <<'OLD'
#!/bin/sh
if [ "$1" = "--version" ]; then echo "bubblewrap 0.6.1"; exit 0; fi
echo "bwrap: Unknown option --disable-userns" >&2; exit 1
OLD
chmod +x "$TMP/oldbwrap/bwrap"
out=$(PATH="$TMP/oldbwrap:$PATH" "$SB" --no-apparmor --venv "$VENV" 2>&1); rc=$?
check "old bwrap: the self-test mode refuses it, naming the version" test "$rc" = 125 -a -n "$(grep '0.6.1 is too old' <<<"$out")"
out=$(PATH="$TMP/oldbwrap:$PATH" run --code 'print("ran")' 2>&1); rc=$?
check "old bwrap: sandbox run refuses it before anything runs" test "$rc" = 125 -a -n "$(grep 'too old' <<<"$out")" -a -z "$(grep -x ran <<<"$out")"

# bwrap's setup never runs under the payload's limits: 2 MiB of code under a 1 MiB file limit.
out=$(python3 -c 'print("x = " + repr("a" * (2 << 20)) + "\nprint(len(x))")' | run --max-file-mb 1 2>/dev/null); rc=$?
check "limits: --max-file-mb 1 with 2 MiB of code (from stdin) starts and runs" test "$rc" = 0 -a "$out" = 2097152

# Names are bytes: one that is not UTF-8 appears only in changed_files_b64, exactly once.
NAMES=$TMP/names; mkdir "$NAMES"
out=$(run --json --mnt-dir "$NAMES" --code 'import os, sys
for name in (b"\xff", b"\xfe", "\ufffd".encode(), b"plain"): open(b"/mnt/" + name, "w").close()
sys.stdout.buffer.write(b"\x00\xff\n")' 2>/dev/null)
check "json: a name that is not UTF-8 is only in changed_files_b64, as its exact bytes; U+FFFD itself is text" python3 -c '
import base64, json, sys
d = json.loads(sys.argv[1])
assert d["schema"] == 3 and d["memory_peak_bytes"] is None and d["cpu_seconds"] is None and sorted(d["changed_files"]) == ["plain", "\ufffd"], d
assert sorted(base64.b64decode(x) for x in d["changed_files_b64"]) == [b"\xfe", b"\xff"], d
assert base64.b64decode(d["stdout_b64"]) == b"\x00\xff\n" and d["changes_truncated"] is False and d["cleanup_incomplete"] is None, d' "$out"
rm -rf "$NAMES"

# --output: chosen files of the mount dir in the JSON, read safely.
OUT=$TMP/outputs; mkdir "$OUT"; echo "host secret" > "$TMP/secret"
out=$(run --json --mnt-dir "$OUT" --output out.txt --output bin --output link --output fifo --output none --code "import os
open('/mnt/out.txt', 'w').write('result\n'); open('/mnt/bin', 'wb').write(bytes(range(256)))
os.symlink('$TMP/secret', '/mnt/link'); os.mkfifo('/mnt/fifo')" 2>/dev/null)
check "json --output: text, exact bytes as b64, and symlinks, FIFOs and missing files refused without blocking" python3 -c '
import base64, json, sys
d = {o["path"]: o for o in json.loads(sys.argv[1])["outputs"]}
assert d["out.txt"]["text"] == "result\n" and base64.b64decode(d["bin"]["b64"]) == bytes(range(256)), d
assert all("error" in d[p] and "text" not in d[p] for p in ("link", "fifo", "none")), d' "$out"
rm -rf "$OUT"

# A parent that ignores SIGCHLD (inherited across exec): no hang, statuses and timeouts kept.
ignoring() { timeout 30 python3 -c 'import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])' "$@"; }
ignoring "$SB" run --no-apparmor --venv "$VENV" --code 'import sys; sys.exit(5)' >/dev/null 2>&1; rc=$?
check "SIGCHLD ignored: the payload's exit status comes back (5)" test "$rc" = 5
start=$(date +%s%N)
ignoring "$SB" run --no-apparmor --venv "$VENV" --timeout 0.5 --code 'import time; time.sleep(20)' >/dev/null 2>&1; rc=$?
elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
check "SIGCHLD ignored: a timeout still exits 124, promptly (${elapsed} ms)" test "$rc" = 124 -a "$elapsed" -lt 10000
out=$(ignoring "$SB" run --no-apparmor --venv "$VENV" --json --code 'print("ok")' 2>/dev/null)
check "SIGCHLD ignored: --json reports the run" test "$(json_field stdout <<<"$out")" = '"ok\n"'

# Modes, and --help: generated from the option table, the same text as the header and README.
usage_case "two mode flags" --no-apparmor --venv "$VENV" --interactive --print-apparmor-profile
usage_case "a mode flag of the other command" run --no-apparmor --venv "$VENV" --interactive --code 1
usage_case "a value on a switch" --no-apparmor --venv "$VENV" --verbose=yes
usage_case "--max-open-files below its minimum" run --no-apparmor --venv "$VENV" --max-open-files 15 --code 1
out=$(run --print-bwrap-argv --code 1 2>/dev/null); rc=$?
check "--print-bwrap-argv: prints the command line (bwrap first, one argument per line) and runs nothing" \
  test "$rc" = 0 -a "$(head -n 1 <<<"$out")" = "$(command -v bwrap)" -a -n "$(grep -x -- --unshare-user <<<"$out")"
help=$("$SB" --help); rc=$?
check "help: exits 0, shows every command and every mode flag" \
  bash -c 'test "$1" = 0 && for w in "sandbox run" "sandbox session" "sandbox serve" --interactive --print-apparmor-profile --print-bwrap-argv; do grep -q -- "$w" <<<"$2" || exit 1; done' _ "$rc" "$help"
check "help: --help wins over a mode flag (exit 0, no run)" test "$("$SB" run --print-bwrap-argv --help --code 1)" = "$help"
if [ -f "$HERE/../sandbox.swift" ] && [ -f "$HERE/../README.md" ]; then
  header=$(sed -n '/^\/\/ Usage (what/,/^\/\/ Sections/p' "$HERE/../sandbox.swift" | sed '1d;$d' | sed -E 's|^//( {3})?||' | sed -e :a -e '/^$/{$d;N;ba' -e '}')
  check "help: the header of sandbox.swift shows exactly what --help prints" test "$header" = "$help"
  marks=$(sed -n 's|^// MARK: - ||p' "$HERE/../sandbox.swift")
  map=$(sed -n '/^\/\/ Sections, in the order/,/^\/\/$/p' "$HERE/../sandbox.swift" | sed -n 's|^//   \([^ ].*\)|\1|p')
  check "header: the section map lists every MARK of sandbox.swift, in order" \
    bash -c 'paste -d "|" <(echo "$1") <(echo "$2") | while IFS="|" read -r mark line; do case "$line" in "$mark"*) ;; *) echo "# $mark vs $line"; exit 1;; esac; done && [ "$(echo "$1" | wc -l)" = "$(echo "$2" | wc -l)" ]' _ "$marks" "$map"
  readme=$(awk '/^<!-- sandbox --help -->$/ { on = 1; getline; next } on && /^```$/ { exit } on' "$HERE/../README.md")
  check "help: README.md's command line section shows exactly what --help prints" test "$readme" = "$help"
else
  skip "help: the header of sandbox.swift shows what --help prints" "no sandbox.swift beside this script (a staged copy)"
  skip "help: README.md shows what --help prints" "no README.md beside this script (a staged copy)"
  skip "header: the section map lists every MARK" "no sandbox.swift beside this script (a staged copy)"
fi

# A base interpreter whose prefix holds other things (a --prefix=$HOME build, one in /opt): the
# sandbox binds its binary, standard library and libpython, never the prefix. Canaries beside them.
PYV=$(/usr/bin/python3 -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
prefix_case() {  # prefix_case LABEL PREFIX STDLIB_MODE(copy|link)
  local label=$1 prefix=$2 mode=$3
  mkdir -p "$prefix/bin" "$prefix/lib" "$prefix/.ssh" "$prefix/share"
  cp "/usr/bin/$PYV" "$prefix/bin/$PYV" && ln -sf "$PYV" "$prefix/bin/python3"
  if [ "$mode" = copy ]; then cp -a "/usr/lib/$PYV" "$prefix/lib/$PYV"; else ln -sfn "/usr/lib/$PYV" "$prefix/lib/$PYV"; fi
  echo "canary-key" > "$prefix/.ssh/id_ed25519"; echo "canary-tool" > "$prefix/bin/other-tool"; echo "canary" > "$prefix/share/notes"
  "$prefix/bin/python3" -m venv --without-pip "$prefix-venv"
  out=$("$SB" run --no-apparmor --venv "$prefix-venv" --code '
import os, sys
p = sys.argv[1] if len(sys.argv) > 1 else "'"$prefix"'"
seen = sorted(os.listdir(p)), sorted(os.listdir(p + "/bin")), sorted(os.listdir(p + "/lib"))
print(seen, os.path.exists(p + "/.ssh/id_ed25519"), sys.version_info[:2] == tuple(map(int, "'"${PYV#python}"'".split("."))))' 2>/dev/null)
  check "base interpreter in $label ($mode stdlib): python runs, and only its binary, links and stdlib show (no .ssh, no other files)" \
    test "$out" = "(['bin', 'lib'], ['python3', '$PYV'], ['$PYV']) False True"
  out=$("$SB" --no-apparmor --venv "$prefix-venv" 2>&1 | tail -n 1)
  check "base interpreter in $label: the base suite passes (its leak walk knows what is bound)" grep -qE '^[0-9]+ passed, 0 failed' <<<"$out"
}
prefix_case "a home-like prefix" "$TMP/home-prefix" link
if [ "$(id -u)" = 0 ]; then
  OPT_PREFIX=$(mktemp -d /opt/sandbox-cli-prefix-XXXXXX)
  prefix_case "/opt" "$OPT_PREFIX" copy
  rm -rf "$OPT_PREFIX" "$OPT_PREFIX-venv"
else
  skip "base interpreter in /opt: python runs, and only its binary, links and stdlib show" "/opt is root's"
  skip "base interpreter in /opt: the base suite passes" "/opt is root's"
fi
mkdir -p "$TMP/no-stdlib/bin" && cp "/usr/bin/$PYV" "$TMP/no-stdlib/bin/$PYV"
mkdir -p "$TMP/no-stdlib-venv/bin" && ln -s "$TMP/no-stdlib/bin/$PYV" "$TMP/no-stdlib-venv/bin/python"
printf 'home = %s\nversion = 3.11.2\n' "$TMP/no-stdlib/bin" > "$TMP/no-stdlib-venv/pyvenv.cfg"
out=$("$SB" run --no-apparmor --venv "$TMP/no-stdlib-venv" --code 'print(1)' 2>&1); rc=$?
check "base interpreter without its standard library: exit 2 naming the missing landmark" \
  test "$rc" = 2 -a -n "$(grep 'no standard library at .*no-stdlib/lib/python.*os.py' <<<"$out")"

# The self-test header warns about packages without bytecode and .pth paths outside the binds.
/usr/bin/python3 -m venv --without-pip "$TMP/advice-venv"
SITE=$(echo "$TMP"/advice-venv/lib/python3*/site-packages)
mkdir -p "$SITE/fakepkg" "$TMP/editable-src" && echo 'x = 1' > "$SITE/fakepkg/__init__.py"
echo "$TMP/editable-src" > "$SITE/__editable__.fake.pth"
out=$("$SB" --no-apparmor --venv "$TMP/advice-venv" 2>&1 | grep '^# warning')
check "header: packages without bytecode are named, with the uv and compileall fixes" \
  grep -q "1 of 1 packages .* have no bytecode (e.g. fakepkg).*--compile-bytecode.*compileall" <<<"$out"
check "header: a .pth entry outside the binds is named (editable installs fail inside)" \
  grep -q "__editable__.fake.pth adds .*editable-src to sys.path, which the sandbox does not bind" <<<"$out"
/usr/bin/python3 -m compileall -q "$SITE" >/dev/null; rm "$SITE/__editable__.fake.pth"
out=$("$SB" --no-apparmor --venv "$TMP/advice-venv" 2>&1 | grep '^# warning')
check "header: a compiled venv without stray .pth entries gets no warning" test -z "$out"

# --ro-dir: an extra directory bound read-only, checked so that no home dir or secret goes in by accident.
RO=$(mktemp -d /var/tmp/sandbox-cli-rodir-XXXXXX)
mkdir -p "$RO/src/mypkg" "$RO/with-secret/.ssh" && echo 'x = 42' > "$RO/src/mypkg/__init__.py"
out=$(run --ro-dir "$RO/src" --code "import sys; sys.path.insert(0, '$RO/src'); import mypkg; print(mypkg.x)
try:
    open('$RO/src/new', 'w')
except OSError as e:
    print(e.errno)" 2>/dev/null)
check "--ro-dir: the directory is importable inside and read-only (EROFS)" test "$out" = "$(printf '42\n30')"
for bad in / /var "$HOME" "$RO/with-secret" /usr/lib /proc "$RO/missing" relative/dir; do
  out=$(run --ro-dir "$bad" --code 'print("ran")' 2>&1); rc=$?
  check "--ro-dir $bad is refused with exit 2 and the reason, nothing runs" \
    test "$rc" = 2 -a -n "$(grep -e "--ro-dir '.*' cannot be bound" <<<"$out")" -a -z "$(grep -x ran <<<"$out")"
done
out=$("$SB" --no-apparmor --venv "$VENV" --ro-dir "$RO/src" 2>&1 | tail -n 1)
check "--ro-dir: the base suite passes with it (its leak walk knows the directory is bound)" grep -qE '^[0-9]+ passed, 0 failed' <<<"$out"
rm -rf "$RO"

# Hosts that cannot run bwrap (containers): each blocker made real in a child process, no
# container engine. The error names the blocker and the container option that lifts it.
DENY=$HERE/deny_namespaces.py
blocked() {  # blocked NAME EXPECTED_REASON EXPECTED_FIX COMMAND...
  local name=$1 reason=$2 fix=$3; shift 3
  out=$("$@" 2>&1); rc=$?
  check "blocked host: $name: exit 125, the blocker and the fix named, nothing ran" \
    test "$rc" = 125 -a -n "$(grep -e "error: .*$reason" <<<"$out")" -a -n "$(grep -e "hint: .*$fix" <<<"$out")" -a -z "$(grep -x ran <<<"$out")"
}
if [ -f "$DENY" ]; then
  blocked "a seccomp filter refusing unshare and clone of namespaces (Docker's default)" "a seccomp filter on this process" \
    "seccomp=unconfined.*seccompProfile" python3 "$DENY" "$SB" run --no-apparmor --venv "$VENV" --code 'print("ran")'
  blocked "a seccomp filter refusing mount" "a seccomp filter .*Failed to make / slave" "seccomp=unconfined" \
    python3 "$DENY" --mount "$SB" run --no-apparmor --venv "$VENV" --code 'print("ran")'
else
  skip "blocked host: seccomp refusing namespaces" "no deny_namespaces.py beside this script"
  skip "blocked host: seccomp refusing mount" "no deny_namespaces.py beside this script"
fi
blocked "user.max_user_namespaces 0 (inside a user namespace of the test's own)" "user.max_user_namespaces is 0" \
  "sysctl -w user.max_user_namespaces" unshare -U -r sh -c 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"' sh \
  "$SB" run --no-apparmor --venv "$VENV" --code 'print("ran")'
if [ "$(id -u)" = 0 ]; then
  blocked "a /proc with masked paths (a mount over /proc/keys, as container runtimes do)" "cannot mount a new /proc" \
    "systempaths=unconfined.*procMount: Unmasked" unshare -m --propagation private sh -c \
    'mount --bind /dev/null /proc/keys && exec "$@"' sh "$SB" run --no-apparmor --venv "$VENV" --code 'print("ran")'
else
  skip "blocked host: a /proc with masked paths" "masking /proc in a mount namespace of the test's needs root"
fi

# The bwrap advisory: informational, in the header, for bwrap older than the CVE fix.
out=$("$SB" --no-apparmor --venv "$VENV" 2>&1 | grep '^# advisory')
if "$(command -v bwrap)" --version | grep -qE ' 0\.([0-9]|1[01])\.'; then
  check "header: bwrap older than 0.12 gets the CVE advisory with the backport note" \
    bash -c 'grep -q "CVE-2026-87766" <<<"$1" && grep -q "backport" <<<"$1"' _ "$out"
else
  check "header: bwrap 0.12 or newer gets no advisory" test -z "$out"
fi
# A mount dir reused across runs: symlinks an earlier payload planted there cannot steer bwrap's
# setup in a later run (nothing is mounted beneath /mnt), so a canary dir stays empty.
REUSE=$(mktemp -d "$TMP/reuse-XXXXXX") && mkdir "$REUSE/mnt" "$REUSE/canary"
run --mnt-dir "$REUSE/mnt" --code "
import os
for name in ('tmp', 'run', 'dev', 'proc', 'etc', 'usr', 'mnt', 'sandbox', 'run/sandbox', 'main.py'):
    os.makedirs(os.path.dirname('/mnt/' + name) or '/mnt', exist_ok=True)
    os.symlink('$REUSE/canary', '/mnt/' + name)" >/dev/null 2>&1
out=$(run --mnt-dir "$REUSE/mnt" --code 'print("second")' 2>/dev/null)
check "mount dir reuse: planted symlinks steer nothing in the next run (it runs, the canary dir stays empty)" \
  test "$out" = second -a -z "$(ls -A "$REUSE/canary")"

# --ro-dir race: a directory swapped for a symlink to a canary (renameat2 RENAME_EXCHANGE in a
# loop, both cores busy) between the check and the bind must never show the canary: bwrap binds
# the descriptor that was checked.
RACE=$(mktemp -d /var/tmp/sandbox-cli-race-XXXXXX) && mkdir -p "$RACE/proj" "$RACE/secret" && echo CANARY > "$RACE/secret/key"
ln -s "$RACE/secret" "$RACE/evil"
python3 -c '
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = (os.path.join(sys.argv[1], n).encode() for n in ("proj", "evil"))
while os.path.exists(sys.argv[1]):
    libc.syscall(316, -100, a, -100, b, 2)  # renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE), x86_64
' "$RACE" 2>/dev/null &
SWAPPER=$!
leaks=0
for _ in $(seq 100); do
  out=$(run --ro-dir "$RACE/proj" --code "import os
print(open('$RACE/proj/key').read() if os.path.exists('$RACE/proj/key') else 'clean')" 2>/dev/null)
  [ "$out" = CANARY ] && leaks=$((leaks + 1))
done
kill $SWAPPER 2>/dev/null; wait $SWAPPER 2>/dev/null; rm -rf "$RACE"
check "--ro-dir race: 100 runs against a dir/symlink swap loop never bind the canary ($leaks leaks)" test "$leaks" = 0

# A crafted venv: pyvenv.cfg and links in the prefix steer a "libpython" to a canary outside the
# prefix; refused (exit 2), nothing runs.
EV=$(mktemp -d "$TMP/evil-XXXXXX") && mkdir -p "$EV/venv/bin" "$EV/prefix/lib" "$EV/canary/.ssh" && echo CANARY > "$EV/canary/.ssh/id"
ln -s "/usr/bin/$PYV" "$EV/venv/bin/python" && printf 'home = %s\nversion = 3.11.2\n' "$EV/prefix/bin" > "$EV/venv/pyvenv.cfg"
ln -s "/usr/lib/$PYV" "$EV/prefix/lib/$PYV" && ln -s "$EV/canary/.ssh" "$EV/prefix/lib/libpython3.so"
out=$("$SB" run --no-apparmor --venv "$EV/venv" --code 'print("ran")' 2>&1); rc=$?
check "crafted venv: a libpython symlinked out of the prefix is refused (exit 2), nothing runs" \
  test "$rc" = 2 -a -n "$(grep 'outside the interpreter.s prefix' <<<"$out")" -a -z "$(grep -x ran <<<"$out")"
# matplotlib's font list: a cache dir that is not ours (XDG_CACHE_HOME pointed at another user's)
# is never read, even with a planted list symlinked to a canary.
if [ -x "$(dirname "$VENV")/venv-work/bin/python" ] && [ "$(id -u)" = 0 ] && id sandboxci >/dev/null 2>&1; then
  "$SB" run --no-apparmor --venv "$(dirname "$VENV")/venv-work" --code pass >/dev/null 2>&1  # our own list: its key
  FOREIGN=$(mktemp -d /var/tmp/sandbox-cli-cache-XXXXXX) && mkdir -p "$FOREIGN/sandbox-swift"
  for key in $(ls "${XDG_CACHE_HOME:-$HOME/.cache}/sandbox-swift" 2>/dev/null | sed -n 's/\.name$//p') fontlist-0; do
    ln -sf "$EV/canary/.ssh/id" "$FOREIGN/sandbox-swift/$key.json"; printf 'fontlist-v3.11.0.json' > "$FOREIGN/sandbox-swift/$key.name"
  done
  chown -R sandboxci "$FOREIGN"
  out=$(XDG_CACHE_HOME=$FOREIGN "$SB" run --no-apparmor --venv "$(dirname "$VENV")/venv-work" --code '
import glob
print([open(p).read() for p in glob.glob("/tmp/.cache/matplotlib/*")])' 2>/dev/null)
  check "font list: another user's cache dir is never read (no canary in the run)" test "$out" = "[]"
  rm -rf "$FOREIGN"
else
  skip "font list: another user's cache dir is never read" "needs root, sandboxci and tests/build/venv-work (matplotlib)"
fi


# sandbox session: one interpreter between cells, JSON lines in and out; bad lines get an error
# object and the session goes on; end of input closes it (exit 0).
SESSION_MNT=$(mktemp -d "$TMP/session-XXXXXX")/mnt && mkdir "$SESSION_MNT"
printf '%s\n' '{"code": "x = 41", "id": 7}' 'not json' '{"code": "x + 1", "extra": 1}' '{"code": 5}' \
  '{"code": "open(\"/mnt/made\", \"w\").write(\"1\"); x + 1", "id": "s"}' '' '{"code": "while True: pass", "timeout": 0.3}' \
  '{"code": "print(\"still\", x)"}' > "$TMP/cells"
"$SB" session --no-apparmor --venv "$VENV" --mnt-dir "$SESSION_MNT" < "$TMP/cells" > "$TMP/session.out" 2>"$TMP/session.err"; rc=$?
check "session: a conversation: state kept, bad lines answered with error objects, a timeout survived, exit 0" \
  python3 - "$TMP/session.out" "$rc" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert sys.argv[2] == "0", sys.argv[2]
assert len(lines) == 7, lines
assert lines[0]["cell"] == 1 and lines[0]["id"] == 7 and lines[0]["value"] is None and lines[0]["schema"] == 3
assert [l["error"]["kind"] for l in lines[1:4]] == ["invalid_cell"] * 3, lines[1:4]
assert "unknown field 'extra'" in lines[2]["error"]["message"], lines[2]
assert lines[4]["value"] == "42" and lines[4]["id"] == "s" and lines[4]["changed_files"] == ["made"], lines[4]
assert lines[5]["timed_out"] and lines[5]["exception"]["type"] == "KeyboardInterrupt" and lines[5]["session_ended"] is None
assert lines[6]["stdout"] == "still 41\n" and lines[6]["cell"] == 4, lines[6]
PY
printf '%s\n' '{"code": "import os; os._exit(3)"}' '{"code": "1"}' | "$SB" session --no-apparmor --venv "$VENV" > "$TMP/session.out" 2>"$TMP/session.err"; rc=$?
check "session: an interpreter that exits ends the session: its last result says why, nothing more runs, a note on stderr" \
  python3 -c 'import json,sys; l=[json.loads(x) for x in open(sys.argv[1])]; assert len(l) == 1 and "status 3" in l[0]["session_ended"], l; assert "session ended" in open(sys.argv[2]).read()' "$TMP/session.out" "$TMP/session.err"
out=$("$SB" session --no-apparmor --venv "$VENV" --code 1 2>&1 </dev/null); rc=$?
check "session: a run-only flag is refused (exit 2)" test "$rc" = 2 -a -n "$(grep "belongs to 'sandbox run'" <<<"$out")"
out=$("$SB" session --no-apparmor --venv "$VENV" --idle-timeout 0 2>/dev/null </dev/null); rc=$?
check "session: a zero idle timeout is refused (exit 2) with a JSON error object" \
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["error"]["kind"] == "invalid_timeout" and sys.argv[2] == "2", d' "$out" "$rc"
# The JSON reader against hostile lines: each gets an error object; the session answers the next.
python3 - > "$TMP/hostile" <<'PY'
lines = [b'{"code": "1", "code": "2"}', b'[' * 100000, b'{"code": "\\ud800"}', b'{"code": "\xff"}', b'{"code": "a\x00"}',
         b'{"code": 1e999}', b'{"code": "1", "timeout": -1}', b'{"code": "1", "timeout": "5"}', b'"just a string"',
         b'{"code": "1"} trailing', b'{"code": "1", "id": [1]}', b'{' + b'"a": 1, ' * 10000 + b'"code": "1"}',
         b'{"code": "\\u+041"}', b'{"code": "1", "timeout": -01}', b'{"code": "1", "timeout": 1.}']
import sys
sys.stdout.buffer.write(b"\n".join(lines + [b'{"code": "6 * 7"}']) + b"\n")
PY
"$SB" session --no-apparmor --venv "$VENV" < "$TMP/hostile" > "$TMP/session.out" 2>/dev/null; rc=$?
check "session: 15 hostile request lines get 15 error objects, then the next cell runs (as cell 1)" \
  python3 -c 'import json,sys; l=[json.loads(x) for x in open(sys.argv[1], encoding="utf-8", errors="strict")]; assert len(l) == 16 and all("error" in x for x in l[:15]) and l[15]["value"] == "42" and l[15]["cell"] == 1, [x.get("error", x.get("value")) for x in l]' "$TMP/session.out"
# A session that ends by itself while the command waits for input says so at once (exit 0).
out=$( (echo '{"code": "1", "id": "a"}'; echo '{"code": "1", "timeout": 1e-300, "id": "b"}'; sleep 6) |
  timeout 5 "$SB" session --no-apparmor --venv "$VENV" --idle-timeout 0.5 2>/dev/null); rc=$?
check "session: the idle bound ends a waiting session at once (an error object, exit 0); a refused cell's error echoes its id" \
  python3 -c 'import json,sys; l=[json.loads(x) for x in sys.argv[1].splitlines()]; assert sys.argv[2] == "0" and l[1]["id"] == "b" and l[1]["error"]["kind"] == "invalid_timeout" and l[-1]["error"]["kind"] == "session_ended" and "idle" in l[-1]["error"]["message"], (sys.argv[2], l)' "$out" "$rc"


# Files in and out, stdin, argv, bytes (the streaming issue's, as codejail's tests exercise them).
IN_DIR=$(mktemp -d "$TMP/input-XXXXXX")/in && mkdir -p "$IN_DIR/sub" && echo keep > "$IN_DIR/data.txt" && echo keep > "$IN_DIR/sub/deep.txt"
out=$(run --json --input-dir "$IN_DIR" --code '
import os, shutil
tried = []
for attempt in (lambda: open("/input/data.txt", "w").write("gone"), lambda: os.remove("/input/data.txt"),
                lambda: shutil.rmtree("/input/sub"), lambda: os.rename("/input/data.txt", "/input/x"),
                lambda: os.chmod("/input/data.txt", 0o777), lambda: open("/input/new", "w")):
    try:
        attempt(); tried.append("CHANGED")
    except OSError:
        tried.append("refused")
print(tried, open("/input/data.txt").read().strip())' 2>/dev/null)
check "input dir: the payload reads /input and cannot write, delete, rename or chmod anything there; the files stay intact" \
  bash -c 'python3 -c "import json,sys; d=json.loads(sys.argv[1]); assert d[\"stdout\"] == str([\"refused\"] * 6) + \" keep\n\", d" "$1" && test "$(cat "$2/data.txt" "$2/sub/deep.txt")" = "keep
keep" && test ! -e "$2/new"' _ "$out" "$IN_DIR"
usage_case "an input dir outside the temp dir" run --no-apparmor --venv "$VENV" --input-dir /etc --code 1
out=$("$SB" run --no-apparmor --venv "$VENV" --input-dir "$SESSION_MNT" --mnt-dir "$SESSION_MNT" --code 'print("ran")' 2>&1); rc=$?
check "input dir: the mount dir itself (or one inside the other) is refused (exit 2), nothing runs" \
  test "$rc" = 2 -a -n "$(grep 'contain one another' <<<"$out")" -a -z "$(grep -x ran <<<"$out")"
head -c 5000000 /dev/urandom > "$TMP/stdin.bin"
out=$(run --code 'import sys, hashlib; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())' < "$TMP/stdin.bin" 2>/dev/null)
out2=$(run --stdin-file "$TMP/stdin.bin" --code 'import sys, hashlib; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())' </dev/null 2>/dev/null)
check "stdin: 5 MB reach the payload exactly, from stdin with --code and from --stdin-file" \
  test "$out" = "$(sha256sum "$TMP/stdin.bin" | cut -d' ' -f1)" -a "$out2" = "$out"
out=$(run --json --arg 'two words' --arg 'ünï cødé ✓' --arg '' --arg '--flag' --code 'import sys; print(sys.argv[1:])' </dev/null 2>/dev/null)
check "argv: --arg values with spaces, non-ASCII, empty and dash-leading reach sys.argv[1:] exactly" \
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["stdout"] == str(["two words", "ünï cødé ✓", "", "--flag"]) + "\n", d' "$out"
run --json --b64 --code 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 4000); sys.stderr.write("é" * 100000)' </dev/null >"$TMP/bytes.json" 2>/dev/null
check "bytes: all 256 byte values (1 MB) round-trip through stdout_b64; --b64 adds stderr_b64 to valid UTF-8 too" \
  python3 -c 'import base64,json,sys; d=json.load(open(sys.argv[1])); assert base64.b64decode(d["stdout_b64"]) == bytes(range(256)) * 4000 and base64.b64decode(d["stderr_b64"]).decode() == d["stderr"] == "é" * 100000' "$TMP/bytes.json"
usage_case "--b64 without --json" run --no-apparmor --venv "$VENV" --b64 --code 1
usage_case "--stdin-file with the code on stdin" run --no-apparmor --venv "$VENV" --stdin-file /dev/null


# --stream: the first chunk arrives while the payload waits for the test, then the result object;
# a reader that goes away mid-stream (head) takes the run down with it, nothing is left.
STREAM_MNT=$(mktemp -d "$TMP/stream-XXXXXX")/mnt && mkdir "$STREAM_MNT"
timeout 30 "$SB" run --no-apparmor --venv "$VENV" --stream --mnt-dir "$STREAM_MNT" --timeout 20 --code '
import os, time
print("first", flush=True)
while not os.path.exists("/mnt/go"):
    time.sleep(0.01)
print("second")' 2>/dev/null </dev/null | while IFS= read -r line; do
  printf '%s\n' "$line"; case "$line" in *'"first\n"'*) touch "$STREAM_MNT/go";; esac
done > "$TMP/stream.out"
check "stream: run --stream sends the first chunk before the payload is released, then the result object last" \
  python3 -c 'import json,sys; l=[json.loads(x) for x in open(sys.argv[1])]; assert l[0] == {"event": "stdout", "data": "first\n"} and l[1]["data"] == "second\n" and l[-1]["stdout"] == "first\nsecond\n" and l[-1]["schema"] == 3, l' "$TMP/stream.out"
TAG=streamtag$$
timeout 30 "$SB" run --no-apparmor --venv "$VENV" --stream --env "TAG=$TAG" --timeout 25 --code '
import time
while True:
    print("tick", flush=True); time.sleep(0.05)' 2>/dev/null </dev/null | head -n 2 >/dev/null
sleep 1
check "stream: a reader gone mid-stream (head -n 2) leaves no process of the run" \
  test -z "$(grep -l -a -s -- "$TAG" /proc/[0-9]*/environ 2>/dev/null | grep -v self)"

# The pool's options: serve's alone, checked before the startup gate (no self-test runs first).
a=$("$SB" run --no-apparmor --venv "$VENV" --pool 2 --code 1 2>&1); ra=$?
b=$(timeout 20 "$SB" serve --no-apparmor --venv "$VENV" --pool 65 2>&1 </dev/null); rb=$?
c=$(timeout 20 "$SB" serve --no-apparmor --venv "$VENV" --pool 1 --preload 'os;x' 2>&1 </dev/null); rc=$?
d=$(timeout 20 "$SB" serve --no-apparmor --venv "$VENV" --preload json 2>&1 </dev/null); rd=$?
check "pool: --pool belongs to serve; a size past 64, a bad preload name, --preload without --pool: exit 2 before any self-test" \
  test "$ra/$rb/$rc/$rd" = 2/2/2/2 -a -n "$(grep "belongs to 'sandbox serve'" <<<"$a")" -a -n "$(grep 'must be 0 to 64' <<<"$b")" \
  -a -n "$(grep 'not a module name' <<<"$c")" -a -n "$(grep 'needs --pool' <<<"$d")" -a -z "$(grep -i 'self-test' <<<"$b$c$d")"

finish
