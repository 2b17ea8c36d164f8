// The benchmark behind `make bench`: sandbox vs raw bwrap vs bare Python, interleaved.
//
// Built with: swiftc -O -parse-as-library -D SANDBOX_LIBRARY sandbox.swift tests/bench.swift
// Run with:   tests/build/bench VENV SANDBOX_BINARY [RESULTS_JSON]   (SANDBOX_BENCH_RUNS=N, default 40)
//
// For payload print('hello'), per network mode, in one interleaved loop (A B C D E A B C D E …):
//   bare    venv/bin/python -c …, spawned directly;
//   ungated bwrap with the same argv but the interpreter started directly (no gate), ended
//           when bwrap's launcher exits, as before the lifecycle guarantee: what it costs;
//   bwrap   bwrap with exactly the argv and descriptors `Sandbox.run` builds, run through the
//           same lifecycle (gate, prlimit, pid 1's pidfd), so the only difference to `api` is
//           the sandbox's own work (validation, snapshots, result);
//   cli     `sandbox run --code …`, the whole process;
//   api     `Sandbox.run` in this process; and `async` with 4 concurrent tasks (wall time / 4).
// Plus: change tracking alone with 10, 1,000 and 10,000 files (two snapshots and a diff), a
// whole run with 10,000 files in the mount dir, 2-worker throughput, bwrap vs sandbox, a
// session's cell round trip beside a one-shot run, and warm pools against cold runs (print,
// pandas preloaded, 2-worker throughput).
// It never fails on a slow machine: it reports.

import Glibc

/// CPU seconds this process used so far (every thread, no children).
func processCPUSeconds() -> Double {
  var usage = rusage()
  getrusage(RUSAGE_SELF.rawValue, &usage)
  return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

func milliseconds(_ duration: Duration) -> Double {
  let (seconds, attoseconds) = duration.components
  return Double(seconds) * 1000 + Double(attoseconds) / 1e15
}

func measure(_ body: () -> Void) -> Double {
  let start = ContinuousClock.now
  body()
  return milliseconds(ContinuousClock.now - start)
}

func percentile(_ samples: [Double], _ fraction: Double) -> Double {
  let sorted = samples.sorted()
  guard !sorted.isEmpty else { return .nan }
  return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * fraction).rounded()))]
}

func format(_ value: Double, _ digits: Int = 2) -> String {
  guard value.isFinite else { return "-" }
  var scale = 1.0
  for _ in 0..<digits { scale *= 10 }
  let rounded = (value * scale).rounded() / scale
  var text = String(rounded)
  if let dot = text.firstIndex(of: ".") {
    let decimals = text.distance(from: dot, to: text.endIndex) - 1
    if decimals < digits { text += String(repeating: "0", count: digits - decimals) }
  }
  return text
}

func padded(_ text: String, _ width: Int) -> String {
  text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

struct Row {
  var name: String
  var median: Double
  var p90: Double
  var unit: String
  var versusBare: Double?
  var versusBwrap: Double?
}

func spawnOrDie(_ request: Sandbox.Spawner.Request) -> Sandbox.Spawner.Outcome {
  do throws(SandboxError) {
    let outcome = try Sandbox.Spawner.runToCompletion(request)
    if outcome.status != .exited(0) {
      print("bench: \(request.executable) failed: \(String(decoding: outcome.stderr, as: UTF8.self))")
      exit(1)
    }
    return outcome
  } catch {
    print("bench: \(error.description)")
    exit(1)
  }
}

func superviseOrDie(_ launch: Sandbox.Lifecycle.Launch) {
  do throws(SandboxError) {
    let exit = try Sandbox.Lifecycle.supervise(launch)
    if exit.status != .exited(0) || !exit.started || !exit.allGone { print("bench: raw bwrap failed: \(String(decoding: exit.stderr, as: UTF8.self))"); Glibc.exit(1) }
  } catch {
    print("bench: \(error.description)")
    Glibc.exit(1)
  }
}

/// bwrap with `arguments` (the gate already replaced by the interpreter), its inputs fed, and
/// done when its launcher exits: the lifecycle before it had a guarantee.
func runUngated(_ bwrap: String, _ arguments: [String], _ inputs: [Sandbox.Spawner.ChildInput]) {
  var childFDs: [Int32] = []
  var parentFDs: [Int32] = []
  var feeds: [(Int32, [UInt8])] = []
  let null = open("/dev/null", O_RDWR | O_CLOEXEC)
  childFDs = [null, null, null]
  for input in inputs {
    switch input {
    case .bytes(let bytes):
      guard let pair = try? Sandbox.Sys.makeSocketPair() else { exit(1) }
      childFDs.append(pair.child)
      parentFDs.append(pair.child)
      feeds.append((pair.parent, bytes))
    case .descriptor(let fd): childFDs.append(fd)
    case .report, .channel: childFDs.append(null)
    }
  }
  guard let child = try? Sandbox.Spawner.spawn(bwrap, arguments: arguments, environment: [], descriptors: childFDs) else { exit(1) }
  for fd in parentFDs { close(fd) }
  for (fd, bytes) in feeds {
    Sandbox.Sys.sendAll(fd, bytes)
    close(fd)
  }
  var entry = pollfd(fd: child.pidFD, events: Int16(POLLIN), revents: 0)
  _ = poll(&entry, 1, -1)
  _ = Sandbox.Spawner.reap(child)
  close(child.pidFD)
  close(null)
}

func runOrDie(_ sandbox: Sandbox, _ code: String, mount: String? = nil) {
  do throws(SandboxError) {
    let result = try sandbox.run(.code(code), mountDirectory: mount)
    if result.returnCode != 0 { print("bench: payload failed: \(result.stderrText)"); exit(1) }
  } catch {
    print("bench: \(error.description)")
    exit(1)
  }
}

/// The system calls a snapshot cannot avoid (readdir, fstatat), with no strings or tables:
/// the floor any change tracker based on stat has on this machine.
func walkWithoutBookkeeping(_ root: String) {
  var pending: [Int32] = [open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)]
  while let fd = pending.popLast() {
    guard fd >= 0, let directory = fdopendir(fd) else { continue }
    while let entry = readdir(directory) {
      var info = stat()
      let isDirectory = entry.pointee.d_type == UInt8(DT_DIR)
      withUnsafeBytes(of: entry.pointee.d_name) { raw in
        guard let name = raw.baseAddress?.assumingMemoryBound(to: CChar.self), name.pointee != 46 else { return }
        if isDirectory {
          pending.append(openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC))
        } else {
          _ = fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW)
        }
      }
    }
    closedir(directory)
  }
}

@main
enum Bench {
  static func main() async {
    let arguments = CommandLine.arguments
    guard arguments.count >= 3 else {
      print("usage: bench VENV SANDBOX_BINARY [RESULTS_JSON]")
      exit(2)
    }
    let venv = arguments[1]
    let binary = arguments[2]
    let resultsPath = arguments.count > 3 ? arguments[3] : "tests/bench-results.json"
    let runs = Int(Sandbox.Sys.environmentValue("SANDBOX_BENCH_RUNS") ?? "") ?? 40
    let code = "print('hello')"
    var rows: [Row] = []
    var json: [String] = []

    for network in [true, false] {
      let label = network ? "network on" : "network off"
      let sandbox: Sandbox
      do throws(SandboxError) {
        sandbox = try Sandbox(config: SandboxConfig(venvPath: venv, appArmor: .disabled, networkEnabled: network))
      } catch {
        print("bench: \(error.description)")
        exit(1)
      }
      let environment = (try? Sandbox.Bwrap.makePayloadEnvironment(venvRoot: sandbox.venv.root, extra: [:])) ?? []
      let invocation = Sandbox.Bwrap.makeInvocation(sandbox.makePlan(.code(code), mountDir: nil, environment: environment))
      let limits = sandbox.config.limits
      let bare = Sandbox.Spawner.Request(executable: sandbox.venv.python, arguments: ["-c", code], environment: [])
      let raw = Sandbox.Lifecycle.Launch(executable: sandbox.host.bwrapPath, arguments: invocation.arguments, inputs: invocation.inputs, limits: limits)
      let gate = sandbox.host.layout.bootstrap.command(python: sandbox.venv.python, script: Sandbox.Bwrap.Layout.codePath)
      let ungated = Array(invocation.arguments.dropLast(gate.count)) + [sandbox.venv.python, Sandbox.Bwrap.Layout.codePath]
      let cli = Sandbox.Spawner.Request(
        executable: binary,
        arguments: ["run", "--no-apparmor", "--venv", venv, network ? "--enable-network" : "--disable-network", "--code", code],
        environment: ["PATH=/usr/bin:/bin"])
      // The layers' shares of the cold path. `original`: the original tool's own layout (a tmpfs
      // root, the system dirs and the venv read-only, /proc, /dev, /tmp, the network as asked),
      // bwrap spawned and waited for, python -c: no gate, no seccomp, no masks, no handshake.
      // `nomasks`: raw bwrap with our argv and lifecycle without the /proc masking mounts;
      // `noseccomp`: Sandbox.run with the allow-all filter (--no-seccomp).
      var original = ["--unshare-all"] + (network ? ["--share-net"] : []) + ["--die-with-parent", "--new-session"]
      original += sandbox.host.layout.systemMounts.flatMap(\.bwrapArguments)
      original += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--ro-bind", sandbox.venv.root, sandbox.venv.root]
      original += ["--", sandbox.venv.python, "-c", code]
      let originalLayout = Sandbox.Spawner.Request(executable: sandbox.host.bwrapPath, arguments: original, environment: [])
      let masks = sandbox.host.layout.procMasks.flatMap(\.bwrapArguments)
      var unmasked = invocation.arguments
      if let at = (0...(unmasked.count - masks.count)).first(where: { Array(unmasked[$0..<($0 + masks.count)]) == masks }) {
        unmasked.removeSubrange(at..<(at + masks.count))
      }
      let noMasks = Sandbox.Lifecycle.Launch(executable: sandbox.host.bwrapPath, arguments: unmasked, inputs: invocation.inputs, limits: limits)
      let noSeccomp = try? Sandbox(config: SandboxConfig(venvPath: venv, appArmor: .disabled, networkEnabled: network, seccompEnabled: false))
      for _ in 0..<3 {  // warm caches
        _ = spawnOrDie(bare)
        _ = spawnOrDie(originalLayout)
        superviseOrDie(raw)
        runUngated(sandbox.host.bwrapPath, ungated, invocation.inputs)
        runOrDie(sandbox, code)
      }
      var samples: [String: [Double]] = [
        "bare": [], "original": [], "ungated": [], "nomasks": [], "bwrap": [], "cli": [], "api": [], "noseccomp": [], "async": [],
      ]
      for _ in 0..<runs {
        samples["bare"]!.append(measure { _ = spawnOrDie(bare) })
        samples["original"]!.append(measure { _ = spawnOrDie(originalLayout) })
        samples["nomasks"]!.append(measure { superviseOrDie(noMasks) })
        if let noSeccomp { samples["noseccomp"]!.append(measure { runOrDie(noSeccomp, code) }) }
        samples["ungated"]!.append(measure { runUngated(sandbox.host.bwrapPath, ungated, invocation.inputs) })
        samples["bwrap"]!.append(measure { superviseOrDie(raw) })
        samples["cli"]!.append(measure { _ = spawnOrDie(cli) })
        samples["api"]!.append(measure { runOrDie(sandbox, code) })
      }
      for _ in 0..<max(4, runs / 4) {
        let start = ContinuousClock.now
        await withTaskGroup(of: Void.self) { group in
          for _ in 0..<4 { group.addTask { _ = try? await sandbox.run(.code(code)) } }
        }
        samples["async"]!.append(milliseconds(ContinuousClock.now - start) / 4)
      }
      let bareMedian = percentile(samples["bare"]!, 0.5)
      let bwrapMedian = percentile(samples["bwrap"]!, 0.5)
      for (key, title) in [
        ("bare", "bare python"), ("original", "bwrap, the original tool's layout"), ("ungated", "bwrap, no gate, ends with its launcher"),
        ("nomasks", "raw bwrap, same lifecycle, no /proc masks"), ("bwrap", "raw bwrap, same argv and lifecycle"),
        ("cli", "sandbox run (CLI)"),
        ("api", "Sandbox.run (in-process)"), ("noseccomp", "Sandbox.run, allow-all seccomp filter"), ("async", "async, 4 concurrent (wall/4)"),
      ] where !samples[key]!.isEmpty {
        let median = percentile(samples[key]!, 0.5)
        let p90 = percentile(samples[key]!, 0.9)
        rows.append(Row(name: "\(label): \(title)", median: median, p90: p90, unit: "ms",
          versusBare: median / bareMedian, versusBwrap: key == "bare" ? nil : median / bwrapMedian))
        json.append("{\"network\": \(network), \"variant\": \"\(key)\", \"median_ms\": \(median), \"p90_ms\": \(p90), \"runs\": \(samples[key]!.count), \"vs_bare\": \(median / bareMedian), \"vs_bwrap\": \(median / bwrapMedian)}")
      }
      // Against the original layout, and what each layer adds (differences of medians, ms).
      let m = { (key: String) in percentile(samples[key]!, 0.5) }
      let originalMedian = m("original")
      let shares: [(String, String, Double)] = [
        ("layout", "our mounts beyond the original's (etc, /dev/shm, remounts, masks), no gate", m("ungated") - originalMedian),
        ("masks", "of which the /proc masking mounts", m("bwrap") - m("nomasks")),
        ("handshake", "the gate, prlimit and pid 1's pidfd (the lifecycle)", m("bwrap") - m("ungated")),
        ("host", "Sandbox.run's own work (checks, result) over raw bwrap", m("api") - m("bwrap")),
        ("seccomp", "the filter over an allow-all one", samples["noseccomp"]!.isEmpty ? .nan : m("api") - m("noseccomp")),
        ("cli", "the CLI process over Sandbox.run", m("cli") - m("api")),
      ]
      for (_, title, value) in shares {
        rows.append(Row(name: "\(label): share: \(title)", median: value, p90: .nan, unit: "ms"))
      }
      rows.append(Row(name: "\(label): CLI x original layout", median: m("cli") / originalMedian, p90: .nan, unit: "x"))
      rows.append(Row(name: "\(label): Sandbox.run x original layout", median: m("api") / originalMedian, p90: .nan, unit: "x"))
      json.append("{\"network\": \(network), \"variant\": \"layer_shares\", \"cli_vs_original\": \(m("cli") / originalMedian), \"api_vs_original\": \(m("api") / originalMedian), " + shares.map { "\"\($0.0)_ms\": \($0.2.isNaN ? "null" : String($0.2))" }.joined(separator: ", ") + "}")

      // Throughput: two workers, each running back to back, in alternating rounds (raw bwrap,
      // sandbox, raw bwrap, …) so machine drift cancels; the ratio is the median round's.
      func throughput(_ body: @escaping @Sendable () -> Void) async -> Double {
        let perWorker = max(6, runs / 8)
        let start = ContinuousClock.now
        await withTaskGroup(of: Void.self) { group in
          for _ in 0..<2 {
            group.addTask {
              await withCheckedContinuation { continuation in
                Sandbox.Sys.startThread {
                  for _ in 0..<perWorker { body() }
                  continuation.resume()
                }
              }
            }
          }
        }
        return Double(2 * perWorker) / (milliseconds(ContinuousClock.now - start) / 1000)
      }
      var rawRates: [Double] = []
      var sandboxRates: [Double] = []
      var ratios: [Double] = []
      for _ in 0..<5 {
        let rawRate = await throughput { superviseOrDie(raw) }
        let sandboxRate = await throughput { runOrDie(sandbox, code) }
        rawRates.append(rawRate)
        sandboxRates.append(sandboxRate)
        ratios.append(sandboxRate / rawRate)
      }
      let rawRate = percentile(rawRates, 0.5)
      let sandboxRate = percentile(sandboxRates, 0.5)
      let ratio = percentile(ratios, 0.5)
      rows.append(Row(name: "\(label): 2 workers, raw bwrap", median: rawRate, p90: .nan, unit: "runs/s"))
      rows.append(Row(name: "\(label): 2 workers, Sandbox.run", median: sandboxRate, p90: .nan, unit: "runs/s", versusBwrap: ratio))
      json.append("{\"network\": \(network), \"variant\": \"throughput_2_workers\", \"bwrap_runs_per_second\": \(rawRate), \"sandbox_runs_per_second\": \(sandboxRate), \"ratio\": \(ratio), \"round_ratios\": [\(ratios.map { String($0) }.joined(separator: ", "))]}")
    }

    // --isolated-network (pasta): Sandbox.run in the host's namespace and through pasta, interleaved.
    if Sandbox.NetworkHelper.unavailability() == nil,
      let shared = try? Sandbox(config: SandboxConfig(venvPath: venv, appArmor: .disabled)),
      let isolated = try? Sandbox(
        config: { var config = SandboxConfig(venvPath: venv, appArmor: .disabled); config.isolatedNetwork = true; return config }())
    {
      var host: [Double] = []
      var through: [Double] = []
      for round in 0..<(max(10, runs / 2) + 1) {
        let h = measure { runOrDie(shared, code) }
        let t = measure { runOrDie(isolated, code) }
        if round > 0 { host.append(h); through.append(t) }
      }
      let hostMedian = percentile(host, 0.5)
      rows.append(Row(name: "network on, host namespace: Sandbox.run", median: hostMedian, p90: percentile(host, 0.9), unit: "ms", versusBare: 1))
      rows.append(Row(name: "network on, isolated (pasta): Sandbox.run", median: percentile(through, 0.5), p90: percentile(through, 0.9), unit: "ms", versusBare: percentile(through, 0.5) / hostMedian))
      json.append("{\"variant\": \"isolated_network\", \"host_ms\": \(hostMedian), \"isolated_ms\": \(percentile(through, 0.5))}")
    } else {
      print("bench: pasta (passt) is not usable here: the isolated-network rows are left out")
    }

    // A plotting run (matplotlib, Agg, one PNG): bare python on the host (its font cache warm),
    // Sandbox.run with the font list built once, and Sandbox.run without it (matplotlib scans
    // the fonts itself), interleaved. SANDBOX_BENCH_PLOT_VENV names a venv with matplotlib.
    if let plotVenv = Sandbox.Sys.environmentValue("SANDBOX_BENCH_PLOT_VENV"), !plotVenv.isEmpty,
      let withList = try? Sandbox(config: SandboxConfig(venvPath: plotVenv, appArmor: .disabled))
    {
      let plot = "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.savefig('/dev/null', format='png')"
      var withoutList = withList
      withoutList.fontList = nil
      let bare = Sandbox.Spawner.Request(
        executable: withList.venv.python, arguments: ["-c", plot],
        environment: ["HOME=\(Sandbox.Sys.environmentValue("HOME") ?? "/root")", "MPLBACKEND=Agg"])
      var samples: [String: [Double]] = ["bare": [], "list": [], "nolist": []]
      for round in 0..<(max(6, runs / 4) + 1) {
        let b = measure { _ = spawnOrDie(bare) }
        let l = measure { runOrDie(withList, plot) }
        let n = measure { runOrDie(withoutList, plot) }
        if round == 0 { continue }  // warm-up
        samples["bare"]!.append(b)
        samples["list"]!.append(l)
        samples["nolist"]!.append(n)
      }
      let bareMedian = percentile(samples["bare"]!, 0.5)
      for (key, title) in [("bare", "bare python"), ("list", "Sandbox.run, font list built once"), ("nolist", "Sandbox.run, no font list")] {
        let median = percentile(samples[key]!, 0.5)
        rows.append(Row(name: "matplotlib plot: \(title)", median: median, p90: percentile(samples[key]!, 0.9), unit: "ms", versusBare: median / bareMedian))
        json.append("{\"variant\": \"plot_\(key)\", \"median_ms\": \(median), \"vs_bare\": \(median / bareMedian)}")
      }
    } else {
      print("bench: SANDBOX_BENCH_PLOT_VENV is not set (a venv with matplotlib): the plotting rows are left out")
    }

    // A session cell round trip for `1+1` (the caller's wall time of `execute`: host side, the
    // channel both ways and the interpreter's own few microseconds), with and without a mount
    // dir (two walks of an empty dir per cell), interleaved with a one-shot run of the same code.
    if let sessionSandbox = try? Sandbox(config: SandboxConfig(venvPath: venv, appArmor: .disabled)),
      let mount = try? SandboxMountDirectory(prefix: "sandbox-bench-"),
      let plain = try? await sessionSandbox.openSession(), let mounted = try? await sessionSandbox.openSession(mountDirectory: mount.path)
    {
      var samples: [String: [Double]] = ["cell": [], "cell_mnt": [], "oneshot": []]
      for round in 0..<(max(40, runs) + 1) {
        var start = ContinuousClock.now
        _ = try? await plain.execute("1+1")
        let cell = milliseconds(ContinuousClock.now - start)
        start = ContinuousClock.now
        _ = try? await mounted.execute("1+1")
        let cellMount = milliseconds(ContinuousClock.now - start)
        let oneShot = measure { runOrDie(sessionSandbox, "print(1+1)") }
        if round == 0 { continue }  // warm-up
        samples["cell"]!.append(cell)
        samples["cell_mnt"]!.append(cellMount)
        samples["oneshot"]!.append(oneShot)
      }
      let oneShotMedian = percentile(samples["oneshot"]!, 0.5)
      for (key, title) in [("cell", "session cell 1+1"), ("cell_mnt", "session cell 1+1, with a mount dir"), ("oneshot", "one-shot Sandbox.run of print(1+1)")] {
        let median = percentile(samples[key]!, 0.5)
        rows.append(Row(name: title, median: median, p90: percentile(samples[key]!, 0.9), unit: "ms"))
        json.append("{\"variant\": \"session_\(key)\", \"median_ms\": \(median), \"p90_ms\": \(percentile(samples[key]!, 0.9)), \"vs_oneshot\": \(median / oneShotMedian)}")
      }
      await plain.close()
      await mounted.close()
      mount.remove()
    }

    // Warm pools. print('hello') from a ready slot, dispatch to result (the payload, its end, the
    // teardown and the after-snapshot), interleaved with a cold Sandbox.run of the same code, each
    // measured with the pool full (no refill sharing the CPU); with pandas preloaded (the plot
    // venv), `import pandas; print(pandas.__version__)` against the same cold run; and 2-worker
    // throughput, warm against cold, in alternating rounds.
    func poolFull(_ pool: SandboxPool) async {
      for _ in 0..<5000 where pool.readyCount < pool.options.size { try? await Task.sleep(for: .milliseconds(1)) }
    }
    func warmAgainstCold(_ title: String, _ key: String, _ sandbox: Sandbox, _ pool: SandboxPool, _ payload: String, rounds: Int) async {
      var warm: [Double] = []
      var cold: [Double] = []
      var notWarm = 0
      for round in 0..<(rounds + 1) {
        await poolFull(pool)
        let start = ContinuousClock.now
        let run = try? await pool.run(.code(payload))
        let w = milliseconds(ContinuousClock.now - start)
        if run?.warm != true || run?.result.returnCode != 0 { notWarm += 1 }
        await poolFull(pool)
        let c = measure { runOrDie(sandbox, payload) }
        if round == 0 { continue }  // warm-up
        warm.append(w)
        cold.append(c)
      }
      let ratio = percentile(warm, 0.5) / percentile(cold, 0.5)
      rows.append(Row(name: "pool: \(title), warm (x cold: \(format(ratio, 3)))", median: percentile(warm, 0.5), p90: percentile(warm, 0.9), unit: "ms"))
      rows.append(Row(name: "pool: \(title), cold Sandbox.run", median: percentile(cold, 0.5), p90: percentile(cold, 0.9), unit: "ms"))
      json.append("{\"variant\": \"\(key)\", \"warm_median_ms\": \(percentile(warm, 0.5)), \"warm_p90_ms\": \(percentile(warm, 0.9)), \"cold_median_ms\": \(percentile(cold, 0.5)), \"vs_cold\": \(ratio), \"runs\": \(warm.count), \"not_warm\": \(notWarm)}")
    }
    if let poolSandbox = try? Sandbox(config: SandboxConfig(venvPath: venv, appArmor: .disabled)),
      let pool = try? SandboxPool(sandbox: poolSandbox, options: .init(size: 2))
    {
      await warmAgainstCold("print('hello')", "pool_print", poolSandbox, pool, code, rounds: max(20, runs))
      let perWorker = max(6, runs / 4)
      func rate(_ body: @escaping @Sendable () async -> Void) async -> Double {
        let start = ContinuousClock.now
        await withTaskGroup(of: Void.self) { group in
          for _ in 0..<2 { group.addTask { for _ in 0..<perWorker { await body() } } }
        }
        return Double(2 * perWorker) / (milliseconds(ContinuousClock.now - start) / 1000)
      }
      var warmRates: [Double] = []
      var coldRates: [Double] = []
      for _ in 0..<3 {
        await poolFull(pool)
        warmRates.append(await rate { _ = try? await pool.run(.code(code)) })
        await poolFull(pool)
        coldRates.append(await rate { _ = try? await poolSandbox.run(.code(code)) })
      }
      let ratio = percentile(warmRates, 0.5) / percentile(coldRates, 0.5)
      rows.append(Row(name: "pool: 2-worker throughput, warm (x cold: \(format(ratio, 3)))", median: percentile(warmRates, 0.5), p90: .nan, unit: "runs/s"))
      rows.append(Row(name: "pool: 2-worker throughput, cold", median: percentile(coldRates, 0.5), p90: .nan, unit: "runs/s"))
      json.append("{\"variant\": \"pool_throughput_2_workers\", \"warm_runs_per_second\": \(percentile(warmRates, 0.5)), \"cold_runs_per_second\": \(percentile(coldRates, 0.5)), \"ratio\": \(ratio)}")
      await pool.close()
    }
    if let plotVenv = Sandbox.Sys.environmentValue("SANDBOX_BENCH_PLOT_VENV"), !plotVenv.isEmpty,
      let pandasSandbox = try? Sandbox(config: SandboxConfig(venvPath: plotVenv, appArmor: .disabled)),
      let pool = try? SandboxPool(sandbox: pandasSandbox, options: .init(size: 1, preload: ["pandas"]))
    {
      await warmAgainstCold("import pandas, preloaded", "pool_pandas", pandasSandbox, pool, "import pandas; print(pandas.__version__)", rounds: max(6, runs / 4))
      await pool.close()
    }

    // Change tracking alone: two snapshots and a diff, as one run does.
    let sandbox = try? Sandbox(config: SandboxConfig(venvPath: venv, appArmor: .disabled))
    for count in [10, 1_000, 10_000] {
      guard let directory = try? Sandbox.Sys.makeTemporaryDirectory(prefix: "sandbox-bench-") else { exit(1) }
      defer { Sandbox.Changes.removeTree(directory) }
      for index in 0..<count {
        let subdirectory = "\(directory)/d\(index / 500)"
        if index % 500 == 0 { mkdir(subdirectory, 0o755) }
        let fd = open("\(subdirectory)/f\(index)", O_WRONLY | O_CREAT, 0o644)
        if fd >= 0 { close(fd) }
      }
      guard let mountDir = try? Sandbox.Changes.OpenMountDirectory(path: directory) else { exit(1) }
      defer { mountDir.close() }
      guard let before = try? mountDir.snapshot() else { exit(1) }
      var single: [Double] = []
      var both: [Double] = []
      var floor: [Double] = []
      for _ in 0..<max(10, runs / 2) {
        single.append(measure {  // what happens after a run: one walk and the diff
          guard let after = try? mountDir.snapshot() else { exit(1) }
          _ = Sandbox.Changes.makeChangeList(before: before, after: after, excluding: nil)
        })
        both.append(measure {
          guard let first = try? mountDir.snapshot(), let second = try? mountDir.snapshot() else { exit(1) }
          _ = Sandbox.Changes.makeChangeList(before: first, after: second, excluding: nil)
        })
        floor.append(measure { walkWithoutBookkeeping(directory) })
      }
      for (name, key, times) in [
        ("snapshot+diff", "change_tracking_snapshot_diff", single), ("both snapshots+diff (a whole run)", "change_tracking_run", both),
        ("kernel floor, one thread: readdir+fstatat only", "walk_syscalls_only_one_thread", floor),
      ] {
        rows.append(Row(name: "change tracking, \(count) files: \(name)", median: percentile(times, 0.5), p90: percentile(times, 0.9), unit: "ms"))
        json.append("{\"variant\": \"\(key)\", \"files\": \(count), \"median_ms\": \(percentile(times, 0.5)), \"p90_ms\": \(percentile(times, 0.9))}")
      }
      if count == 10_000, let sandbox, let empty = try? SandboxMountDirectory(prefix: "sandbox-bench-") {
        var whole: [Double] = []
        var none: [Double] = []
        for _ in 0..<max(10, runs / 2) {  // interleaved with the same run on an empty mount dir
          whole.append(measure { runOrDie(sandbox, code, mount: directory) })
          none.append(measure { runOrDie(sandbox, code, mount: empty.path) })
        }
        let extra = percentile(whole, 0.5) - percentile(none, 0.5)
        rows.append(Row(name: "Sandbox.run with 10000 files in /mnt", median: percentile(whole, 0.5), p90: percentile(whole, 0.9), unit: "ms"))
        rows.append(Row(name: "Sandbox.run with an empty /mnt", median: percentile(none, 0.5), p90: percentile(none, 0.9), unit: "ms"))
        rows.append(Row(name: "10000 files in /mnt: what they add to a run", median: extra, p90: .nan, unit: "ms"))
        json.append("{\"variant\": \"api_with_10000_files\", \"median_ms\": \(percentile(whole, 0.5)), \"p90_ms\": \(percentile(whole, 0.9)), \"empty_median_ms\": \(percentile(none, 0.5)), \"extra_ms\": \(extra)}")
        empty.remove()
      }
    }

    // A hostile tree: the payload leaves 100,000 hard links with 206-byte names (and a setuid
    // bit behind them). What the host spends on it (this process's CPU: the post-run walk, the
    // set-id sweep, the diff) and its peak memory; the caps keep both bounded.
    if let sandbox, let mount = try? SandboxMountDirectory(prefix: "sandbox-bench-") {
      let links = """
        import os
        open("/mnt/target", "w").close()
        os.chmod("/mnt/target", 0o4755)
        for i in range(100000):
            os.link("/mnt/target", "/mnt/%06d" % i + "L" * 200)
        """
      let reset = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC)  // "5" resets VmHWM
      if reset >= 0 {
        Sandbox.Sys.writeAll(reset, Array("5".utf8))
        close(reset)
      }
      let cpuBefore = processCPUSeconds()
      let started = ContinuousClock.now
      let result = try? await sandbox.run(.code(links), mountDirectory: mount.path, timeout: .seconds(600))
      let wall = milliseconds(ContinuousClock.now - started) / 1000
      let cpu = processCPUSeconds() - cpuBefore
      let peak = Double(Sandbox.Sys.readSmallFile("/proc/self/status")?.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }?
        .split(separator: " ").dropFirst().first.flatMap { Double(String($0)) } ?? -1) / 1024
      let cleared = (try? Sandbox.readOutput(mountDirectory: mount.path, path: "target")) != nil
      rows.append(Row(name: "100,000 hard links: host CPU for the whole run", median: cpu, p90: .nan, unit: "s"))
      rows.append(Row(name: "100,000 hard links: peak RSS of this process", median: peak, p90: .nan, unit: "MiB"))
      json.append("{\"variant\": \"hostile_tree_100k_links\", \"host_cpu_seconds\": \(cpu), \"wall_seconds\": \(wall), \"peak_rss_mib\": \(peak), \"listed\": \(result?.changedPaths.count ?? -1), \"changes_truncated\": \(result?.changesTruncated ?? false), \"cleanup_incomplete\": \(result?.cleanupIncomplete == nil ? "null" : "true"), \"target_readable\": \(cleared)}")
      mount.remove()
    }

    // Removing what a payload left: 20,000 subdirectories, SandboxMountDirectory.remove()
    // against rm -rf on the same filesystem, alternating.
    var helperTimes: [Double] = []
    var rmTimes: [Double] = []
    for round in 0..<4 {
      guard let mount = try? SandboxMountDirectory(prefix: "sandbox-bench-") else { break }
      for index in 0..<20_000 { mkdir("\(mount.path)/d\(index)", 0o755) }
      if round % 2 == 0 {
        helperTimes.append(measure { mount.remove() })
      } else {
        let command = Sandbox.Spawner.Request(executable: "/bin/rm", arguments: ["-rf", mount.parent], environment: [])
        rmTimes.append(measure { _ = spawnOrDie(command) })
        mount.remove()
      }
    }
    rows.append(Row(name: "remove 20,000 dirs: SandboxMountDirectory.remove", median: percentile(helperTimes, 0.5), p90: .nan, unit: "ms"))
    rows.append(Row(name: "remove 20,000 dirs: rm -rf", median: percentile(rmTimes, 0.5), p90: .nan, unit: "ms"))
    json.append("{\"variant\": \"remove_20000_dirs\", \"helper_ms\": \(percentile(helperTimes, 0.5)), \"rm_rf_ms\": \(percentile(rmTimes, 0.5))}")

    print("\(padded("measurement", 58)) \(padded("median", 9)) \(padded("p90", 9)) \(padded("unit", 7)) \(padded("x bare", 7)) x bwrap")
    for row in rows {
      print("\(padded(row.name, 58)) \(padded(format(row.median), 9)) \(padded(format(row.p90), 9)) \(padded(row.unit, 7)) \(padded(row.versusBare.map { format($0) } ?? "", 7)) \(row.versusBwrap.map { format($0, 3) } ?? "")")
    }
    let document = "{\"runs\": \(runs), \"results\": [\n  " + json.joined(separator: ",\n  ") + "\n]}\n"
    let fd = open(resultsPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    if fd >= 0 {
      Sandbox.Sys.writeAll(fd, Array(document.utf8))
      close(fd)
      print("results: \(resultsPath)")
    }
  }
}
