// An ordinary app that embeds sandbox.swift: its own helpers use the names any app might
// (`exists`, `check`, `trimmed`, `run`, `Mount`, `Layout`, `printError`, `Config`, `Result`), and
// it uses the README's examples. `make lint` type-checks it next to sandbox.swift in Swift 6 mode:
//   swiftc -typecheck -swift-version 6 -D SANDBOX_LIBRARY sandbox.swift tests/embedding/App.swift

import Glibc

func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }
func check(_ condition: Bool, path: String, _ message: String) { if !condition { printError("\(path): \(message)") } }
func printError(_ text: String) { _ = (text + "\n").withCString { write(2, $0, strlen($0)) } }
func run(_ command: String) -> Int32 { command.withCString { system($0) } }
extension String { var trimmed: String { self } }
struct Mount { var point: String }
enum Layout { case compact, wide }
struct Config { var verbose = false }
enum Result<Value> { case ok(Value), failed(String) }

@main
enum App {
  static func main() async {
    let mine: Result<Int> = .ok(1)
    _ = (mine, Mount(point: "/"), Layout.compact, Config(), "x".trimmed, exists("/"))
    do throws(SandboxError) {
      // Run a snippet (no persistent host I/O).
      let sandbox = try Sandbox(config: SandboxConfig(venvPath: "/path/to/venv", appArmor: .disabled))
      let result = try await sandbox.run(.code("print('hello from sandbox')"), timeout: .seconds(5))
      print(result.returnCode, result.stdoutText, result.stderrText)

      // Writable host dir at /mnt, collect outputs.
      let io = try SandboxMountDirectory(prefix: "agent_io_")
      defer { io.remove() }
      let written = try await sandbox.run(
        .code("open('/mnt/out.txt','w').write('result\\n')"), mountDirectory: io.path, timeout: .seconds(5))
      print("rc:", written.returnCode, "changed files:", written.changedFiles)
      print("host out:", String(decoding: try io.readOutput("out.txt").bytes, as: UTF8.self))

      // Run a script from /mnt.
      let script = try await sandbox.run(.script(sandboxPath: "/mnt/code.py"), mountDirectory: io.path, timeout: .seconds(5))
      print(script.stdoutText)

      // Disable the network.
      let offline = try Sandbox(config: SandboxConfig(venvPath: "/path/to/venv", appArmor: .disabled, networkEnabled: false))
      let refused = try await offline.run(.code("import socket; socket.getaddrinfo('example.com', 80)"))
      print("rc:", refused.returnCode)

      // The startup gate, and the environment's configuration.
      try SelfTestGate.verify(sandbox)
      try SelfTestGate.requirePassed()
      _ = try SandboxConfig.fromEnvironment(appArmorDisabled: true)
    } catch {
      printError("sandbox: \(error.description)")
      check(false, path: "/", error.hint ?? "")
    }
  }
}
