#!/usr/bin/env python3
"""The serve rows of `make bench`: requests per second through `sandbox serve` against the same
number of one-shot `sandbox run` processes, and the latency streaming adds, interleaved.

Usage: tests/bench_serve.py SANDBOX_BINARY VENV [ROUNDS]   (default 40; never fails on a slow machine)
"""
import json, statistics, subprocess, sys, time

SB, VENV = sys.argv[1:3]
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 40
CODE = "print('hello')"
server = subprocess.Popen([SB, "serve", "--no-apparmor", "--venv", VENV, "--no-self-test", "--max-concurrent", "2"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def ask(requests):
    """Sends the requests at once; returns when every one has its result."""
    server.stdin.write(b"".join((json.dumps(r) + "\n").encode() for r in requests))
    server.stdin.flush()
    waiting = {r["id"] for r in requests}
    while waiting:
        reply = json.loads(server.stdout.readline())
        if "event" not in reply:
            waiting.discard(reply["id"])


ask([{"id": "warm", "op": "run", "code": CODE}])
serve_times, cli_times, plain, streamed = [], [], [], []
for round in range(4):  # throughput: ROUNDS requests, 2 at a time, against ROUNDS CLI runs, 2 at a time
    start = time.monotonic()
    ask([{"id": f"t{round}-{n}", "op": "run", "code": CODE} for n in range(ROUNDS)])
    serve_times.append(time.monotonic() - start)
    start = time.monotonic()
    for n in range(0, ROUNDS, 2):
        pair = [subprocess.Popen([SB, "run", "--no-apparmor", "--venv", VENV, "--code", CODE], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL) for _ in range(2)]
        for process in pair:
            process.wait()
    cli_times.append(time.monotonic() - start)
for n in range(ROUNDS):  # one request at a time: with and without streaming
    for stream, samples in ((False, plain), (True, streamed)):
        start = time.monotonic()
        ask([{"id": f"l{n}{stream}", "op": "run", "code": CODE, "stream": stream}])
        samples.append((time.monotonic() - start) * 1000)
server.stdin.close()
server.wait()
serve_rate = ROUNDS / statistics.median(serve_times)
cli_rate = ROUNDS / statistics.median(cli_times)
print(f"{'serve: requests/s (print(hello), 2 at a time)':58} {serve_rate:9.1f}")
print(f"{'CLI: sandbox run processes/s (2 at a time)':58} {cli_rate:9.1f}   serve/CLI {serve_rate / cli_rate:.2f}x")
print(f"{'serve: one run, result only (median ms)':58} {statistics.median(plain):9.2f}")
print(f"{'serve: one run, streamed (median ms)':58} {statistics.median(streamed):9.2f}   "
      f"+{statistics.median(streamed) - statistics.median(plain):.2f} ms")
