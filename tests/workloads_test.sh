#!/usr/bin/env bash
# Real Python work under the default limits: the agent snippets of the newcomer issue (pandas CSV
# in /mnt, a matplotlib PNG, a scikit-learn fit, sqlite in /mnt, multiprocessing.Pool,
# subprocess, asyncio, threads), each with the network on and off, through `sandbox run --json`.
# Usage: tests/workloads_test.sh SANDBOX_BINARY VENV LABEL
# VENV must hold pandas, matplotlib and scikit-learn (tests/run.sh makes a Debian and a uv one).
# Ends with the line "N passed, N failed, N skipped".
set -u
SB=$1
VENV=$2
LABEL=$3
. "$(dirname "$0")/lib.sh"
plan 22
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sandbox-workloads-XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# snippet NAME NETWORK CHECK CODE: runs CODE with a fresh mount dir; CHECK is Python over the
# JSON result `d` (stdout, changed_files, outputs …) that must hold.
snippet() {
  local name=$1 network=$2 check_code=$3 code=$4 out
  local dir; dir=$(mktemp -d "$TMP/run-XXXXXX")
  mkdir "$dir/mnt"
  out=$("$SB" run --no-apparmor --venv "$VENV" "--$network-network" --json --timeout 120 --mnt-dir "$dir/mnt" \
    --output plot.png --code "$code" 2>/dev/null)
  on_failure=show check "$LABEL, network ${network%e}d: $name" python3 -c '
import json, sys
d = json.loads(sys.argv[1])
ok = d["returncode"] == 0 and d["limit_hit"] is None and "Fontconfig error" not in d["stderr"] and ('"$check_code"')
sys.exit(0 if ok else 1)' "$out"
}
show() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("#  ", d["returncode"], d["limit_hit"], repr(d["stdout"][-300:]), repr(d["stderr"][-600:]))' "$out" 2>/dev/null || echo "#   $out" | head -c 600; }

for network in enable disable; do
  snippet "pandas writes and reads a CSV in /mnt" "$network" 'd["stdout"] == "6\n" and "data.csv" in d["changed_files"]' '
import pandas as pd
pd.DataFrame({"k": ["a", "b", "a"], "v": [1, 2, 3]}).to_csv("/mnt/data.csv", index=False)
df = pd.read_csv("/mnt/data.csv")
print(df.groupby("k")["v"].sum().sum())'
  snippet "matplotlib saves a PNG (Agg, no display, no font error)" "$network" \
    'any(o["path"] == "plot.png" and o["size"] > 1000 for o in d["outputs"]) and d["stdout"] == "saved\n"' '
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
plt.plot([1, 2, 3], [3, 1, 2])
plt.title("sandbox")
plt.savefig("/mnt/plot.png")
print("saved")'
  snippet "matplotlib finds its font list (built once in a sandbox) and does not rebuild it" "$network" \
    'd["stdout"] == "1 True\n"' '
import os
p = "/tmp/.cache/matplotlib"
names = [n for n in os.listdir(p) if n.startswith("fontlist-")]
before = os.stat(os.path.join(p, names[0])).st_mtime_ns
import matplotlib.font_manager
print(len(names), os.stat(os.path.join(p, names[0])).st_mtime_ns == before)'
  snippet "scikit-learn fits a small model" "$network" 'float(d["stdout"]) > 0.9' '
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
X, y = load_iris(return_X_y=True)
print(LogisticRegression(max_iter=500).fit(X, y).score(X, y))'
  snippet "sqlite in /mnt" "$network" 'd["stdout"] == "[(1, 2)]\n" and "db.sqlite" in d["changed_files"]' '
import sqlite3
c = sqlite3.connect("/mnt/db.sqlite")
c.execute("create table t (a, b)"); c.execute("insert into t values (1, 2)"); c.commit()
print(c.execute("select * from t").fetchall())'
  snippet "multiprocessing.Pool" "$network" 'd["stdout"] == "[0, 1, 4, 9]\n"' '
import multiprocessing
def square(x): return x * x
if __name__ == "__main__":
    with multiprocessing.Pool(2) as pool:
        print(pool.map(square, range(4)))'
  snippet "subprocess" "$network" 'd["stdout"] == "hi\nchild\n"' '
import subprocess, sys
print(subprocess.run(["echo", "hi"], capture_output=True, text=True).stdout, end="")
print(subprocess.run([sys.executable, "-c", "print(\"child\")"], capture_output=True, text=True).stdout, end="")'
  snippet "asyncio" "$network" 'd["stdout"] == "[0, 1, 2]\n"' '
import asyncio
async def job(i):
    await asyncio.sleep(0.01)
    return i
async def main():
    return await asyncio.gather(*(job(i) for i in range(3)))
print(asyncio.run(main()))'
  snippet "threads" "$network" 'd["stdout"] == "45\n"' '
from concurrent.futures import ThreadPoolExecutor
with ThreadPoolExecutor(4) as pool:
    print(sum(pool.map(lambda x: x, range(10))))'
done
# The venv has bytecode (uv needs --compile-bytecode): the self-test header says nothing about it.
out=$("$SB" --no-apparmor --venv "$VENV" 2>&1 | head -n 12)
check "$LABEL: the self-test header raises no bytecode warning for a compiled venv" \
  test -z "$(grep 'no bytecode' <<<"$out")"
out=$("$SB" run --no-apparmor --venv "$VENV" --json --code 'import pandas, time; print("ok")' 2>/dev/null)
check "$LABEL: import pandas runs (a warm import after the compiled install)" \
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["stdout"] == "ok\n", d' "$out"
# A session: a matplotlib figure shown (plt.show()) and one left open come back as PNG images,
# with nothing on stderr; a pandas frame defined in one cell is used by the next.
printf '%s\n' '{"code": "import pandas as pd\ndf = pd.DataFrame({\"v\": [1, 2, 3]})"}' \
  '{"code": "import matplotlib.pyplot as plt\nplt.plot(df[\"v\"])\nplt.show()\nplt.figure()\nplt.bar([1], [2])\nint(df.v.sum())"}' |
  "$SB" session --no-apparmor --venv "$VENV" > "$TMP/session.out" 2>/dev/null
check "$LABEL: a session returns its figures as PNG images and keeps a DataFrame between cells" python3 -c '
import base64, json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
images = [base64.b64decode(i["b64"]) for i in lines[-1]["images"]]
assert len(lines) == 2 and lines[-1]["value"] == "6" and lines[-1]["stderr"] == "", lines[-1]
assert len(images) == 2 and all(i.startswith(b"\x89PNG\r\n\x1a\n") and len(i) > 1000 for i in images)' "$TMP/session.out"
# A warm pool with pandas preloaded: the payload finds the venv's pandas in sys.modules, and a
# matplotlib figure saved by a warm run is a real PNG. One request at a time (requests run
# concurrently: a second one sent at once could take the slot first).
check "$LABEL: a pool with pandas preloaded: the venv's pandas is in sys.modules, and a warm run plots" python3 -c '
import json, os, subprocess, sys
server = subprocess.Popen([sys.argv[1], "serve", "--no-apparmor", "--venv", sys.argv[2], "--no-self-test", "--pool", "1",
                           "--preload", "pandas"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
def ask(id, code):
    server.stdin.write((json.dumps({"id": id, "op": "run", "code": code}) + "\n").encode())
    server.stdin.flush()
    return json.loads(server.stdout.readline())["result"]
found = ask(1, "import sys\nm = sys.modules.get(\"pandas\")\nprint(m is not None and m.__file__.startswith(sys.prefix + \"/\"), sys.prefix)")
plot = ask(2, "import pandas as pd, io\nimport matplotlib\nmatplotlib.use(\"Agg\")\nimport matplotlib.pyplot as plt\nbuffer = io.BytesIO()\nplt.plot(pd.Series([1, 3, 2]))\nplt.savefig(buffer, format=\"png\")\nprint(buffer.getvalue()[:4] == b\"\\x89PNG\", len(buffer.getvalue()) > 1000)")
server.stdin.close()
assert server.wait(timeout=60) == 0
assert found["warm"] is True and found["stdout"].split() == ["True", os.path.realpath(sys.argv[2])], found
assert plot["stdout"] == "True True\n", plot' "$SB" "$VENV"
finish
