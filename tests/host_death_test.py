#!/usr/bin/env python3
"""Host death: kill the host process with SIGKILL at random moments into its runs.

Usage: tests/host_death_test.py SANDBOX_BINARY UNIT_TESTS_BINARY VENV [KILLS]
       (SANDBOX_PROFILE=NAME: runs under that loaded AppArmor profile instead of --no-apparmor)

For the library (unit_tests --host-death-victim, several runs in flight per host), the CLI
(`sandbox run`), library sessions (unit_tests --session-victim, two sessions per host, the
payload a cell), `sandbox session` (the payload a cell sent on its stdin) and warm pools
(unit_tests --pool-victim: two slots preloaded and two runs at a time, refilled for ever), KILLS
times each (default 200; half that for the session and pool kinds): half of the kills land early in start-up
(0-20 ms), half anywhere in the first 2 s. Afterwards no process of those runs may exist (no
payload, no bwrap, no reaper: found by a tag in their command line or environment), and every
report a payload wrote (its rlimits, after a delay) must show the limits it was given: a
payload that ran without them would say so. Safe for the machine: the payloads only sleep and
write into mount dirs this script made; leftovers are killed before the script exits.
Prints a plan line first; ends with the line "N passed, N failed, N skipped".
"""
import json, os, random, shutil, signal, subprocess, sys, tempfile, time

SANDBOX, UNIT, VENV = sys.argv[1:4]
KILLS = int(sys.argv[4]) if len(sys.argv) > 4 else 200
PROFILE = os.environ.get("SANDBOX_PROFILE", "")
PARALLEL = 10
REPORTER = (
    "import os, random, resource, time\n"
    "time.sleep(random.uniform(0.0, 0.4))\n"
    "limits = [resource.getrlimit(r) for r in (resource.RLIMIT_CPU, resource.RLIMIT_NOFILE, resource.RLIMIT_CORE)]\n"
    "open('/mnt/.partial-%d' % os.getpid(), 'w').write(repr(limits))\n"
    "os.rename('/mnt/.partial-%d' % os.getpid(), '/mnt/limits-%d' % os.getpid())\n"  # a kill mid-write leaves no report
    "time.sleep(5)\n"
)
EXPECTED = repr([(77, 79), (77, 77), (0, 0)])
passed = failed = 0


def check(ok, name, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok - {name}")
    else:
        failed += 1
        print(f"not ok - {name}" + (f" # {detail}" if detail else ""))


def tagged(tags):
    """Pids of processes whose command line or environment holds one of the tags."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        blob = b""
        for part in ("cmdline", "environ"):
            try:
                with open(f"/proc/{entry}/{part}", "rb") as f:
                    blob += f.read()
            except OSError:
                pass
        if any(tag.encode() in blob for tag in tags):
            found.append(int(entry))
    return found


def reaper_groups():
    """Pids of our reapers (`sh -c 'read -r _; kill -s KILL 0'`) that are orphans now."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if b"read -r _; kill -s KILL 0" not in f.read():
                    continue
            with open(f"/proc/{entry}/status") as f:
                parent = next(int(l.split()[1]) for l in f if l.startswith("PPid:"))
            if parent == 1 or not os.path.exists(f"/proc/{parent}"):
                found.append(int(entry))
        except (OSError, StopIteration):
            pass
    return found


def host(kind, tag, base):
    environment = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "TMPDIR": os.environ.get("TMPDIR", "/tmp")}
    layer = ["--apparmor-profile-name", PROFILE] if PROFILE else ["--no-apparmor"]
    limits = ["--cpu-seconds", "77", "--max-open-files", "77", "--env", f"SANDBOX_DEATH_TAG={tag}"]
    if kind == "library":
        command = [UNIT, "--host-death-victim", VENV, base, tag, "4", REPORTER, PROFILE or "-"]
    elif kind == "session":
        command = [UNIT, "--session-victim", VENV, base, tag, REPORTER]
    elif kind == "pool":  # its slots' mount dirs are made in TMPDIR: here, where the reports are read
        command = [UNIT, "--pool-victim", VENV, tag, REPORTER]
        environment["TMPDIR"] = base
    elif kind == "session-cli":
        os.makedirs(f"{base}/run0", exist_ok=True)
        command = [SANDBOX, "session", *layer, "--venv", VENV, "--mnt-dir", f"{base}/run0", *limits]
        process = subprocess.Popen(command, env=environment, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        process.stdin.write(json.dumps({"code": REPORTER, "timeout": 2.5}).encode() + b"\n")
        process.stdin.flush()  # stdin stays open: the session waits for more
        return process
    else:
        os.makedirs(f"{base}/run0", exist_ok=True)
        command = [SANDBOX, "run", *layer, "--venv", VENV, "--mnt-dir", f"{base}/run0", "--timeout", "2.5",
                   *limits, "--code", REPORTER]
    return subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run(kind, kills):
    work = tempfile.mkdtemp(prefix=f"sandbox-death-{kind}-")
    os.chmod(work, 0o755)
    survivors, unlimited, reports, orphaned_reapers = [], [], 0, []
    limit, kills = kills, 0
    while kills < limit:
        round_tags, hosts = [], []
        for _ in range(min(PARALLEL, limit - kills)):
            tag = f"death{random.getrandbits(48):012x}"
            base = f"{work}/{tag}"
            os.makedirs(base)
            round_tags.append(tag)
            early = kills % 2 == 0
            hosts.append((host(kind, tag, base), time.monotonic() + (random.uniform(0, 0.02) if early else random.uniform(0, 2.0))))
            kills += 1
        for process, when in sorted(hosts, key=lambda item: item[1]):
            time.sleep(max(0.0, when - time.monotonic()))
            process.send_signal(signal.SIGKILL)
        for process, _ in hosts:
            process.wait()
        deadline = time.monotonic() + 3.0  # the reaper and the parent-death signals act within milliseconds
        left = tagged(round_tags)
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = tagged(round_tags)
        survivors += left
        for pid in left:  # keep the machine clean whatever happened
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)
        orphaned_reapers += reaper_groups()
    for root, _, files in os.walk(work):
        for name in files:
            if name.startswith("limits-"):
                reports += 1
                with open(os.path.join(root, name)) as f:
                    text = f.read()
                if text != EXPECTED:
                    unlimited.append(text)
    shutil.rmtree(work, ignore_errors=True)
    check(not survivors, f"host death ({kind}): after {limit} SIGKILLs of the host, no payload, bwrap or gate of its runs is left",
          f"{len(survivors)} survived")
    check(not orphaned_reapers, f"host death ({kind}): no reaper outlives its host", f"{orphaned_reapers}")
    check(not unlimited, f"host death ({kind}): every one of {reports} payload reports shows its limits (none ran without them)",
          f"{unlimited[:3]}")


KINDS = {"library": KILLS, "cli": KILLS, "session": max(1, KILLS // 2), "session-cli": max(1, KILLS // 2),
         "pool": max(1, KILLS // 2)}
print(f"1..{3 * len(KINDS)}")  # run() makes three checks
for kind, kills in KINDS.items():
    run(kind, kills)
print(f"{passed} passed, {failed} failed, 0 skipped")
sys.exit(0 if failed == 0 else 1)
