#!/usr/bin/env python3
"""sandbox serve: the protocol end to end, a fuzz pass, admission, the socket, and shutdown.

Usage: tests/serve_test.py SANDBOX_BINARY VENV
Every payload is bounded (timeouts set by the test); every process a test starts is tagged and
checked gone afterwards. Prints a plan line first; ends with "N passed, N failed, N skipped".
"""
import json, os, pwd, random, re, signal, socket, subprocess, sys, tempfile, time

SB, VENV = (os.path.abspath(p) for p in sys.argv[1:3])
HERE = os.path.dirname(os.path.abspath(__file__))
BASE = [SB, "serve", "--no-apparmor", "--venv", VENV]
passed = failed = skipped = 0


def check(ok, name, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok - {name}")
    else:
        failed += 1
        print(f"not ok - {name}" + (f" # {str(detail)[:600]}" if detail else ""))


def skip(name, why):
    global skipped
    skipped += 1
    print(f"ok - {name} # SKIP {why}")


def tagged(tag):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if tag.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def gone(tag, seconds=5.0):
    deadline = time.monotonic() + seconds
    while tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = tagged(tag)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return not left


class Server:
    """A `sandbox serve` on pipes; replies are collected per id."""

    def __init__(self, *extra, user=None):
        command = BASE + list(extra)
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.replies = {}

    def send(self, line):
        self.process.stdin.write(line if isinstance(line, bytes) else (json.dumps(line) + "\n").encode())
        self.process.stdin.flush()

    def read(self):
        line = self.process.stdout.readline()
        if not line:
            raise EOFError("the server closed its stdout")
        reply = json.loads(line)
        self.replies.setdefault(json.dumps(reply.get("id")), []).append(reply)
        return reply

    def wait_for(self, id, timeout=60):
        deadline = time.monotonic() + timeout
        key = json.dumps(id)
        while time.monotonic() < deadline:
            done = [r for r in self.replies.get(key, []) if "event" not in r]
            if done:
                return done[-1]
            self.read()
        raise TimeoutError(id)

    def ask(self, request, timeout=60):
        self.send(request)
        return self.wait_for(request["id"], timeout)

    def close(self):
        try:
            self.process.stdin.close()
        except OSError:
            pass
        return self.process.wait(timeout=30)


print("1..26")

# 1-4. A conversation covering every operation.
work = tempfile.mkdtemp(prefix="sandbox-serve-")
os.chmod(work, 0o700)
mnt = os.path.join(work, "mnt")
os.mkdir(mnt)
s = Server("--no-self-test")
health = s.ask({"id": "h", "op": "health"})["result"]
check(health["protocol"] == 1 and health["gate"].startswith("skipped") and "seccomp" in health["layers"],
      "serve: health reports the protocol, the gate and the layers", health)
run = s.ask({"id": 1, "op": "run", "code": "import sys; print(sys.argv[1:], sys.stdin.read()); open('/mnt/out', 'w').write('x')",
             "args": ["a b", "é"], "stdin": "in", "mnt_dir": mnt, "outputs": ["out"], "stream": True})
events = [r for r in s.replies[json.dumps(1)] if "event" in r]
check(run.get("protocol") == 1 and run["result"]["stdout"] == "['a b', 'é'] in\n" and run["result"]["outputs"][0]["text"] == "x"
      and events and events[0]["data"] == "['a b', 'é'] in\n", "serve: run with args, stdin, a mount dir, outputs and streamed events", run)
opened = s.ask({"id": 2, "op": "session.open", "mnt_dir": mnt})["result"]["session"]
s.ask({"id": 3, "op": "session.exec", "session": opened, "code": "x = 41"})
cell = s.ask({"id": 4, "op": "session.exec", "session": opened, "code": "x + 1"})["result"]
closed = s.ask({"id": 5, "op": "session.close", "session": opened})["result"]
check(cell["value"] == "42" and cell["cell"] == 2 and "returncode" in closed, "serve: session.open, exec, exec, close", (cell, closed))
s.send({"id": 6, "op": "run", "code": "import time; time.sleep(30)", "timeout": 60})
time.sleep(1.0)
cancel = s.ask({"id": 7, "op": "cancel", "target": 6})["result"]
cancelled = s.wait_for(6)
opened = s.ask({"id": 8, "op": "session.open"})["result"]["session"]
s.send({"id": 9, "op": "session.exec", "session": opened, "code": "import time; time.sleep(30)", "timeout": 60})
time.sleep(1.0)
s.ask({"id": 10, "op": "cancel", "target": 9})
interrupted = s.wait_for(9)["result"]
check(cancel == {"cancelled": True} and cancelled["result"]["limit_hit"] == "cancelled" and interrupted["exception"]["type"] == "KeyboardInterrupt",
      "serve: cancel kills a run (its result says cancelled) and interrupts a cell", (cancelled, interrupted))

# 5-6. Reused ids, a 100 MB line, and a fuzz pass with a fixed seed: each line gets its answer.
s.send({"id": "dup", "op": "run", "code": "import time; time.sleep(2)"})
reused = s.ask({"id": "dup", "op": "health"})  # health is answered at once, whatever the id
s.send({"id": "dup", "op": "run", "code": "1"})
duplicate = [r for r in s.replies.get(json.dumps("dup"), []) if "error" in r]
deadline = time.monotonic() + 10
while not duplicate and time.monotonic() < deadline:
    s.read()
    duplicate = [r for r in s.replies.get(json.dumps("dup"), []) if "error" in r]
check(duplicate and "in use" in duplicate[0]["error"]["message"] and duplicate[0]["error"]["kind"] == "invalid_request",
      "serve: a reused id in flight gets an error; the first request goes on", duplicate)
s.wait_for("dup")
rng = random.Random(20261201)
valid = [{"op": "health"}, {"op": "run", "code": "1"}, {"op": "session.exec", "session": "s9", "code": "1"}, {"op": "cancel", "target": 1}]
lines, expected = [], 0
for n in range(300):
    request = dict(rng.choice(valid), id=f"f{n}")
    kind = rng.randrange(6)
    if kind == 0:
        text = json.dumps(request)[: rng.randrange(1, 20)]  # truncated
    elif kind == 1:
        request[rng.choice(["op", "id", "code", "timeout", "env"])] = rng.choice([None, 5, [], {}, "x" * 3, True, -1, 1e308])
        text = json.dumps(request)
    elif kind == 2:
        request["op"] = rng.choice(["", "RUN", "session", "health ", "exec"])
        text = json.dumps(request)
    elif kind == 3:
        raw = bytearray(json.dumps(request).encode())
        for _ in range(3):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        text = raw.replace(b"\n", b" ").decode("latin-1")
    elif kind == 4:
        text = "[" * rng.randrange(1, 5000) + "]" * rng.randrange(0, 3)
    else:
        request[f"extra{n}"] = 1
        text = json.dumps(request)
    lines.append(text.encode("latin-1", "replace") if kind == 3 else text.encode())
s.send(b"".join(line + b"\n" for line in lines))
s.send(b"x" * (100 << 20) + b"\n")
alive = s.ask({"id": "after", "op": "health"}, timeout=120)
answered = sum(len(v) for k, v in s.replies.items() if k.startswith('"f') or k == "null")
check(alive["result"]["protocol"] == 1 and s.process.poll() is None,
      "serve: 300 fuzzed requests (fixed seed) and a 100 MB line leave the server answering", answered)

# 7. 20 concurrent requests, answered by id.
for n in range(20):
    s.send({"id": 100 + n, "op": "run", "code": f"import time; time.sleep(0.2); print({n} * 2)"})
results = {n: s.wait_for(100 + n, timeout=120) for n in range(20)}
check(all(results[n]["result"]["stdout"] == f"{n * 2}\n" for n in range(20)), "serve: 20 concurrent runs, each answer under its id",
      [results[n].get("error") for n in range(20) if "error" in results[n]])

# 8. End of stdin: the request in flight is answered, then the server exits 0.
s.send({"id": "last", "op": "run", "code": "import time; time.sleep(0.5); print('late')"})
s.process.stdin.close()
last = s.wait_for("last")
check(last["result"]["stdout"] == "late\n" and s.process.wait(timeout=30) == 0, "serve: at end of stdin the requests in flight finish, then exit 0")

# 9. Admission: --max-concurrent 1 queues 4 more, refuses the rest at once.
s = Server("--no-self-test", "--max-concurrent", "1")
for n in range(7):
    s.send({"id": n, "op": "run", "code": "import time; time.sleep(1)"})
outcomes = [s.wait_for(n, timeout=120) for n in range(7)]
refused = [o for o in outcomes if "error" in o]
check(len(refused) == 2 and all(o["error"]["kind"] == "too_many_runs" for o in refused), "serve: --max-concurrent 1 runs 1, queues 4, refuses 2",
      [o.get("error", {}).get("kind") for o in outcomes])
s.close()

# 10. The Python client of the README, as printed there.
readmes = [p for p in (os.path.join(HERE, "..", "README.md"), os.path.join(HERE, "README.md")) if os.path.exists(p)]
readme = open(readmes[0]).read() if readmes else ""
blocks = re.findall(r"^```python\n(.*?)^```", readme, re.S | re.M)
client_code = next((b for b in blocks if "class SandboxClient" in b), None)
if client_code:
    path = os.path.join(work, "client.py")
    open(path, "w").write(client_code)
    out = subprocess.run([sys.executable, path] + BASE + ["--no-self-test"], capture_output=True, text=True, timeout=120)
    check(out.stdout == "42\n42\n" and out.returncode == 0, "serve: the README's Python client runs (run, then a session)", out.stdout + out.stderr[-300:])
else:
    skip("serve: the README's Python client runs", "no README.md beside or above this script")

# 11-14. The socket: a private dir, the peer check, a client killed mid-stream, SIGTERM.
sockdir = os.path.join(work, "sock")
path = os.path.join(sockdir, "serve.sock")
tag = f"servetag{os.getpid()}"
server = subprocess.Popen(BASE + ["--no-self-test", "--socket", path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
deadline = time.monotonic() + 30
while not os.path.exists(path) and time.monotonic() < deadline:
    time.sleep(0.05)


def connect():
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(path)
    return client, client.makefile("rwb")


try:
    a, af = connect()
    af.write(b'{"id": 1, "op": "health"}\n')
    af.flush()
    reply = json.loads(af.readline())
    mode = os.stat(sockdir).st_mode & 0o777
    check(reply["result"]["protocol"] == 1 and mode == 0o700, "serve --socket: answers on a socket inside a 0700 dir it made", (reply, oct(mode)))
    b, bf = connect()
    bf.write((json.dumps({"id": 1, "op": "run", "code": "import time\nwhile True:\n    print('tick', flush=True); time.sleep(0.05)",
                          "env": {"TAG": tag}, "stream": True, "timeout": 60}) + "\n").encode())
    bf.flush()
    first = json.loads(bf.readline())
    b.close()
    bf.close()
    af.write(b'{"id": 2, "op": "run", "code": "print(1)"}\n')
    af.flush()
    other = json.loads(af.readline())
    check(first.get("event") == "stdout" and gone(tag) and other["result"]["stdout"] == "1\n",
          "serve --socket: a client killed mid-stream has its run killed; another client is unaffected", (first, other))
    af.write((json.dumps({"id": 3, "op": "session.open", "env": {"TAG": tag}}) + "\n").encode())
    af.flush()
    json.loads(af.readline())
    af.write((json.dumps({"id": 4, "op": "run", "code": "import time; time.sleep(60)", "env": {"TAG": tag}}) + "\n").encode())
    af.flush()
    time.sleep(1.0)
    server.send_signal(signal.SIGTERM)
    status = server.wait(timeout=30)
    check(status == 0 and gone(tag, 2.0) and not os.path.exists(path), "serve: SIGTERM ends runs and sessions in flight, removes the socket, exits 0",
          (status, tagged(tag)))
finally:
    if server.poll() is None:
        server.kill()
        server.wait()
out = subprocess.run(BASE + ["--no-self-test", "--socket", "/tmp/serve-test-not-private.sock"], capture_output=True, text=True, timeout=30)
check(out.returncode == 2 and "nobody else can enter" in out.stderr, "serve --socket: a dir others can enter (/tmp) is refused (exit 2)", out.stderr[-300:])
if os.getuid() == 0 and any(p.pw_name == "sandboxci" for p in pwd.getpwall()):
    account = pwd.getpwnam("sandboxci")
    theirs = tempfile.mkdtemp(prefix="sandbox-serve-peer-")
    os.chown(theirs, account.pw_uid, account.pw_gid)
    os.chmod(theirs, 0o700)
    peer_path = os.path.join(theirs, "s", "serve.sock")
    os.makedirs(os.path.dirname(peer_path))
    os.chown(os.path.dirname(peer_path), account.pw_uid, account.pw_gid)
    os.chmod(os.path.dirname(peer_path), 0o700)
    peer = subprocess.Popen(["runuser", "-u", "sandboxci", "--", *BASE, "--no-self-test", "--socket", peer_path],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/tmp")
    deadline = time.monotonic() + 30
    while not os.path.exists(peer_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(peer_path)  # root passes the 0700 dir; the peer check still refuses it
        client.sendall(b'{"id": 1, "op": "health"}\n')
        answer = client.makefile("rb").readline()
        check(b'"forbidden"' in answer, "serve --socket: a peer of another uid (root, to sandboxci's server) is refused (SO_PEERCRED)", answer[:200])
    finally:
        peer.send_signal(signal.SIGTERM)
        peer.wait(timeout=30)
        subprocess.run(["rm", "-rf", theirs])
else:
    skip("serve --socket: a peer of another uid is refused", "needs root and the sandboxci account")

# 18-23. Regressions of the attack pass on serve.
def connect_to(path, buffer=None):
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if buffer:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    client.connect(path)
    return client


def serve_socket(*extra):
    directory = tempfile.mkdtemp(prefix="sandbox-serve-sock-")
    where = os.path.join(directory, "s.sock")
    process = subprocess.Popen(BASE + ["--no-self-test", "--socket", where, *extra], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not os.path.exists(where) and time.monotonic() < deadline:
        time.sleep(0.05)
    return process, where, directory


process, where, directory = serve_socket()
try:
    # A client that never reads a big reply, then goes away: no byte of it reaches the clients that come after.
    a = connect_to(where, 4096)
    a.sendall(b'{"id": "a1", "op": "run", "code": "print(\'SECRET-OF-A \' * 400000)"}\n')
    time.sleep(3)
    a.shutdown(socket.SHUT_WR)
    time.sleep(0.5)
    bs = [connect_to(where) for _ in range(4)]
    a.close()
    time.sleep(1.5)
    leaked = b""
    for b in bs:
        b.setblocking(False)
        try:
            while True:
                chunk = b.recv(1 << 20)
                if not chunk:
                    break
                leaked += chunk
        except BlockingIOError:
            pass
        b.close()
    check(b"SECRET-OF-A" not in leaked and not leaked, "serve --socket: a gone client's unread reply never reaches the next clients", leaked[:80])
    # A legitimate reply larger than the send queue (16 MiB of \x01, escaped about 6x) arrives whole.
    c = connect_to(where)
    cf = c.makefile("rb")
    c.sendall(b'{"id": "big", "op": "run", "code": "import sys; sys.stdout.write(chr(1) * (16 << 20))"}\n')
    line = cf.readline()
    reply = json.loads(line) if line else {}
    check(len(reply.get("result", {}).get("stdout", "")) == 16 << 20, "serve: a reply larger than the send queue (96 MB of JSON) is delivered, not a dropped client",
          str(reply)[:200])
    c.close()
    # 130 connections: past the limit they are told to retry; the server keeps serving.
    many = []
    refused = 0
    for _ in range(130):
        client = connect_to(where)
        many.append(client)
    time.sleep(0.5)
    for client in many:
        client.setblocking(False)
        try:
            if b"too_many_connections" in client.recv(4096):
                refused += 1
        except (BlockingIOError, ConnectionResetError):
            pass
    for client in many:
        client.close()
    time.sleep(0.5)
    d = connect_to(where)
    d.sendall(b'{"id": 1, "op": "health"}\n')
    alive = json.loads(d.makefile("rb").readline())
    d.close()
    check(refused >= 2 and alive["result"]["protocol"] == 1, "serve --socket: past 128 clients the rest are told to retry; the server goes on", refused)
finally:
    process.terminate()
    process.wait(timeout=30)
    subprocess.run(["rm", "-rf", directory])

# Admission under --max-concurrent 1: cancelling a session.open that waits for the slot works, and
# the end of stdin with one waiting closes everything and exits.
s = Server("--no-self-test", "--max-concurrent", "1")
first = s.ask({"id": "o1", "op": "session.open", "env": {"TAG": tag + "adm"}})["result"]["session"]
s.send({"id": "o2", "op": "session.open", "env": {"TAG": tag + "adm"}})
time.sleep(0.5)
s.ask({"id": "c", "op": "cancel", "target": "o2"})
waited = s.wait_for("o2", timeout=10)
s.send({"id": "o3", "op": "session.open", "env": {"TAG": tag + "adm"}})
s.send({"id": "n", "op": "run", "code": "1", "timeout": 5})
s.process.stdin.close()
try:
    status = s.process.wait(timeout=30)
except subprocess.TimeoutExpired:
    status = None
    s.process.kill()
check(waited.get("error", {}).get("kind") == "run_cancelled" and status == 0 and gone(tag + "adm"),
      "serve: a cancelled session.open waiting for a slot ends at once; the end of stdin with one waiting exits and leaves nothing",
      (waited, status))
# Numeric ids: integers up to 15 digits come back exactly; others are refused, not rounded.
s = Server("--no-self-test")
exact = s.ask({"id": 123456789012345, "op": "health"})
s.send(b'{"id": 1234567890123456789, "op": "health"}\n')
rounded = s.read()
s.send({"id": "v", "op": "run", "code": "1", "args": ["x"] * 200000})
values = s.read()  # refused while parsing: its id could not be read
check(exact["id"] == 123456789012345 and rounded["id"] is None and "15 digits" in rounded["error"]["message"]
      and "values" in values.get("error", {}).get("message", ""), "serve: ids are exact or refused; a request of 200,000 values is refused", (rounded, values.get("error")))
s.close()

# 15-16. The startup gate, and a gate that has not been told to step aside.
s = Server()
gated = s.ask({"id": "g", "op": "health"}, timeout=300)["result"]
check(gated["gate"] == "passed", "serve: without --no-self-test it starts after the base suite passed (gate: passed)", gated)
s.close()
out = subprocess.run([SB, "serve", "--no-apparmor", "--venv", VENV, "--max-concurrent", "0"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
check(out.returncode == 2 and not out.stdout, "serve: --max-concurrent 0 is refused (exit 2) before anything starts", out.stderr[-200:])

# 23-25. --pool N --preload: warm runs (a run with mnt_dir still starts cold), health, and bad preloads.
s = Server("--no-self-test", "--pool", "2", "--preload", "json", "--preload", "decimal")
pooled = s.ask({"id": "p0", "op": "health"})["result"]
first = s.ask({"id": "p1", "op": "run", "code": "import sys; print('json' in sys.modules and 'decimal' in sys.modules, sys.argv[1:], sys.stdin.read())",
               "args": ["x"], "stdin": "in"})["result"]
for attempt in range(300):  # its slot's replacement gets ready (health says when)
    if s.ask({"id": f"r{attempt}", "op": "health"})["result"]["pool"]["ready"] == 2:
        break
    time.sleep(0.1)
streamed = s.ask({"id": "p2", "op": "run", "code": "print('s')", "stream": True})
events = [r for r in s.replies[json.dumps("p2")] if "event" in r]
cold = s.ask({"id": "p3", "op": "run", "code": "import sys; print('json' in sys.modules)", "mnt_dir": mnt})["result"]
hashed = s.ask({"id": "p4", "op": "run", "code": "import sys; print(sys.flags.hash_randomization)", "env": {"PYTHONHASHSEED": "0"}})["result"]
check(pooled["pool"]["size"] == 2 and pooled["pool"]["ready"] >= 1 and pooled["pool"]["preload"] == ["json", "decimal"] and first["warm"] is True
      and first["stdout"] == "True ['x'] in\n" and streamed["result"]["warm"] is True and events
      and cold["warm"] is False and cold["stdout"] == "False\n" and hashed["warm"] is False and hashed["stdout"] == "0\n",
      "serve --pool 2 --preload json --preload decimal: runs are warm with json loaded (streamed too); a run with mnt_dir, or with a variable only a start reads (PYTHONHASHSEED), starts cold; health shows the pool",
      (pooled.get("pool"), first, cold))
many = [{"id": f"w{n}", "op": "run", "code": f"print({n})"} for n in range(8)]
for request in many:
    s.send(request)
answers = [s.wait_for(request["id"]) for request in many]
check(all(a["result"]["stdout"] == f"{n}\n" for n, a in enumerate(answers)) and any(a["result"]["warm"] for a in answers)
      and s.close() == 0,
      "serve --pool: 8 runs at once are all answered (warm while slots last, then cold); end of stdin exits 0",
      [a["result"].get("warm") for a in answers])
bad = subprocess.run([SB, "serve", "--no-apparmor", "--venv", VENV, "--no-self-test", "--pool", "1", "--preload", "sandbox_no_such_module"],
                     capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
lonely = subprocess.run([SB, "serve", "--no-apparmor", "--venv", VENV, "--no-self-test", "--preload", "json"],
                        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
check(bad.returncode == 2 and "No module named 'sandbox_no_such_module'" in bad.stderr and not bad.stdout
      and lonely.returncode == 2 and "--pool" in lonely.stderr,
      "serve: a preload that fails to import, or --preload without --pool, is refused (exit 2) before serving",
      (bad.returncode, bad.stderr[-300:], lonely.stderr[-200:]))

# 26. A pipe that closes right after its one request still gets the answer (the reply was once
# dropped when the connection closed before its writer had taken it), with and without a pool.
lost = []
for attempt in range(40):
    extra = ["--pool", "1"] if attempt % 2 else []
    out = subprocess.run(BASE + ["--no-self-test"] + extra, input=b'{"id": 1, "op": "run", "code": "print(1)"}\n',
                         capture_output=True, timeout=60)
    if b'"stdout": "1\\n"' not in out.stdout:
        lost.append((attempt, out.returncode, out.stdout[-200:]))
check(not lost, "serve: a request followed at once by the end of stdin is answered before the exit (40 tries, with and without --pool)", lost[:3])
subprocess.run(["rm", "-rf", work])
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(0 if failed == 0 else 1)
