// sandbox.swift — run untrusted Python inside a bubblewrap sandbox, from Swift or the shell.
//
// What it does: every run starts a fresh bubblewrap (`bwrap`) container with a read-only,
// mostly empty filesystem view (a read-only tmpfs root, read-only system dirs, the venv
// read-only, a private size-capped /tmp, a minimal read-only /dev, a read-only /proc with
// sensitive files masked), new user/pid/ipc/uts/cgroup namespaces (and a new network namespace
// when the network is off), no capabilities, no_new_privs, no nested user namespaces, a seccomp
// filter, rlimits set before the payload starts, a scrubbed environment and no inherited
// descriptors. One host directory below the system temp dir may be bound read-write at /mnt;
// the files the payload creates, changes or deletes there are reported back (names as bytes);
// another may be bound read-only at /input.
// A run ends only when every process of the sandbox is gone (a pidfd on bwrap's pid 1), and the
// payload starts only on the host's "GO", after its limits are set; if the host dies at any
// moment, nothing of the sandbox outlives it (see "The lifecycle"). Only then does the
// host touch /mnt, and never by path. A session (`openSession`, `sandbox session`) keeps one
// such sandbox and its interpreter between cells; what comes back from it is checked, never trusted.
// A warm pool (`SandboxPool`, `serve --pool`) keeps such sandboxes started ahead of demand, their
// imports done, each for exactly one payload.
//
// What it does NOT protect against (see README.md, "Security model"): kernel bugs (the
// kernel is shared), network exfiltration and host loopback access while the network is on
// (the default; host abstract unix sockets are closed where Landlock ABI ≥ 6 allows), fork bombs
// by root callers (RLIMIT_NPROC does not bind root), a disk filled past the mount dir's budget
// by what a payload writes within the watch's 50 ms tick, and — with `--no-apparmor`, the only
// choice on kernels without AppArmor — what the AppArmor profile adds. With a profile, every
// run starts as `setpriv --pdeathsig KILL --apparmor-profile NAME -- bwrap …`, so one
// enforce-mode profile, generated for the venv from the same mount table, confines bwrap's
// setup and the payload.
//
// Build:  swiftc -O -parse-as-library sandbox.swift [sandbox_extra_tests.swift] -o sandbox
// Embed:  add this file to your target and pass `-D SANDBOX_LIBRARY` to drop the entry point.
//
// Usage (what `sandbox --help` prints; tests/cli_tests.sh checks they agree):
//   usage: sandbox [OPTION]...        check this host, then run the self-test suite
//          sandbox run [OPTION]...    run Python code in a fresh sandbox
//          sandbox session [OPTION]... one interpreter kept between cells: JSON lines in and out
//          sandbox serve [OPTION]...  a JSON-lines server: runs, sessions, cancel, health
//
//   configuration (every command):
//     --venv PATH                   the venv whose interpreter runs the code (read-only)
//     --apparmor-profile-name NAME  the enforce-mode profile confining every run
//     --ro-dir DIR                  a host directory bound read-only (checked) (repeatable)
//     --input-dir DIR               a directory below the temp dir, bound read-only at /input
//     --no-apparmor                 run without the AppArmor layer (says so); the others stay
//     --enable-network              share the host's network (the default)
//     --isolated-network            network on in a namespace of its own, through pasta
//     --disable-network             a network namespace with loopback only
//     --no-seccomp                  an allow-all seccomp filter (for benchmarks; weaker)
//     --ignore-profile-diffs        use a loaded profile that differs from the generated one
//     --cgroup-parent DIR           the delegated cgroup v2 dir runs' cgroups go in
//     --require-cgroup              refuse to run without the cgroup layer
//     --no-cgroup                   no cgroup of the run's own, even where one can be made
//     --user NAME|UID               root only: run bwrap and the payload as this account
//     -h, --help                    this text
//
//   sandbox (self-tests):
//     --verbose                     print every test, not only failures and skips
//     --extra-tests                 add the extended suite (sandbox_extra_tests.swift)
//     --interactive                 a sandboxed Python REPL on this terminal
//     --print-apparmor-profile      print the profile this venv needs (any kernel)
//
//   sandbox run:
//     --code CODE                   the Python code (without --code or --script: stdin)
//     --script /mnt/REL.py          a script inside the mount dir
//     --arg VALUE                   an argument for the payload (sys.argv[1:]) (repeatable)
//     --stdin-file PATH             the payload's stdin (else stdin with --code or --script, unless a tty)
//     --mnt-dir DIR                 a directory below the temp dir, bound read-write at /mnt
//     --timeout SECONDS             wall-clock limit (> 0); 124 when it strikes
//     --env NAME=VALUE              an extra environment variable (repeatable)
//     --json                        print one JSON object (schema 3) instead of the streams
//     --b64                         with --json: stdout_b64 and stderr_b64 always, not only for non-UTF-8
//     --stream                      JSON lines: each output chunk as it comes, then the --json object
//     --output REL                  with --json and --mnt-dir: return this file of the mount dir (repeatable)
//     --print-bwrap-argv            print this run's bwrap command line and run nothing
//
//   sandbox session (also takes --mnt-dir, --env, and --timeout as each cell's default):
//     --idle-timeout SECONDS        end the session after this long without a cell (default 600)
//     --lifetime SECONDS            end the session this long after it opened (default 3600)
//
//   sandbox serve (JSON-lines requests; see the README's protocol):
//     --socket PATH                 serve on this Unix socket (its dir: 0700, yours) instead of stdin
//     --max-concurrent N            runs and sessions at once; 4N more wait, then refused
//     --no-self-test                start without the base self-test suite passing first (the gate)
//     --pool N                      keep N sandboxes started for runs without mnt_dir (on top of --max-concurrent)
//     --preload MODULE              with --pool: import this module in each waiting sandbox (repeatable)
//
//   limits (every command; 0 switches off a limit whose minimum allows it):
//     --cpu-seconds N               CPU seconds per process (RLIMIT_CPU) (default 300)
//     --memory-mb N                 MiB of memory (cgroup: the run's; else heap per process) (default 4096)
//     --max-file-mb N               largest written file in MiB (RLIMIT_FSIZE) (default 1024)
//     --max-processes N             tasks of the run, pid 1 included (pids.max or RLIMIT_NPROC) (default off)
//     --max-open-files N            descriptors per process, at least 16 (default 1024)
//     --tmpfs-mb N                  MiB of each writable tmpfs, at least 1 (default 512)
//     --tmpfs-inodes N              inodes each writable tmpfs may hold, at least 100 (default 100000)
//     --max-mnt-mb N                MiB the mount dir's filesystem may grow (default 1024)
//     --max-mnt-inodes N            inodes the mount dir's filesystem may gain (default 100000)
//     --address-space-mb N          address space per process in MiB (RLIMIT_AS) (default off)
//     --max-output-bytes N          bytes kept per output stream (default 16777216)
//     --cpus N                      CPUs' worth of time, e.g. 1.5 (cgroup cpu.max) (default off)
//
//   The venv and profile come from CODEEXEC_SANDBOX_VENV and CODEEXEC_SANDBOX_AA_PROFILE_NAME
//   unless --venv and --apparmor-profile-name are passed together (--venv alone counts with
//   --no-apparmor).
//
//   exit status: self-tests 0 all passed, 1 a test failed; run: the payload's own,
//   124 timed out, 128+N killed by signal N; run --json: 0 whenever the payload ran
//   (its status is in the JSON), 1 internal failure; all: 2 usage or configuration error,
//   125 the sandbox could not be set up.
//
// Sections, in the order a run flows (each MARK below; one namespace each, inside `Sandbox`):
//   Public API: configuration   SandboxConfig, SandboxLimits, SandboxLayer, SandboxPayload: data, no I/O
//   Public API: results         SandboxResult, SandboxLimitHit, SandboxOutputFile: data, no I/O
//   Public API: mount dirs      SandboxMountDirectory: a mount dir inside a private 0700 parent
//   Errors                      SandboxError (description, hint, exitCode), ExitCode: every exit status
//   Sandbox (one run)           init (checks once), run, async run, runOnce: the steps of a run, in order
//   Host preflight (Preflight)  HostFacts, HostLayout, VenvLayout, path checks: reads the host, runs
//                               nothing but `bwrap --version`
//   bwrap command line (Bwrap)  Layout (all the sandbox shows), Mount, makeInvocation, Gate, Report:
//                               pure, runs nothing
//   seccomp filter (Seccomp)    Filter: the tables, with a reason per group, and the program: pure
//   Landlock                    restrictThreadToOwnAbstractSockets: touches only the calling thread
//   AppArmor profile            makeProfile (derived from Layout and the mount table), State, diff:
//                               never loads a profile
//   Process spawning (Spawner)  spawn, EventLoop, runToCompletion: the only posix_spawn, poll,
//                               waitpid and pidfd signal; knows nothing of bwrap
//   The cgroup layer (Cgroup)   find, RunGroup (make, add, kill, usage, remove): the only code that
//                               writes to cgroupfs; never moves this process or its threads
//   The network helper          NetworkHelper: pasta's command line, the owning user namespace, the
//     (NetworkHelper)           prohibit rules; the lifecycle starts and stops it
//   The lifecycle (Lifecycle)   supervise and its Supervisor, Reaper, the gate's limits: the only
//                               code that decides a run has ended
//   Mount dir changes (Changes) OpenMountDirectory: snapshot, finishRun, readOutput, remove: only
//                               through descriptors, never a path the payload controls
//   Sessions (Sessions)         SandboxSession, openSession, the cell driver, decodeReply: every
//                               reply from the sandbox is checked field by field, never trusted
//   Warm pool (Pool)            SandboxPool, its slots (single-use sessions that wait with their
//                               preloads), the slot driver, the dispatch and its cold fallback
//   System helpers (Sys)        EINTR-safe I/O, Mutex, threads, glibc extras: no policy
//   Self-tests: suite           baseSuite as data (SelfTest rows), Probes: no I/O of its own
//   Self-tests: runner          runSelfTests, SelfTestGate: runs probes only through runOnce
//   Extension point             ExtraTests, shadowed by sandbox_extra_tests.swift when compiled in
//   Command line (CLI)          the option table, parse, the JSON (out and in), the commands, the
//                               session and serve loops (Server): the only code that prints
//
// Words: the "mount dir" is the host directory (`mountDirectory`, `--mnt-dir`); `/mnt`
// (`Layout.mountPoint`) is where the sandbox sees it. "pid 1" is bwrap's init in the sandbox's pid
// namespace; the "launcher" is the bwrap process we spawn; the "gate" is pid 2 until it hears GO.

#if canImport(Glibc)
  import Glibc
#else
  #error("sandbox.swift needs Linux: bubblewrap is built on Linux namespaces")
#endif

// MARK: - Public API: configuration

/// Settings shared by every run of one sandbox: which interpreter, which policy, which network.
public struct SandboxConfig: Sendable, Equatable {
  /// Whether runs are confined by an AppArmor profile.
  public enum AppArmor: Sendable, Equatable {
    /// Confine bwrap and the payload with the named, loaded profile.
    case profile(String)
    /// Run without the AppArmor layer; only bubblewrap's namespaces and mounts protect the host.
    case disabled
  }

  /// Path of the virtualenv whose `bin/python` runs the payload.
  public var venvPath: String
  /// The AppArmor layer; there is no default, so turning it off is always an explicit choice.
  public var appArmor: AppArmor
  /// Whether the payload shares the host's network (the original tool's default: on).
  public var networkEnabled: Bool
  /// Resource limits applied to every run.
  public var limits: SandboxLimits
  /// Whether the seccomp filter is applied; `false` relaxes that layer explicitly.
  public var seccompEnabled: Bool
  /// Continue (with a warning) when the installed profile differs from the generated one,
  /// e.g. because a deployment added paths to it.
  public var ignoreProfileDiffs: Bool = false
  /// Refuse every `run` until `SelfTestGate.verify` has passed in this process (the startup
  /// check of openedx codejail-service).
  public var requiresVerifiedHost: Bool = false
  /// Whether runs get a cgroup v2 of their own where one can be made (see `cgroupParent`);
  /// `false` relaxes the layer explicitly (`--no-cgroup`).
  public var cgroupEnabled: Bool = true
  /// The delegated, empty cgroup v2 directory runs' cgroups are made in; nil detects it (the
  /// parent of this process's cgroup, when systemd's `Delegate=yes` marked it).
  public var cgroupParent: String? = nil
  /// Refuse to make a `Sandbox` when the cgroup layer cannot apply (`--require-cgroup`).
  public var requireCgroup: Bool = false
  /// Run bwrap and the payload as this host account (a name or a uid), with its own group and no
  /// supplementary groups, instead of as the caller (`--user`). Root callers only: the payload
  /// then stops being the host's root for every check the kernel makes by uid, and RLIMIT_NPROC
  /// binds. The venv must be readable and each mount dir owned by that account.
  public var user: String? = nil
  /// With the network on, give the payload a network namespace of its own that reaches the
  /// outside through pasta (Debian package `passt`) instead of the host's namespace
  /// (`--isolated-network`): the host's loopback services, abstract sockets and `/proc/net`, its
  /// own addresses, link-local and metadata addresses are then out of reach. It costs about
  /// 70 ms per run (measured: 4× a whole run), so it is not the default.
  public var isolatedNetwork: Bool = false
  /// Extra host directories bound read-only at the same path (`--ro-dir`): the source tree of an
  /// editable install, reference data. Each is checked like the venv and more: a directory that
  /// is not `/`, a home directory or above one, a system or sandbox path, and holds no
  /// credentials at its top (`.ssh`, `.gnupg`, `.aws`, …).
  public var readOnlyDirectories: [String] = []
  /// A host directory of inputs, bound read-only at `/input` (`--input-dir`): files the payload
  /// reads but can neither change nor delete. Checked like a mount dir (its real path strictly
  /// below the temp dir) and bound through a descriptor opened on that path for every run.
  public var inputDirectory: String? = nil

  /// Creates a configuration; nothing is checked until a `Sandbox` is made from it.
  public init(
    venvPath: String, appArmor: AppArmor, networkEnabled: Bool = true,
    limits: SandboxLimits = SandboxLimits(), seccompEnabled: Bool = true
  ) {
    self.venvPath = venvPath
    self.appArmor = appArmor
    self.networkEnabled = networkEnabled
    self.limits = limits
    self.seccompEnabled = seccompEnabled
  }

  /// Environment variable naming the venv.
  public static let venvVariable = "CODEEXEC_SANDBOX_VENV"
  /// Environment variable naming the AppArmor profile.
  public static let profileVariable = "CODEEXEC_SANDBOX_AA_PROFILE_NAME"

  /// Builds the configuration from `CODEEXEC_SANDBOX_VENV` and `CODEEXEC_SANDBOX_AA_PROFILE_NAME`.
  ///
  /// The equivalent of the original tool's `get_default_sandbox_config()`. Pass
  /// `appArmorDisabled: true` to build a configuration without a profile name.
  /// - Throws: `SandboxError.missingSetting` when a variable is unset or empty.
  public static func fromEnvironment(
    appArmorDisabled: Bool = false,
    lookup: (String) -> String? = { getenv($0).map { String(cString: $0) } }
  ) throws(SandboxError) -> SandboxConfig {
    guard let venv = lookup(venvVariable), !venv.isEmpty else {
      throw .missingSetting(variable: venvVariable, flag: "--venv PATH")
    }
    if appArmorDisabled { return SandboxConfig(venvPath: venv, appArmor: .disabled) }
    guard let profile = lookup(profileVariable), !profile.isEmpty else {
      throw .missingSetting(variable: profileVariable, flag: "--apparmor-profile-name NAME")
    }
    return SandboxConfig(venvPath: venv, appArmor: .profile(profile))
  }
}

/// Limits applied to each run, before any payload code runs. `nil` switches a limit off.
///
/// The defaults leave room for ordinary numpy/pandas work and stop runaway payloads.
/// CPU, memory, file size, open files and processes are rlimits set on the sandbox's first
/// process (bwrap's pid 1) before it starts the payload, so every process inherits them.
public struct SandboxLimits: Sendable, Equatable {
  /// Bytes kept of each of stdout and stderr; the rest is read and discarded, and the
  /// result says `outputTruncated`. Bounds the host's memory whatever the payload prints.
  public var outputLimitBytes: Int
  /// CPU seconds per process (RLIMIT_CPU): SIGXCPU at this soft limit, SIGKILL 2 s later.
  public var cpuSeconds: Int?
  /// Memory of the run. With the cgroup layer: `memory.max` of the whole run (anonymous, shared
  /// and tmpfs memory, page cache; swap 0), enforced by the kernel's OOM killer. Without it:
  /// RLIMIT_DATA, heap and private memory per process (allocations past it fail, MemoryError),
  /// and every writable tmpfs is capped at a share of it (see `effectiveTmpfsBytes`).
  public var memoryBytes: Int?
  /// Largest file a process may write (RLIMIT_FSIZE): writes past it fail with EFBIG.
  public var fileSizeBytes: Int?
  /// Tasks (processes and threads) of the run, bwrap's pid 1 included, so the payload gets N-1.
  /// With the cgroup layer: `pids.max`, which binds root too. Without it: RLIMIT_NPROC, which
  /// the kernel counts per user namespace and which does not bind root, so a root caller who
  /// sets it without the cgroup layer gets an error.
  public var maxProcesses: Int?
  /// Open descriptors per process (RLIMIT_NOFILE).
  public var openFiles: Int
  /// Size of each tmpfs the sandbox mounts writable: /tmp, /dev/shm, and /mnt without a mount dir.
  public var tmpfsBytes: Int
  /// Inodes each of those may hold. Empty files cost no bytes, but each inode costs the kernel
  /// about 1 KiB, and bwrap sets no inode cap on its tmpfs mounts: the host reads their counts
  /// through pid 1's root every 50 ms and kills the run past this (`limit_hit: tmpfs`).
  public var tmpfsInodes: Int = 100_000
  /// How much the filesystem holding the mount dir may grow during a run. The spawner checks it
  /// (and that at least `diskReserveBytes` stay free) every 50 ms and kills the run past it, so
  /// many small files cannot fill the disk where per-file RLIMIT_FSIZE would not stop them.
  public var mountDirectoryBytes: Int?
  /// Free space that must remain on the mount dir's filesystem (the run is killed below it).
  public static let diskReserveBytes = 256 << 20
  /// The stack of each process's main thread (RLIMIT_STACK, soft and hard): Linux's usual 8 MiB.
  public static let stackBytes = 8 << 20
  /// Inodes (files, directories, links) the mount dir's filesystem may gain during a run, checked
  /// by the same watch; nil switches the inode budget off. Empty files cost no bytes, but a
  /// filesystem out of inodes takes no file from anyone.
  public var mountDirectoryInodes: Int? = 100_000
  /// Free inodes that must remain on the mount dir's filesystem: 10,000, or 5 % of a small one's.
  public static func diskReserveInodes(total: Int64) -> Int64 { min(10_000, total / 20) }
  /// Address space per process (RLIMIT_AS), off by default: it counts what RLIMIT_DATA does not
  /// (shared mappings, memfd), but also every reserved and never-touched mapping, so numpy,
  /// OpenBLAS's thread buffers and JIT runtimes fail well before they use that much memory.
  public var addressSpaceBytes: Int? = nil
  /// Entries (files and directories) one snapshot of the mount dir may hold; past it the
  /// snapshot stops recording and the result says `changesTruncated`. Bounds the host's memory
  /// whatever the payload builds; set-id clearing still covers the whole tree.
  public var trackedEntries: Int
  /// Bytes of names one snapshot may hold (the same rule as `trackedEntries`).
  public var trackedBytes: Int
  /// Entries `changedPaths` and `deletedPaths` each list at most (the smallest paths in byte order).
  public var reportedChanges: Int
  /// Bytes of paths each of those lists holds at most.
  public var reportedChangeBytes: Int
  /// How long the host may spend clearing set-id bits in a tree its snapshot could not cover;
  /// past it the clean-up is reported incomplete and the mount dir is closed (mode 000).
  public var cleanupTimeLimit: Duration
  /// CPUs' worth of time the run may use (`cpu.max`, e.g. 1.5); needs the cgroup layer.
  public var cpus: Double? = nil

  /// Creates limits; see each property for what it bounds. Core dumps are always off.
  public init(
    outputLimitBytes: Int = 16 << 20, cpuSeconds: Int? = 300, memoryBytes: Int? = 4 << 30,
    fileSizeBytes: Int? = 1 << 30, maxProcesses: Int? = nil, openFiles: Int = 1024,
    tmpfsBytes: Int = 512 << 20, mountDirectoryBytes: Int? = 1 << 30,
    trackedEntries: Int = 100_000, trackedBytes: Int = 16 << 20, reportedChanges: Int = 10_000,
    reportedChangeBytes: Int = 1 << 20, cleanupTimeLimit: Duration = .seconds(30), cpus: Double? = nil
  ) {
    self.cpus = cpus
    self.trackedEntries = trackedEntries
    self.trackedBytes = trackedBytes
    self.reportedChanges = reportedChanges
    self.reportedChangeBytes = reportedChangeBytes
    self.cleanupTimeLimit = cleanupTimeLimit
    self.mountDirectoryBytes = mountDirectoryBytes
    self.outputLimitBytes = outputLimitBytes
    self.cpuSeconds = cpuSeconds
    self.memoryBytes = memoryBytes
    self.fileSizeBytes = fileSizeBytes
    self.maxProcesses = maxProcesses
    self.openFiles = openFiles
    self.tmpfsBytes = tmpfsBytes
  }
}

/// The protection layers: one vocabulary for results (`layers`, the JSON's `layers`), errors
/// (`layerUnavailable`) and self-tests (`SelfTest.layer`). The raw values are the JSON's words.
public enum SandboxLayer: String, Sendable, CaseIterable {
  /// User, pid, ipc, uts and cgroup namespaces (and a network namespace when the network is off).
  case namespaces
  /// The read-only, mostly empty filesystem view.
  case mounts
  /// The scrubbed environment and no inherited descriptors.
  case environment
  /// Resource limits set on the sandbox before the payload starts.
  case limits = "rlimits"
  /// Size caps on every writable tmpfs.
  case tmpfsSize = "tmpfs-size"
  /// The watch on the mount dir's filesystem (`mountDirectoryBytes`).
  case diskWatch = "disk-watch"
  /// The seccomp filter.
  case seccomp
  /// Landlock's scope, which closes host abstract unix sockets where the kernel allows it.
  case landlockScope = "landlock-scope"
  /// A network namespace of the run's own, reaching out through pasta, host addresses blocked.
  case isolatedNetwork = "isolated-network"
  /// The AppArmor profile.
  case appArmor = "apparmor"
  /// A cgroup v2 of the run's own: memory, processes and CPU for the whole run, root's too.
  case cgroup
  /// What `memoryBytes` bounds: the whole run's memory, by the cgroup (`memory.max`).
  case memoryCgroup = "memory:cgroup"
  /// What `memoryBytes` bounds: private memory per process only (RLIMIT_DATA), tmpfs within it.
  case memoryPrivateOnly = "memory:private-only"
  /// Not a layer: a self-test that proves the probes themselves work. Never active.
  case control

  /// The layer's name in messages.
  public var title: String {
    switch self {
    case .limits: "resource limits"
    case .landlockScope: "Landlock scope"
    case .isolatedNetwork: "isolated network"
    case .appArmor: "AppArmor"
    case .tmpfsSize: "tmpfs size"
    case .diskWatch: "disk watch"
    case .memoryCgroup: "memory (cgroup)"
    case .memoryPrivateOnly: "memory (private only)"
    default: rawValue
    }
  }
}

/// What a run executes.
public enum SandboxPayload: Sendable, Equatable {
  /// Python source, handed to the interpreter as a read-only file (never through argv).
  case code(String)
  /// A script already in the mount directory, named by its sandbox path (`/mnt/…`).
  case script(sandboxPath: String)
}

// MARK: - Public API: results

/// Which limit ended a run.
public enum SandboxLimitHit: String, Sendable, Equatable {
  case timeout
  case cancelled
  /// The payload used its CPU seconds (SIGXCPU, or SIGKILL at the hard limit).
  case cpu
  /// The memory limit: the cgroup's OOM killer acted (authoritative), or, without the cgroup
  /// layer, the payload printed MemoryError (advisory).
  case memory
  /// A write failed at the file-size limit (EFBIG / SIGXFSZ).
  case fileSize = "file_size"
  /// The mount dir's filesystem grew past its budget (or ran low on space); the run was killed.
  case disk
  /// A writable tmpfs of the sandbox held more than `tmpfsInodes` inodes; the run was killed.
  case tmpfs
}

/// What one run did. Anything the payload causes (a crash, a timeout, a flood) is reported here.
public struct SandboxResult: Sendable, Equatable {
  /// The payload's exit status, or the negated signal number when a signal ended it.
  public var returnCode: Int32
  /// Bytes the payload wrote to stdout (at most `outputLimitBytes`).
  public var stdout: [UInt8]
  /// Bytes the payload wrote to stderr (at most `outputLimitBytes`).
  public var stderr: [UInt8]
  /// Whether the run was killed because it outlived its timeout.
  public var timedOut: Bool
  /// Whether the run was killed because its Task was cancelled.
  public var cancelled: Bool
  /// Whether stdout or stderr was cut at `outputLimitBytes`.
  public var outputTruncated: Bool
  /// Wall-clock time from spawn until every process of the sandbox was gone.
  public var duration: Duration
  /// Every entry (not directory) created or modified under the mount directory: its path
  /// relative to it, as the exact bytes of its names, sorted bytewise. Nothing is dropped or
  /// merged, whatever the names hold; at most `SandboxLimits.reportedChanges` (see `changesTruncated`).
  public var changedPaths: [[UInt8]]
  /// Every entry removed from the mount directory, as `changedPaths` lists them.
  public var deletedPaths: [[UInt8]]
  /// The change lists are incomplete: a cap on what the host holds or reports was reached.
  public var changesTruncated: Bool
  /// Why the host could not finish its work on the mount dir (a process of the sandbox did not
  /// die in time, a set-id bit could not be cleared, the sweep ran out of time), or nil. The
  /// mount dir (and its private parent, when `SandboxMountDirectory` made it) is then mode 000.
  public var cleanupIncomplete: String?
  /// The limit that ended the run, when one did.
  public var limitHit: SandboxLimitHit?
  /// The protection layers that were active for this run.
  public var layers: [String]
  /// The most memory the run held at once (`memory.peak` of its cgroup); nil without the cgroup layer.
  public var memoryPeakBytes: Int? = nil
  /// CPU time of every process of the run (`cpu.stat`); nil without the cgroup layer.
  public var cpuTime: Duration? = nil

  /// How a run ended, in one answer (the Booleans and `limitHit` above stay, and agree with it).
  public enum Termination: Sendable, Equatable {
    /// The payload's main process exited with this status.
    case exited(Int32)
    /// The payload died by this signal; `limitHit` says when a limit sent it (cpu, file size).
    case signaled(Int32)
    /// The host stopped the run before the payload ended: `.timeout`, `.cancelled`, `.disk` or `.tmpfs`.
    case stopped(SandboxLimitHit)
  }

  /// How the run ended: stopped by the host (timeout, cancellation, the disk watch), or the
  /// payload's own exit or signal. `returnCode` keeps the JSON's number.
  public var termination: Termination {
    if timedOut { return .stopped(.timeout) }
    if cancelled { return .stopped(.cancelled) }
    if limitHit == .disk { return .stopped(.disk) }
    if limitHit == .tmpfs { return .stopped(.tmpfs) }
    return returnCode < 0 ? .signaled(-returnCode) : .exited(returnCode)
  }

  /// `changedPaths` whose bytes are valid UTF-8, as text (the JSON's `changed_files`); the
  /// others appear only in `changedPaths`.
  public var changedFiles: [String] { changedPaths.compactMap(Sandbox.Sys.validUTF8) }
  /// `deletedPaths` whose bytes are valid UTF-8, as text; the others appear only in `deletedPaths`.
  public var deletedFiles: [String] { deletedPaths.compactMap(Sandbox.Sys.validUTF8) }

  /// Stdout as text; invalid UTF-8 becomes U+FFFD.
  public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
  /// Stderr as text; invalid UTF-8 becomes U+FFFD.
  public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
  /// Whether the payload exited with status 0 on its own.
  public var isSuccess: Bool { returnCode == 0 && !timedOut && !cancelled }
}

/// A session cell's uncaught exception, as the interpreter described it (advisory: the payload's own words).
public struct SandboxCellException: Sendable, Equatable {
  /// The class name, qualified by its module unless it is a builtin (`ZeroDivisionError`, `json.decoder.JSONDecodeError`).
  public var type: String
  /// `str()` of the exception.
  public var message: String
  /// The traceback as Python prints it, one line per element, without the driver's own frames.
  public var traceback: [String]
}

/// What one cell of a session did. What the interpreter said (value, exception, images) is
/// advisory: the payload can forge it; stdout, stderr, the changes, the timing and `timedOut`
/// are the host's own observations.
public struct SandboxCellResult: Sendable, Equatable {
  /// Bytes the cell wrote to stdout (the session keeps at most `outputLimitBytes` over its life).
  public var stdout: [UInt8]
  /// Bytes the cell wrote to stderr.
  public var stderr: [UInt8]
  /// The last expression's value as a REPL shows it (`repr`), or nil (no expression, or `None`).
  public var value: String? = nil
  /// The exception that ended the cell, or nil. `SystemExit` is one: the session goes on.
  public var exception: SandboxCellException? = nil
  /// PNG images the cell showed: matplotlib figures (`plt.show()`, or left open), `display(x)`.
  public var images: [[UInt8]] = []
  /// Entries of the mount dir created or modified since the previous cell (as `SandboxResult`
  /// lists them; advisory while the session lives: a process of the session may change more).
  public var changedPaths: [[UInt8]] = []
  /// Entries of the mount dir removed since the previous cell.
  public var deletedPaths: [[UInt8]] = []
  /// The change lists stop at a cap.
  public var changesTruncated = false
  /// Wall-clock time from sending the cell to its reply.
  public var duration: Duration
  /// The cell passed its timeout: it was interrupted (KeyboardInterrupt), or the session was killed.
  public var timedOut: Bool
  /// Output of the cell was cut: the session's output budget is spent.
  public var outputTruncated: Bool
  /// The limit the cell hit, when one did (`memory` from a MemoryError is advisory).
  public var limitHit: SandboxLimitHit? = nil
  /// CPU time the interpreter's own process used during the cell (kernel accounting).
  public var cpuTime: Duration? = nil
  /// Why the session ended during this cell, or nil while it lives on.
  public var sessionEnded: String? = nil
  /// The cell's number in its session (1, 2, …), as the interpreter names it (`<cell N>`).
  public var number: Int = 0
  /// With the cgroup layer: the most memory the session has held so far (`memory.peak`); nil without.
  public var memoryPeakBytes: Int? = nil

  /// Stdout as text; invalid UTF-8 becomes U+FFFD.
  public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
  /// Stderr as text; invalid UTF-8 becomes U+FFFD.
  public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
  /// `changedPaths` that are valid UTF-8, as text.
  public var changedFiles: [String] { changedPaths.compactMap(Sandbox.Sys.validUTF8) }
  /// `deletedPaths` that are valid UTF-8, as text.
  public var deletedFiles: [String] { deletedPaths.compactMap(Sandbox.Sys.validUTF8) }
}

/// One event of a streamed run or cell (`Sandbox.runStreaming`, `SandboxSession.executeStreaming`):
/// output as it arrives, then exactly one `.finished` or `.failed`, which ends the stream.
public enum SandboxEvent<Final: Sendable>: Sendable {
  /// Bytes the payload wrote to stdout, as the host read them (chunks split anywhere, even inside
  /// a UTF-8 character).
  case stdout([UInt8])
  /// Bytes the payload wrote to stderr.
  case stderr([UInt8])
  /// The result, as the non-streaming call returns it (its `stdout`/`stderr` hold every chunk).
  case finished(Final)
  /// The error the non-streaming call would throw.
  case failed(SandboxError)
}

/// A file the payload left, as `Sandbox.readOutput` read it.
public struct SandboxOutputFile: Sendable, Equatable {
  /// The first bytes of the file, at most the limit asked for.
  public var bytes: [UInt8]
  /// The file's size when it was opened.
  public var size: Int
  /// Whether `bytes` stops at the limit.
  public var truncated: Bool
}

// MARK: - Public API: mount dirs

/// A fresh mount directory for one run, removed again whatever the payload leaves in it.
///
/// It is `TMPDIR/sandbox-XXXXXX/mnt`: a child of a private parent (mode 0700, owned by the
/// caller). The payload owns the bind root and may open it to everyone (`chmod 777 /mnt`), but
/// nobody else can pass the parent, so nothing it plants is within another local user's reach.
/// `remove()` (or deinit) deletes the tree without following what the payload made: symlinks,
/// FIFOs, mode-000 directories. Read what the payload left with `readOutput`, never by path.
public final class SandboxMountDirectory: @unchecked Sendable {  // immutable after init
  /// The directory to pass as `mountDirectory`.
  public let path: String
  /// The private parent (mode 0700).
  public let parent: String

  /// Creates the parent and the mount directory in the temp dir. With `owner` (a root caller's
  /// `SandboxConfig.user`), both belong to that account, the parent still mode 0700: bwrap, which
  /// runs as that account, must reach the directory by its path; other accounts still cannot.
  /// - Throws: `SandboxError.system` when the temp dir refuses (with its path), or
  ///   `invalidUser` for an owner that does not exist.
  public init(prefix: String = "sandbox-", owner: String? = nil) throws(SandboxError) {
    let account = try owner.map { (name) throws(SandboxError) in try Sandbox.Preflight.HostUser(name) }
    parent = try Sandbox.Sys.makeTemporaryDirectory(prefix: prefix)
    path = "\(parent)/mnt"
    guard mkdir(path, 0o700) == 0 else {
      let code = errno
      rmdir(parent)
      throw .system(call: "mkdir", path: path, errno: code)
    }
    // The account's own private pair: bwrap, running as it, reaches the directory by its path.
    for directory in [path, parent] where account != nil {
      guard let account, chown(directory, account.uid, account.gid) == 0 else {
        let code = errno
        rmdir(path)
        rmdir(parent)
        throw .system(call: "chown", path: directory, errno: code)
      }
    }
    SandboxMountDirectory.Registry.add(parent: parent, mountDirectory: path)
  }

  deinit { remove() }

  /// Reads a file the payload left (`relativePath` inside the mount dir); see `Sandbox.readOutput`.
  public func readOutput(_ relativePath: String, limit: Int = 16 << 20) throws(SandboxError) -> SandboxOutputFile {
    try Sandbox.Changes.readOutput(mountDirectory: path, path: relativePath, limit: limit)
  }

  /// Deletes the mount directory and its parent, whatever is in them; safe to call twice.
  public func remove() {
    Sandbox.Changes.removeTree(parent)
    SandboxMountDirectory.Registry.remove(parent: parent)
  }

  /// The private parents `SandboxMountDirectory` made in this process, so that a run can close
  /// one when it must seal a mount dir.
  enum Registry {
    private static let lock = Sandbox.Sys.Mutex()
    nonisolated(unsafe) private static var parents: [String: String] = [:]  // mount dir → parent; guarded by `lock`

    static func add(parent: String, mountDirectory: String) {
      lock.withLock { parents[Sandbox.Sys.resolvedPath(mountDirectory) ?? mountDirectory] = parent }
    }
    static func remove(parent: String) { lock.withLock { parents = parents.filter { $0.value != parent } } }
    static func privateParent(of mountDirectory: String) -> String? { lock.withLock { parents[mountDirectory] } }
  }
}

// MARK: - Errors

/// Everything the host or the caller can get wrong. What the payload does is a result instead.
public enum SandboxError: Error, CustomStringConvertible, Equatable {
  // Configuration (exit 2)
  /// The command line could not be understood.
  case usage(String)
  /// A setting is neither in the environment nor on the command line.
  case missingSetting(variable: String, flag: String)
  /// The venv directory does not exist.
  case venvNotFound(path: String)
  /// The venv has no usable `bin/python`.
  case venvHasNoPython(path: String)
  /// A directory given to bind read-only (`--ro-dir`) is missing or could expose the host.
  case invalidReadOnlyDirectory(path: String, reason: String)
  /// The venv's base interpreter (outside the system dirs) lacks what Python needs to start.
  case baseInterpreterIncomplete(prefix: String, reason: String)
  /// The AppArmor profile name is not a safe identifier.
  case invalidProfileName(String)
  /// An environment variable for the payload has an unusable name or value.
  case invalidEnvironment(name: String)
  /// The mount directory is missing, not a directory, or outside the temp dir.
  case invalidMountDirectory(path: String, reason: String)
  /// The script path is not a file under `/mnt`.
  case invalidScriptPath(path: String, reason: String)
  /// The timeout is not a positive number of seconds.
  case invalidTimeout(String)
  /// The account given to `--user` (`SandboxConfig.user`) cannot run the sandbox: unknown, root,
  /// a caller who is not root, or a path of the run it cannot read or write.
  case invalidUser(user: String, reason: String)
  /// A file the payload left cannot be read safely (see `Sandbox.readOutput`).
  case outputUnreadable(path: String, reason: String)
  /// A session's cell cannot be sent: its code is too large, or its request is malformed.
  case invalidCell(reason: String)
  /// An argument for the payload (`--arg`) holds a NUL byte.
  case invalidArgument(String)
  /// A `sandbox serve` request breaks the protocol (malformed, an unknown op or field, a wrong type).
  case invalidRequest(String)
  /// The input directory (`--input-dir`) is missing, not a directory, or outside the temp dir.
  case invalidInputDirectory(path: String, reason: String)
  // AppArmor and layer configuration (exit 2: a setting or a profile to fix)
  /// AppArmor was requested but the kernel cannot apply it.
  case appArmorUnavailable(reason: String)
  /// The profile is not installed or not loaded; `profile` is what to install.
  case appArmorProfileNotInstalled(name: String, profile: String, installed: Bool)
  /// The installed profile differs from the one generated for this venv.
  case appArmorProfileDiffers(name: String, diff: String)
  /// The profile is loaded but not enforcing (complain mode protects nothing).
  case appArmorProfileNotEnforcing(name: String, mode: String)
  /// A path the profile must name contains characters AppArmor treats as syntax.
  case unsafeAppArmorPath(path: String)
  /// `setpriv` (util-linux) is missing: it starts bwrap under the AppArmor profile.
  case setprivNotFound
  /// A requested protection layer cannot be applied here (fail closed).
  case layerUnavailable(layer: SandboxLayer, reason: String, relax: String)
  // The host cannot run a sandbox (exit 125)
  /// No `bwrap` executable on PATH.
  case bwrapNotFound
  /// The installed bwrap lacks options the sandbox relies on.
  case bwrapTooOld(found: String, required: String)
  /// The kernel will not create user namespaces for this user.
  case userNamespacesUnavailable(reason: String, fix: String)
  /// Something around this process (a container's seccomp or AppArmor profile, a masked /proc)
  /// refuses the namespaces or mounts bwrap needs; `fix` names the container option.
  case hostRestricted(reason: String, fix: String)
  /// The kernel or /proc lacks what the lifecycle guarantee needs (pidfds, seccomp counters).
  case lifecycleUnavailable(reason: String)
  /// The C library lacks a function the spawner needs.
  case glibcTooOld(function: String)
  // Setup and spawn (exit 125)
  /// A system call failed.
  case system(call: String, path: String?, errno: Int32)
  /// bwrap started but could not build the sandbox.
  case sandboxSetupFailed(message: String)
  /// The self-test gate is closed: the suite has not passed on this host.
  case selfTestGateClosed(reason: String)
  /// The run was cancelled before it started (its Task already was): nothing was spawned.
  case runCancelled
  /// `Sandbox.Admission.maximum` runs are in flight and the policy is `.fail`: nothing was spawned.
  case tooManyRuns(maximum: Int)
  /// The session is over (closed, timed out, idle, or its interpreter died): open a new one.
  case sessionEnded(reason: String)
  /// A warm pool cannot be made or used as asked (a bad size or preload, a run it cannot take, closed).
  case invalidPool(reason: String)

  public var description: String {
    switch self {
    case .usage(let message): return message
    case .missingSetting(let variable, let flag):
      return "no \(flag == "--venv PATH" ? "venv" : "AppArmor profile name") configured: \(variable) is not set"
    case .venvNotFound(let path): return "venv '\(path)' does not exist or is not a directory"
    case .venvHasNoPython(let path): return "venv '\(path)' has no runnable bin/python"
    case .invalidReadOnlyDirectory(let path, let reason):
      return "--ro-dir '\(Sandbox.Sys.printable(path))' cannot be bound: \(reason)"
    case .baseInterpreterIncomplete(let prefix, let reason):
      return "the venv's base interpreter in \(prefix) cannot be bound: \(reason)"
    case .invalidProfileName(let name):
      return
        "AppArmor profile name '\(Sandbox.Sys.printable(name))' is not allowed: use letters, digits, '_', '-' and '.' only"
    case .invalidEnvironment(let name):
      return
        "environment variable '\(Sandbox.Sys.printable(name))' cannot be passed: names are [A-Za-z_][A-Za-z0-9_]*, values hold no NUL byte"
    case .invalidMountDirectory(let path, let reason): return "mount directory '\(path)': \(reason)"
    case .invalidScriptPath(let path, let reason): return "script '\(path)': \(reason)"
    case .invalidTimeout(let text):
      return "timeout '\(text)' is not a positive number of seconds (at most \(Sandbox.longestTimeout))"
    case .invalidUser(let user, let reason): return "--user \(Sandbox.Sys.printable(user)): \(reason)"
    case .bwrapNotFound: return "bubblewrap (bwrap) is not installed or not on PATH"
    case .bwrapTooOld(let found, let required):
      return "bubblewrap \(found) is too old: the sandbox needs \(required) or newer (for --disable-userns)"
    case .userNamespacesUnavailable(let reason, _): return "user namespaces are unavailable: \(reason)"
    case .hostRestricted(let reason, _): return "this host cannot run bubblewrap: \(reason)"
    case .appArmorUnavailable(let reason):
      return "the AppArmor layer cannot be applied here: \(reason)"
    case .appArmorProfileNotInstalled(let name, _, let installed):
      return installed
        ? "AppArmor profile '\(name)' is installed in \(Sandbox.AppArmorProfile.Paths.profileDirectory) but not loaded in the kernel"
        : "AppArmor profile '\(name)' is not installed (\(Sandbox.AppArmorProfile.Paths.profileDirectory)/\(name) is missing)"
    case .appArmorProfileDiffers(let name, let diff):
      return
        "the installed AppArmor profile \(Sandbox.AppArmorProfile.Paths.profileDirectory)/\(name) differs from the one generated for this venv:\n\(diff)"
    case .appArmorProfileNotEnforcing(let name, let mode):
      return "AppArmor profile '\(name)' is loaded in \(mode) mode, which logs but does not protect"
    case .unsafeAppArmorPath(let path):
      return
        "the path '\(Sandbox.Sys.printable(path))' contains characters AppArmor treats as pattern syntax (* ? [ ] { } ^ \" \\ # ,)"
    case .setprivNotFound: return "setpriv (util-linux) is not installed or not on PATH"
    case .lifecycleUnavailable(let reason):
      return "the sandbox cannot guarantee that a run ends with every one of its processes: \(reason)"
    case .glibcTooOld(let function): return "the C library has no \(function) (glibc 2.34 or newer is needed)"
    case .layerUnavailable(let layer, let reason, _): return "the \(layer.title) layer cannot be applied: \(reason)"
    case .system(let call, let path, let code):
      let target = path.map { " '\($0)'" } ?? ""
      return "\(call)\(target): \(Sandbox.Sys.errnoText(code)) (errno \(code))"
    case .sandboxSetupFailed(let message): return "bubblewrap could not set up the sandbox: \(message)"
    case .selfTestGateClosed(let reason): return "refusing to run: \(reason)"
    case .runCancelled: return "the run was cancelled before it started; nothing was spawned"
    case .tooManyRuns(let maximum):
      return "\(maximum) runs are in flight already (Sandbox.Admission.maximum); nothing was spawned"
    case .outputUnreadable(let path, let reason):
      return "output '\(Sandbox.Sys.printable(path))' cannot be read safely: \(reason)"
    case .invalidCell(let reason): return "the cell cannot be run: \(reason)"
    case .invalidRequest(let reason): return "the request cannot be served: \(reason)"
    case .invalidArgument(let argument):
      return "the payload argument '\(Sandbox.Sys.printable(argument))' cannot be passed: it holds a NUL byte"
    case .invalidInputDirectory(let path, let reason): return "input directory '\(path)': \(reason)"
    case .sessionEnded(let reason): return "the session has ended: \(reason)"
    case .invalidPool(let reason): return "the warm pool cannot do this: \(reason)"
    }
  }

  /// A suggestion the user can act on, when the cause is known.
  public var hint: String? {
    switch self {
    case .usage: return "run 'sandbox --help' for the synopsis"
    case .missingSetting(let variable, _) where variable == SandboxConfig.venvVariable:
      return "export \(variable)=PATH or pass --venv PATH (library: SandboxConfig(venvPath:appArmor:))"
    case .missingSetting(let variable, _):
      if let absence = Sandbox.Preflight.HostFacts.appArmorAbsenceReason() {
        return
          "\(absence): pass --no-apparmor to run with the other layers (library: SandboxConfig.fromEnvironment(appArmorDisabled: true) or appArmor: .disabled)"
      }
      return
        "export \(variable)=NAME, or pass --apparmor-profile-name NAME with --venv PATH: they count only together (library: appArmor: .profile(NAME))"
    case .venvNotFound, .venvHasNoPython:
      return "create one with 'python3 -m venv PATH' and pass that path"
    case .invalidReadOnlyDirectory:
      return "name the directory the payload needs (a source tree, a data set), nothing above it"
    case .baseInterpreterIncomplete:
      return "create the venv from a complete Python installation (pyenv, uv, or the system's python3 -m venv)"
    case .invalidMountDirectory:
      return
        "pass a fresh directory inside a private one below the temp dir: d=$(mktemp -d) && mkdir \"$d/mnt\", then --mnt-dir \"$d/mnt\" (the payload owns the directory it gets; its parent keeps everyone else out)"
    case .invalidScriptPath: return "copy the script into the mount directory and pass it as /mnt/NAME.py"
    case .invalidUser:
      return
        "name an unprivileged account that can read the venv (and its base interpreter) and owns the mount dir (SandboxMountDirectory(owner:) makes one)"
    case .bwrapNotFound, .bwrapTooOld: return "install it: apt-get install bubblewrap (Debian 12 ships 0.8.0)"
    case .userNamespacesUnavailable(_, let fix), .hostRestricted(_, let fix): return fix
    case .appArmorUnavailable:
      return "pass --no-apparmor (library: appArmor: .disabled) to run with the other layers only"
    case .appArmorProfileNotInstalled(let name, _, _):
      return "install the profile printed above with the commands shown, then run again (profile name: \(name))"
    case .appArmorProfileDiffers(let name, _):
      return
        "regenerate \(Sandbox.AppArmorProfile.Paths.profileDirectory)/\(name) from the tool's output and reload it, or pass --ignore-profile-diffs if the differences are yours"
    case .appArmorProfileNotEnforcing(let name, _):
      return "sudo aa-enforce \(Sandbox.AppArmorProfile.Paths.profileDirectory)/\(name)"
    case .unsafeAppArmorPath: return "move the venv (and its base interpreter) to a path without those characters"
    case .setprivNotFound: return "install it: apt-get install util-linux"
    case .lifecycleUnavailable: return "run on Linux 5.9 or newer with /proc mounted"
    case .system(_, let path?, let code)
    where (code == ENOENT || code == ENOTDIR) && Sandbox.Sys.parentDirectory(path) == Sandbox.Sys.temporaryDirectory()
      || path == Sandbox.Sys.temporaryDirectory():
      return
        "the temp dir \(Sandbox.Sys.temporaryDirectory()) (from TMPDIR, else /tmp) is not a directory: create it, or point TMPDIR at one (unset, it is /tmp)"
    case .system(_, _, let code) where code == EMFILE || code == ENFILE:
      var limit = rlimit()
      getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
      return
        "this process is out of file descriptors (RLIMIT_NOFILE soft limit \(limit.rlim_cur)): each run in flight holds about \(Sandbox.Admission.descriptorsPerRun); raise the limit (ulimit -n, systemd LimitNOFILE=) or lower Sandbox.Admission.maximum"
    case .sandboxSetupFailed(let message):
      if message.contains("uid map") || message.contains("Permission denied") || message.contains("namespace") {
        return
          "the kernel refused an operation bwrap needs: with AppArmor on, dmesg | grep 'apparmor=\"DENIED\"' shows what the profile blocked; on Ubuntu 24.04 see kernel.apparmor_restrict_unprivileged_userns"
      }
      return nil
    case .selfTestGateClosed: return "run 'sandbox --venv PATH --no-apparmor --verbose' and fix what fails"
    case .layerUnavailable(_, _, let relax): return relax
    case .tooManyRuns:
      return
        "retry later, set Sandbox.Admission.policy = .wait to queue, or raise Sandbox.Admission.maximum (and RLIMIT_NOFILE with it)"
    case .sessionEnded:
      return "its state is gone; open a new session (Sandbox.openSession) and run the cells it needs again"
    case .invalidArgument: return "pass arguments as text without NUL bytes (or the data in a file of the input dir)"
    case .invalidRequest:
      return "see the protocol in the README's 'sandbox serve' section (op \"health\" answers always)"
    case .invalidInputDirectory:
      return
        "pass a directory below the temp dir, e.g. d=$(mktemp -d) && cp -r INPUTS \"$d/in\", then --input-dir \"$d/in\" (the payload sees it read-only at /input)"
    case .invalidPool:
      return
        "give a size of 0 to \(SandboxPool.largestSize) and importable module names; a run takes its script in `files` and no variable only a start reads (PYTHON*, LD_*, LC_*, LANG: SandboxPool.Options.environment has those)"
    case .invalidCell:
      return
        "send the code as UTF-8 of at most \(Sandbox.Lifecycle.SessionLink.frameLimitBytes) bytes, with a timeout > 0"
    default: return nil
    }
  }

  /// The command line's exit status for this error (see `Sandbox.ExitCode`): 2 when the
  /// caller's input or configuration is at fault, 125 when the host cannot set up or run a sandbox.
  public var exitCode: Int32 {
    switch self {
    case .usage, .missingSetting, .venvNotFound, .venvHasNoPython, .baseInterpreterIncomplete,
      .invalidReadOnlyDirectory, .invalidProfileName,
      .invalidEnvironment,
      .invalidMountDirectory, .invalidScriptPath, .invalidTimeout, .invalidUser, .outputUnreadable, .invalidCell,
      .invalidArgument, .invalidInputDirectory, .invalidRequest, .invalidPool,
      .appArmorUnavailable,
      .appArmorProfileNotInstalled, .appArmorProfileDiffers, .appArmorProfileNotEnforcing, .unsafeAppArmorPath,
      .setprivNotFound, .layerUnavailable:
      return Sandbox.ExitCode.usage
    case .bwrapNotFound, .bwrapTooOld, .userNamespacesUnavailable, .hostRestricted, .lifecycleUnavailable, .glibcTooOld,
      .system,
      .sandboxSetupFailed, .selfTestGateClosed, .runCancelled, .tooManyRuns, .sessionEnded:
      return Sandbox.ExitCode.cannotRun
    }
  }

  /// Whether the caller (rather than the host) is at fault: `exitCode` is 2.
  public var isConfigurationError: Bool { exitCode == Sandbox.ExitCode.usage }
}

extension Sandbox {
  /// Every exit status of the command line, in one place (coreutils keeps `EXIT_TIMEDOUT` and
  /// `EXIT_CANCELED` the same way in `system.h`); the header's table and the README list them.
  enum ExitCode {
    /// Every self-test passed; `run --json`: the payload ran (its status is in the JSON).
    static let success: Int32 = 0
    /// A self-test failed; `run --json`: the host failed once the payload was set up.
    static let failed: Int32 = 1
    /// A usage or configuration error.
    static let usage: Int32 = 2
    /// `run`: the payload timed out.
    static let timedOut: Int32 = 124
    /// The sandbox could not be set up (or the host cannot run one).
    static let cannotRun: Int32 = 125
    /// `run`: the payload was killed by `signal`, as a shell reports it.
    static func signaled(_ signal: Int32) -> Int32 { 128 + signal }
  }
}

// MARK: - Sandbox (one run)

/// A checked configuration, ready to run payloads. Creating one validates everything once.
public struct Sandbox: Sendable {
  /// The configuration this sandbox was made from.
  public let config: SandboxConfig
  let venv: Preflight.VenvLayout
  let host: Preflight.HostFacts
  /// What runs bwrap: `setpriv --pdeathsig KILL --apparmor-profile NAME --` when AppArmor is on,
  /// nothing otherwise (the reaper covers the launcher's early life either way).
  let launcher: [String]
  /// Warnings the caller should show (e.g. an installed profile that differs, ignored on request).
  public let warnings: [String]
  /// Where runs' cgroups are made, or why the cgroup layer does not apply.
  let cgroup: Cgroup.Availability
  /// The account bwrap and the payload run as (`config.user`), or nil for the caller's own.
  let runAs: Preflight.HostUser?
  /// pasta and the programs its rules need, found once (`--isolated-network`).
  let networkHelper: NetworkHelper.Plan?
  /// matplotlib's font list, built once per key inside a sandbox (nil without matplotlib, with --user).
  var fontList: Preflight.FontList? = nil

  /// Checks the configuration and the host, so that later runs fail only for per-run reasons.
  ///
  /// - Throws: `SandboxError` for a missing venv, an unsafe profile name, a missing or old
  ///   bwrap, unusable user namespaces, or an AppArmor request this host cannot honour.
  public init(config: SandboxConfig) throws(SandboxError) {
    try self.init(config: config, host: Preflight.HostFacts.current.get())
  }

  /// `host` comes from `HostFacts.current` (probed once per process) or, for one-shot
  /// command-line runs, from a probe that skips spawning `bwrap --version`: a bwrap too old
  /// for our options then fails at its own option parsing, before anything runs, and
  /// `run` reports that as `bwrapTooOld`.
  init(config: SandboxConfig, host: Preflight.HostFacts) throws(SandboxError) {
    // 1. A profile name reaches profile syntax and paths: checked before anything uses it.
    if case .profile(let name) = config.appArmor { try Preflight.validateProfileName(name) }
    // 2. The venv, resolved once: every run binds this real path (and a pyenv/uv base prefix).
    var venv = try Preflight.VenvLayout(venvPath: config.venvPath)
    for directory in config.readOnlyDirectories {
      venv.extraDirectories.append(try Preflight.VenvLayout.checkExtraDirectory(directory))
    }
    try config.inputDirectory.map(Sandbox.openInputDirectory)?.close()  // a bad input dir fails here, once
    // 3. Fail closed: a layer that was asked for and cannot be applied stops everything.
    let cgroup =
      config.cgroupEnabled
      ? Cgroup.find(configured: config.cgroupParent) : .unavailable(reason: "switched off (--no-cgroup)")
    try Sandbox.checkLayers(config, cgroup: cgroup)
    // 4. The account to drop to, checked against every path it must reach (by that account).
    let runAs = try config.user.map { (name) throws(SandboxError) in try Preflight.HostUser(name) }
    if let runAs { try runAs.checkAccess(venv: venv, bwrap: host.bwrapPath) }
    // 5. AppArmor, last: it needs the venv for the profile it compares with the installed one.
    var (launcher, warnings) = try Sandbox.makeLauncher(config, venv: venv, host: host, runAs: runAs)
    if getuid() == 0 && runAs == nil {
      warnings.append(
        "running as root: the payload is uid 0 of the host for every check the kernel makes by uid; pass --user NAME (library: user) to run it as an unprivileged account"
      )
    }
    self.config = config
    self.venv = venv
    self.host = host
    self.launcher = launcher
    self.warnings = warnings
    self.cgroup = cgroup
    self.runAs = runAs
    self.networkHelper = config.isolatedNetwork ? NetworkHelper.makePlan(dropTo: runAs) : nil
    // 6. matplotlib's font list, once per key (a sandbox of our own code builds it; see FontList).
    if runAs == nil, let key = Preflight.FontList.key(venv: venv) {
      fontList = Preflight.FontList.find(key, with: self)
    }
  }

  /// Refuses a configuration that asks for a layer this host or caller cannot have.
  static func checkLayers(_ config: SandboxConfig, cgroup: Cgroup.Availability) throws(SandboxError) {
    if config.seccompEnabled && Seccomp.Filter.Architecture.native == nil {
      throw .layerUnavailable(
        layer: .seccomp, reason: "no filter is built for this CPU architecture (x86_64 and aarch64 are)",
        relax: "pass --no-seccomp (library: seccompEnabled: false) to run without it")
    }
    let cgroupReason: String
    switch cgroup {
    case .available(_, let controllers):
      if config.limits.cpus != nil && !controllers.contains("cpu") {
        throw Cgroup.failure("the cgroup parent does not hand down the cpu controller, which --cpus needs")
      }
      return
    case .unavailable(let reason): cgroupReason = reason
    }
    if config.cgroupParent != nil {
      throw .layerUnavailable(
        layer: .cgroup, reason: cgroupReason,
        relax: "fix the directory given to --cgroup-parent (see the README's cgroup recipe), or leave it out")
    }
    if config.requireCgroup {
      throw .layerUnavailable(
        layer: .cgroup, reason: cgroupReason,
        relax: "run under a delegated cgroup v2 (see the README's cgroup recipe), or drop --require-cgroup")
    }
    if config.limits.cpus != nil {
      throw .layerUnavailable(
        layer: .cgroup, reason: "--cpus needs the cgroup layer: \(cgroupReason)",
        relax: "run under a delegated cgroup v2 (see the README's cgroup recipe), or leave --cpus unset")
    }
    if config.isolatedNetwork {
      guard config.networkEnabled else {
        throw .usage("--isolated-network is a way to have the network on: it contradicts --disable-network")
      }
      if let problem = NetworkHelper.unavailability() {
        throw .layerUnavailable(
          layer: .isolatedNetwork, reason: problem,
          relax: "install it (apt-get install \(NetworkHelper.package) iproute2), or drop --isolated-network")
      }
    }
    if config.limits.maxProcesses == 1 {
      throw .layerUnavailable(
        layer: .limits, reason: "RLIMIT_NPROC 1 leaves the payload no process: bwrap's pid 1 is one of them",
        relax: "pass --max-processes 2 or more (N allows the payload N-1 tasks)")
    }
    if config.limits.maxProcesses != nil && getuid() == 0 && config.user == nil {
      throw .layerUnavailable(
        layer: .limits,
        reason: "a process limit (RLIMIT_NPROC) does not bind root, and the cgroup layer is off: \(cgroupReason)",
        relax: "pass --user NAME, run under a delegated cgroup v2, or leave --max-processes unset")
    }
  }

  /// What runs bwrap, and warnings: with a profile, `setpriv` under that profile once the
  /// installed profile is the generated one and loaded in enforce mode; else bwrap itself.
  static func makeLauncher(
    _ config: SandboxConfig, venv: Preflight.VenvLayout, host: Preflight.HostFacts, runAs: Preflight.HostUser?
  ) throws(SandboxError) -> (launcher: [String], warnings: [String]) {
    // setpriv drops to the account and arms the parent-death signal after the drop (a uid
    // change clears it), in the exec of bwrap: nothing runs as that account unarmed.
    let drop = runAs.map { ["--reuid", "\($0.uid)", "--regid", "\($0.gid)", "--clear-groups"] } ?? []
    guard case .profile(let name) = config.appArmor else {
      guard !drop.isEmpty else { return ([], []) }
      guard let setpriv = Sys.findExecutable("setpriv") else { throw .setprivNotFound }
      return ([setpriv] + drop + ["--pdeathsig", "KILL", "--"], [])
    }
    // Never fall back silently: a requested layer either applies or the run is refused.
    if let reason = host.appArmorAbsenceReason { throw .appArmorUnavailable(reason: reason) }
    let profile = try AppArmorProfile.makeProfile(name: name, venv: venv, host: host)
    let installedPath = "\(AppArmorProfile.Paths.profileDirectory)/\(name)"
    guard let installed = Sys.readSmallFile(installedPath) else {
      throw .appArmorProfileNotInstalled(name: name, profile: profile, installed: false)
    }
    var warnings: [String] = []
    if installed != profile {
      let diff = AppArmorProfile.makeUnifiedDiff(
        old: installed, new: profile, oldName: installedPath, newName: "generated for \(venv.root)")
      guard config.ignoreProfileDiffs else { throw .appArmorProfileDiffers(name: name, diff: diff) }
      warnings.append(
        "the installed profile \(installedPath) differs from the generated one; continuing (--ignore-profile-diffs)")
    }
    switch AppArmorProfile.State.read(name) {
    case .enforce: break
    case .notLoaded: throw .appArmorProfileNotInstalled(name: name, profile: profile, installed: true)
    case .complain: throw .appArmorProfileNotEnforcing(name: name, mode: "complain")
    case .other(let mode): throw .appArmorProfileNotEnforcing(name: name, mode: mode)
    }
    // setpriv sets the profile for its exec of bwrap (as aa-exec would) and arms the
    // parent-death signal before bwrap runs at all: one profile for bwrap's setup and the payload.
    guard let setpriv = Sys.findExecutable("setpriv") else { throw .setprivNotFound }
    return ([setpriv] + drop + ["--pdeathsig", "KILL", "--apparmor-profile", name, "--"], warnings)
  }

  /// Runs `payload` once inside the sandbox and collects what it did.
  ///
  /// A non-zero exit, a signal, a timeout or truncated output is reported in the result.
  /// - Parameters:
  ///   - mountDirectory: host directory below the temp dir, bound read-write at `/mnt`;
  ///     without it `/mnt` is an empty tmpfs that vanishes with the run.
  ///   - timeout: wall-clock limit; the whole sandbox is killed when it passes.
  ///   - stdin: bytes the payload reads on standard input.
  ///   - environment: extra variables for the payload (on top of PATH, HOME, LANG, TMPDIR).
  /// - Throws: `SandboxError` when the host cannot set up or start the sandbox.
  ///   - arguments: the payload's `sys.argv[1:]`.
  @available(*, noasync, message: "blocks its thread and cannot be cancelled: use the async run from async code")
  public func run(
    _ payload: SandboxPayload, mountDirectory: String? = nil, timeout: Duration? = nil,
    stdin: [UInt8] = [], environment: [String: String] = [:], arguments: [String] = []
  ) throws(SandboxError) -> SandboxResult {
    if config.requiresVerifiedHost { try SelfTestGate.requirePassed() }
    return try runOnce(
      payload, mountDirectory: mountDirectory, timeout: timeout, stdin: stdin,
      environment: environment, cancellation: nil, arguments: arguments)
  }

  /// Runs `payload` without blocking a cooperative thread; cancelling the Task kills the sandbox.
  ///
  /// The run happens on a thread of its own, which also keeps bwrap's `--die-with-parent`
  /// bound to a thread that lives exactly as long as the run.
  /// - Throws: `SandboxError` when the host cannot set up or start the sandbox.
  public func run(
    _ payload: SandboxPayload, mountDirectory: String? = nil, timeout: Duration? = nil,
    stdin: [UInt8] = [], environment: [String: String] = [:], arguments: [String] = []
  ) async throws(SandboxError) -> SandboxResult {
    try await run(
      payload, mountDirectory: mountDirectory, timeout: timeout, stdin: stdin, environment: environment,
      arguments: arguments, onOutput: nil)
  }

  /// The async `run`, with each output chunk passed to `onOutput` as it is read (on the run's thread).
  func run(
    _ payload: SandboxPayload, mountDirectory: String?, timeout: Duration?, stdin: [UInt8],
    environment: [String: String], arguments: [String], onOutput: ((_ isStderr: Bool, _ bytes: [UInt8]) -> Void)?
  ) async throws(SandboxError) -> SandboxResult {
    if config.requiresVerifiedHost { try SelfTestGate.requirePassed() }
    if Task.isCancelled { throw .runCancelled }  // nothing is spawned for a Task cancelled already
    let cancellation = Spawner.CancellationSignal()  // no descriptor until the run is admitted
    let outcome: Swift.Result<SandboxResult, SandboxError> = await withTaskCancellationHandler {
      await withCheckedContinuation { continuation in
        Sys.startThread {
          do throws(SandboxError) {
            continuation.resume(
              returning: .success(
                try self.runOnce(
                  payload, mountDirectory: mountDirectory, timeout: timeout, stdin: stdin,
                  environment: environment, cancellation: cancellation, arguments: arguments, onOutput: onOutput)))
          } catch {
            continuation.resume(returning: .failure(error))
          }
        }
      }
    } onCancel: {
      cancellation.fire()
    }
    return try outcome.get()
  }

  /// Runs `payload` and delivers its output as it arrives, then its result.
  ///
  /// Events: `.stdout` and `.stderr` chunks in the order the host read them, then `.finished`
  /// (the result `run` returns) or `.failed` (the error it throws). The host drains the pipes
  /// whatever the consumer does, so a slow consumer never blocks the payload: undelivered events
  /// wait in the stream, which holds at most what the output caps keep (`outputLimitBytes` per
  /// stream). Ending the iteration early kills the sandbox, as cancelling `run` does.
  public func runStreaming(
    _ payload: SandboxPayload, mountDirectory: String? = nil, timeout: Duration? = nil,
    stdin: [UInt8] = [], environment: [String: String] = [:], arguments: [String] = []
  ) -> AsyncStream<SandboxEvent<SandboxResult>> {
    Sys.eventStream { onOutput throws(SandboxError) in  // the async run: its thread, gate check, cancellation
      try await self.run(
        payload, mountDirectory: mountDirectory, timeout: timeout, stdin: stdin, environment: environment,
        arguments: arguments, onOutput: onOutput)
    }
  }

  /// The one process-wide admission limiter (DECISIONS 14): how many runs may be in flight at
  /// once across every `Sandbox` of the process, and what a run past that does.
  ///
  /// Each run in flight holds at most `descriptorsPerRun` descriptors of the host process and
  /// two threads: the one `run` occupies (the async `run` starts its own) and, where Landlock
  /// scopes abstract sockets (network on), the fresh thread that supervises; output is read by
  /// `poll` on that thread. The default maximum follows `RLIMIT_NOFILE` at each admission:
  /// `(soft limit - 64) / descriptorsPerRun`, at least 1, so that runs never end in `EMFILE`
  /// (40 at the systemd default of 1024). Runs past it wait for a slot (`.wait`, the default;
  /// an async run waiting is still cancellable) or throw `SandboxError.tooManyRuns` (`.fail`).
  public enum Admission {
    /// Descriptors one run holds at most while in flight: 20 at its peak, while bwrap is
    /// spawned (a pipe or socket pair per input, the pidfds, the mount dir), about 9 while it runs
    /// (measured with strace on a run with a mount dir and the network on; the tests check the
    /// running count), plus room for the cgroup and /proc reads.
    public static let descriptorsPerRun = 24
    /// What a run does when `maximum` runs are in flight already.
    public enum Policy: Sendable { case wait, fail }

    /// The most runs in flight at once; `nil` (the default) derives it from `RLIMIT_NOFILE`.
    public static var maximum: Int? {
      get { lock.withLock { configuredMaximum } }
      set { lock.withLock { configuredMaximum = newValue.map { max(1, $0) } } }
    }
    /// What a run past `maximum` does (default `.wait`).
    public static var policy: Policy {
      get { lock.withLock { configuredPolicy } }
      set { lock.withLock { configuredPolicy = newValue } }
    }
    /// Runs in flight now.
    public static var inFlight: Int { lock.withLock { running } }

    static let lock = Sys.Mutex()
    nonisolated(unsafe) static var configuredMaximum: Int? = nil  // guarded by `lock`
    nonisolated(unsafe) static var configuredPolicy = Policy.wait  // guarded by `lock`
    nonisolated(unsafe) static var running = 0  // guarded by `lock`
    nonisolated(unsafe) static var peak = 0  // guarded by `lock`; the tests read it

    /// The maximum in force: the configured one, else what `RLIMIT_NOFILE` leaves room for.
    static func effectiveMaximum() -> Int {
      if let configuredMaximum { return configuredMaximum }
      var limit = rlimit()
      guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 64 }
      let soft = Int(clamping: min(limit.rlim_cur, 1 << 20))  // RLIM_INFINITY is the largest value
      return max(1, (soft - 64) / descriptorsPerRun)
    }

    /// Takes a slot, waiting (while `cancellation` has not fired) or throwing by the policy.
    /// - Throws: `SandboxError.tooManyRuns` (policy `.fail`), `.runCancelled` (cancelled while waiting).
    static func admit(cancellation: Spawner.CancellationSignal?) throws(SandboxError) {
      try lock.withLock { () throws(SandboxError) in
        while running >= effectiveMaximum() {
          if configuredPolicy == .fail { throw .tooManyRuns(maximum: effectiveMaximum()) }
          if cancellation?.hasFired == true { throw .runCancelled }
          lock.wait(milliseconds: 50)  // a cancelled waiter notices within 50 ms
        }
        running += 1
        peak = max(peak, running)
      }
    }

    /// Gives the slot back and wakes the waiters.
    static func release() {
      lock.withLock {
        running -= 1
        lock.broadcast()
      }
    }
  }

  /// Runs a Python REPL whose terminal is `terminal`'s pty, on an ephemeral `/mnt`.
  ///
  /// Inside, the pty becomes the REPL's controlling terminal, so Ctrl-C interrupts the payload
  /// (not the host) and line editing works; the user's own terminal is never handed in, so
  /// nothing can be injected into it.
  /// - Throws: `SandboxError` when the host cannot set up or start the sandbox.
  func runInteractive(terminal: Spawner.TerminalRelay) throws(SandboxError) -> SandboxResult {
    try runOnce(
      .code(Bwrap.Layout.interactiveBootstrap), mountDirectory: nil, timeout: nil, stdin: [],
      environment: ["TERM": Sys.environmentValue("TERM") ?? "xterm"], cancellation: nil, terminal: terminal)
  }

  /// One run, behind every public `run`, `runInteractive` and the self-tests (which must run
  /// before a gated sandbox may, so the gate is checked by the callers). A failure before the
  /// payload was told to start is bwrap's, and an error; anything after it is the payload's, and
  /// a result. The steps, in an order that matters:
  func runOnce(
    _ payload: SandboxPayload, mountDirectory: String?, timeout: Duration?, stdin: [UInt8],
    environment: [String: String], cancellation: Spawner.CancellationSignal?, terminal: Spawner.TerminalRelay? = nil,
    session: Lifecycle.SessionLink? = nil, arguments: [String] = [],
    onOutput: ((_ isStderr: Bool, _ bytes: [UInt8]) -> Void)? = nil
  ) throws(SandboxError) -> SandboxResult {
    // 1. Bad input spawns nothing: a timeout that is not positive, a variable that cannot be
    //    passed, a mount dir or script that fails its checks.
    if let timeout { try Sandbox.checkTimeout(timeout) }
    let payloadEnvironment = try Bwrap.makePayloadEnvironment(venvRoot: venv.root, extra: environment)
    if let bad = arguments.first(where: { $0.utf8.contains(0) }) { throw .invalidArgument(bad) }
    let mountDir = try mountDirectory.map { (path) throws(SandboxError) in try Changes.OpenMountDirectory(path: path) }
    defer { mountDir?.close() }
    let inputDir = try config.inputDirectory.map(Sandbox.openInputDirectory)  // re-checked for every run
    defer { inputDir?.close() }
    if let inputDir, let mountDir,
      inputDir.hostPath == mountDir.hostPath || inputDir.hostPath.hasPrefix(mountDir.hostPath + "/")
        || mountDir.hostPath.hasPrefix(inputDir.hostPath + "/")
    {
      throw .invalidInputDirectory(
        path: inputDir.hostPath,
        reason: "it and the mount dir \(mountDir.hostPath) contain one another: the payload could change its inputs")
    }
    if let runAs, let mountDir, let problem = runAs.ownershipProblem(mountDir.pathFD, path: mountDir.hostPath) {
      throw .invalidMountDirectory(path: mountDir.hostPath, reason: problem)
    }
    try Admission.admit(cancellation: cancellation)  // before the run's first descriptor
    defer { Admission.release() }
    try cancellation?.arm()
    var excluded: [UInt8]? = nil
    if case .script(let sandboxPath) = payload {
      excluded = Array(try Preflight.checkScript(sandboxPath, in: mountDir).utf8)  // a clear error beats python's
    }
    // The --ro-dir directories, opened and checked now: bwrap binds these descriptors.
    var extraFDs: [Int32] = []
    defer { for fd in extraFDs { close(fd) } }
    for directory in venv.extraDirectories { extraFDs.append(try Preflight.VenvLayout.openExtraDirectory(directory)) }
    // 2. The mount dir's snapshot, before any process of the sandbox exists.
    let limits = config.limits
    let before = try mountDir?.snapshot(limits: limits)
    // 3. The run's cgroup, before bwrap exists, so that pid 1 can join it at the handshake.
    let group = try cgroup.parent.map { (parent) throws(SandboxError) in
      try Cgroup.RunGroup(parent: parent, limits: limits)
    }
    // 4. The command line, from data; under setpriv (and the profile) when AppArmor is on.
    var plan = makePlan(payload, mountDir: mountDir, environment: payloadEnvironment)
    plan.extraDirectoryFDs = extraFDs
    plan.inputDirectoryFD = inputDir?.pathFD
    plan.arguments = arguments
    plan.keepsChannel = session != nil
    plan.warmSlot = session?.warm ?? false
    session?.limits = limits
    if let session, let mountDir {  // per-cell changes: read-only, through the descriptor we hold
      session.snapshotMountDirectory = { try? mountDir.snapshot(limits: limits) }
      if !session.warm { session.lastSnapshot = before }  // the first cell's changes count from the open
    }
    let invocation = Bwrap.makeInvocation(plan)
    let launch = Lifecycle.Launch(
      executable: launcher.first ?? host.bwrapPath,
      arguments: launcher.dropFirst() + (launcher.isEmpty ? [] : [host.bwrapPath]) + invocation.arguments,
      inputs: invocation.inputs, limits: limits, stdin: stdin, timeout: timeout,
      outputLimitBytes: limits.outputLimitBytes, cancellation: cancellation, terminal: terminal, cgroup: group,
      dropTo: runAs,
      diskWatch: mountDir.flatMap { mountDir in
        limits.mountDirectoryBytes.map {
          Lifecycle.DiskWatch(
            fd: mountDir.pathFD, budget: Int64($0), reserve: Int64(SandboxLimits.diskReserveBytes),
            inodeBudget: limits.mountDirectoryInodes.map(Int64.init),
            inodeReserve: SandboxLimits.diskReserveInodes(total: Sys.filesystemUsage(mountDir.pathFD)?.inodes ?? 0))
        }
      },
      tmpfsWatch: (invocation.writableTmpfsPaths, Int64(limits.tmpfsInodes)),
      networkHelper: networkHelper, session: session,
      onOutput: session.map { link in { link.current?.onOutput?($0, $1) } } ?? onOutput)
    // 5. bwrap, until every process of the sandbox is gone; then what the cgroup accounted.
    let exit: Lifecycle.Exit
    do throws(SandboxError) {
      exit = try superviseFromOwnThread(launch)
    } catch {
      group?.remove()
      throw error
    }
    let usage = group?.usage()
    if exit.allGone { group?.remove() }  // else it stays, sealed by its limits, for a later sweep
    // 6. The host's work on the mount dir: only once nothing of the sandbox is left, always then.
    var changes = Changes.ChangeList()
    var cleanupProblem = exit.leftover
    if let mountDir, let before {
      // A warm run's changes count from its inputs in place (its driver's "S"), not the slot's start.
      let baseline = session.flatMap { $0.warm ? $0.lastSnapshot : nil } ?? before
      if exit.allGone {
        (changes, cleanupProblem) = mountDir.finishRun(before: baseline, excluding: excluded, limits: limits)
      } else {
        mountDir.seal()  // fail closed: no host work on a tree something may still change
      }
    }
    // 7. The verdict.
    if !exit.started && (exit.stop == nil || exit.stop == .setup) {
      throw setupFailure(exit)
    }
    return SandboxResult(
      returnCode: exit.started ? (exit.status.map(Bwrap.Report.returnCode) ?? -SIGKILL) : -SIGKILL, stdout: exit.stdout,
      stderr: exit.stderr, timedOut: exit.stop == .timeout, cancelled: exit.stop == .cancelled,
      outputTruncated: exit.outputTruncated, duration: exit.duration, changedPaths: changes.changed,
      deletedPaths: changes.deleted, changesTruncated: changes.truncated, cleanupIncomplete: cleanupProblem,
      limitHit: Lifecycle.classifyLimitHit(exit, limits: limits, cgroup: usage),
      layers: layers(mountDirectoryBound: mountDir != nil).map(\.rawValue),
      memoryPeakBytes: usage?.memoryPeakBytes, cpuTime: usage?.cpuTime)
  }

  /// The longest timeout, idle timeout or lifetime the library takes (about 115 days, as the CLI).
  public static let longestTimeout: Duration = .seconds(10_000_000)

  /// Refuses a bound that is not positive or longer than `longestTimeout` (DECISIONS 2).
  /// - Throws: `SandboxError.invalidTimeout`.
  static func checkTimeout(_ timeout: Duration) throws(SandboxError) {
    guard timeout > .zero, timeout <= longestTimeout else { throw .invalidTimeout("\(timeout)") }
  }

  /// Opens the input directory with the mount dir's checks (its real path strictly below the temp
  /// dir, held by an O_PATH descriptor that the bind uses).
  /// - Throws: `SandboxError.invalidInputDirectory` naming what is wrong.
  static func openInputDirectory(_ path: String) throws(SandboxError) -> Changes.OpenMountDirectory {
    do throws(SandboxError) {
      return try Changes.OpenMountDirectory(path: path)
    } catch {
      if case .invalidMountDirectory(_, let reason) = error { throw .invalidInputDirectory(path: path, reason: reason) }
      throw error
    }
  }

  /// Supervises `launch`; where Landlock's scope applies, from a fresh thread restricted first.
  /// Landlock and no_new_privs are per thread, so the caller's thread stays as it was; the
  /// thread lives exactly as long as the run, as the launcher's parent-death signal wants.
  func superviseFromOwnThread(_ launch: Lifecycle.Launch) throws(SandboxError) -> Lifecycle.Exit {
    guard scopesAbstractSockets else { return try Lifecycle.supervise(launch) }
    let outcome: Swift.Result<Lifecycle.Exit, SandboxError> = Sys.onFreshThread {
      do throws(SandboxError) {
        try Landlock.restrictThreadToOwnAbstractSockets()
        return .success(try Lifecycle.supervise(launch))
      } catch {
        return .failure(error)
      }
    }
    return try outcome.get()
  }

  /// The error for a run that ended before its payload was told to start. Only bwrap can have
  /// written to stderr by then (the gate prints nothing), so its first line is bwrap's message.
  func setupFailure(_ exit: Lifecycle.Exit) -> SandboxError {
    if let error = exit.setupError { return error }
    let message = Sys.firstLine(of: exit.stderr)
    if message.contains("Unknown option") {
      return .bwrapTooOld(
        found: "\(host.bwrapVersion ?? "an older version") (\(message))",
        required: Preflight.HostFacts.minimumVersionText)
    }
    if !message.isEmpty {
      return Preflight.HostFacts.diagnoseNamespaceFailure(bwrapMessage: message)
        ?? .sandboxSetupFailed(message: message)
    }
    let status = exit.status.map { "\($0)" } ?? "an unknown status"
    return .sandboxSetupFailed(message: exit.leftover ?? "bwrap ended with \(status) before the payload started")
  }

  /// Reads a file the payload left in a mount dir, safely: `path` is relative to the mount dir
  /// and is resolved beneath it with no symlink (or /proc magic link) in any component; only a
  /// regular file is read, without blocking, at most `limit` bytes. Never read what a payload
  /// left by path with ordinary file APIs: it may have made it a symlink to a host file, or a FIFO.
  /// - Throws: `SandboxError.outputUnreadable` naming why (a symlink, a FIFO, missing, …).
  public static func readOutput(mountDirectory: String, path: String, limit: Int = 16 << 20) throws(SandboxError)
    -> SandboxOutputFile
  {
    try Changes.readOutput(mountDirectory: mountDirectory, path: path, limit: limit)
  }

  /// With the network on, host abstract unix sockets are closed off where Landlock can scope them.
  var scopesAbstractSockets: Bool { config.networkEnabled && !config.isolatedNetwork && Landlock.scopesAbstractSockets }

  /// The protection layers of a run with a mount dir (one without lacks `disk-watch`, which
  /// watches the mount dir's filesystem; the result's `layers` says which a run got).
  public var activeLayers: [SandboxLayer] { layers(mountDirectoryBound: true) }

  /// The protection layers a run gets, with or without a mount dir.
  func layers(mountDirectoryBound: Bool) -> [SandboxLayer] {
    var layers: [SandboxLayer] = [.namespaces, .mounts, .environment, .limits, .tmpfsSize]
    if mountDirectoryBound && config.limits.mountDirectoryBytes != nil { layers.append(.diskWatch) }
    if config.seccompEnabled { layers.append(.seccomp) }
    if scopesAbstractSockets { layers.append(.landlockScope) }
    if config.isolatedNetwork { layers.append(.isolatedNetwork) }
    if case .profile = config.appArmor { layers.append(.appArmor) }
    if cgroup.parent != nil { layers.append(.cgroup) }
    if config.limits.memoryBytes != nil { layers.append(cgroup.parent != nil ? .memoryCgroup : .memoryPrivateOnly) }
    return layers
  }

  /// Each writable tmpfs's cap. With the cgroup layer, tmpfs pages count against `memory.max`
  /// already; without it they count against nothing, so together the tmpfs mounts may hold at
  /// most half of `memoryBytes` (the other half is the payload's own).
  func effectiveTmpfsBytes(mountDirectoryBound: Bool) -> Int {
    let limits = config.limits
    guard cgroup.parent == nil, let memory = limits.memoryBytes else { return limits.tmpfsBytes }
    let count = mountDirectoryBound ? 2 : 3  // /tmp and /dev/shm, and /mnt when it is a tmpfs
    return max(1 << 20, min(limits.tmpfsBytes, memory / (2 * count)))
  }

  func makePlan(_ payload: SandboxPayload, mountDir: Changes.OpenMountDirectory?, environment: [(String, String)])
    -> Bwrap.RunPlan
  {
    Bwrap.RunPlan(
      host: host.layout, venv: venv, networkEnabled: config.networkEnabled,
      ownNetworkNamespace: !config.networkEnabled || config.isolatedNetwork, mountDirectoryFD: mountDir?.pathFD,
      payload: payload, environment: environment,
      tmpfsBytes: effectiveTmpfsBytes(mountDirectoryBound: mountDir != nil),
      // `init` refused a requested filter this architecture has none of.
      seccompProgram: config.seccompEnabled
        ? Seccomp.Filter.program(networkEnabled: config.networkEnabled) ?? Seccomp.Filter.allowAll
        : Seccomp.Filter.allowAll,
      fontList: fontList?.loaded())
  }
}

// MARK: - Host preflight

extension Sandbox {
  /// What the host must offer before any run: bwrap, user namespaces, AppArmor, the venv.
  enum Preflight {
    /// Facts about this host that every run needs, probed once per process.
    struct HostFacts: Sendable {
      var bwrapPath: String
      /// nil when the probe skipped `bwrap --version`.
      var bwrapVersion: String?
      var layout: Preflight.HostLayout
      /// Why AppArmor cannot be used here, or nil when the kernel has it enabled.
      var appArmorAbsenceReason: String?

      static let minimumBwrap = [0, 8, 0]
      /// Sandbox-escape fixes by bubblewrap release, for the self-test header's advisory
      /// (informational, never a failure: DECISIONS 19).
      static let bwrapFixes: [(version: [Int], cve: String, what: String)] = [
        ([0, 12, 0], "CVE-2026-87766", "setup-time symlink following in the new root")
      ]

      /// The advisory for a bwrap older than a release that fixed a known escape, or nil.
      static func bwrapAdvisory(_ versionText: String?) -> String? {
        guard let versionText, let version = Sys.parseVersion(versionText) else { return nil }
        let missing = bwrapFixes.filter { version.lexicographicallyPrecedes($0.version) }
        guard !missing.isEmpty else { return nil }
        return missing.map {
          "bubblewrap \(version.map(String.init).joined(separator: ".")) predates \($0.version.map(String.init).joined(separator: ".")), which fixes \($0.cve) (\($0.what))"
        }.joined(separator: "; ")
          + ". Distributions backport such fixes without changing the upstream version (Debian 12's 0.8.0-2+deb12u1 carries backports): check your distribution's security tracker. The sandbox mounts nothing beneath the writable /mnt, so a payload's planted symlinks cannot steer bwrap's setup through it."
      }
      static var minimumVersionText: String { minimumBwrap.map(String.init).joined(separator: ".") }

      /// The probe's verdict, computed on first use and shared by every `Sandbox` in the process.
      static let current: Swift.Result<Preflight.HostFacts, SandboxError> = {
        do throws(SandboxError) { return .success(try probe()) } catch { return .failure(error) }
      }()

      static func probe(checkingVersion: Bool = true) throws(SandboxError) -> Preflight.HostFacts {
        guard let bwrap = Sys.findExecutable("bwrap") else { throw .bwrapNotFound }
        var version: String? = nil
        if checkingVersion {
          let found = try Sys.readVersion(of: bwrap)  // "bubblewrap 0.8.0"
          guard let numbers = Sys.parseVersion(found), !numbers.lexicographicallyPrecedes(minimumBwrap) else {
            throw .bwrapTooOld(found: found, required: minimumVersionText)
          }
          version = found
        }
        try checkUserNamespaces()
        return Preflight.HostFacts(
          bwrapPath: bwrap, bwrapVersion: version, layout: Preflight.HostLayout.probe(),
          appArmorAbsenceReason: appArmorAbsenceReason())
      }

      /// Explains, from the kernel's sysctls, why bwrap could not create a user namespace.
      /// `read` reads a sysctl file (the tests simulate Ubuntu's knob, which no Debian kernel has).
      static func checkUserNamespaces(
        uid: uid_t = getuid(), read: (String) -> String? = { Sys.readSmallFile($0) }
      ) throws(SandboxError) {
        if read("/proc/sys/user/max_user_namespaces").map(Sys.trimmed) == "0" {
          throw .userNamespacesUnavailable(
            reason: "user.max_user_namespaces is 0", fix: "sysctl -w user.max_user_namespaces=15000")
        }
        guard uid != 0 else { return }  // the remaining knobs only restrict unprivileged users
        if read("/proc/sys/kernel/unprivileged_userns_clone").map(Sys.trimmed) == "0" {
          throw .userNamespacesUnavailable(
            reason: "kernel.unprivileged_userns_clone is 0 (Debian's switch for unprivileged user namespaces)",
            fix: "sysctl -w kernel.unprivileged_userns_clone=1")
        }
        if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").map(Sys.trimmed) == "1" {
          throw .userNamespacesUnavailable(
            reason:
              "kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu 24.04): unconfined programs get a namespace without capabilities, so bwrap fails with 'setting up uid map: Permission denied'",
            fix:
              "load an AppArmor profile that allows 'userns,' for bwrap, or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
          )
        }
      }

      /// Names what stopped bwrap from making its namespaces or mounts, when its message says it
      /// could not, and the fix: the most common first failure is a container whose seccomp or
      /// AppArmor profile refuses `unshare`, `clone` with namespace flags or `mount`. Probes only
      /// after a failure (`unshare --user true`, util-linux), so a working host pays nothing.
      static func diagnoseNamespaceFailure(bwrapMessage message: String) -> SandboxError? {
        let lowered = message.lowercased()
        let namespaceFailure = ["namespace", "uid map", "unshare", "clone"].contains { lowered.contains($0) }
        let procFailure = lowered.contains("mount proc") || lowered.contains("can't mount proc")
        let mountFailure =
          lowered.contains("mount") || lowered.contains("pivot_root") || lowered.contains("make / slave")
        guard namespaceFailure || procFailure || mountFailure else { return nil }
        let status = Sys.readSmallFile("/proc/self/status") ?? ""
        let seccomp = status.split(separator: "\n").first { $0.hasPrefix("Seccomp:") }.map {
          Sys.trimmed(String($0.dropFirst(8)))
        }
        let label =
          Sys.readSmallFile("/proc/self/attr/apparmor/current").map(Sys.trimmed)
          ?? Sys.readSmallFile("/proc/self/attr/current").map(Sys.trimmed)
        let confined = label.map { !$0.isEmpty && $0 != "unconfined" } ?? false
        if procFailure {
          return .hostRestricted(
            reason:
              "bwrap cannot mount a new /proc (\(message)): this /proc has paths masked by mounts over them, as container runtimes do",
            fix:
              "Docker: docker run --security-opt systempaths=unconfined; Kubernetes: securityContext.procMount: Unmasked (needs hostUsers: false)"
          )
        }
        var probeError = ""
        if let unshare = Sys.findExecutable("unshare"),
          let outcome = try? Spawner.runToCompletion(
            Spawner.Request(
              executable: unshare, arguments: ["--user", "true"], environment: ["PATH=/usr/bin:/bin"],
              timeout: .seconds(5)))
        {
          probeError = outcome.status == .exited(0) ? "" : Sys.firstLine(of: outcome.stderr)
        }
        let containerFix =
          "Docker: docker run --security-opt seccomp=unconfined --security-opt apparmor=unconfined (or profiles that allow unshare, clone with namespace flags, mount, pivot_root); Kubernetes: securityContext.seccompProfile.type: Unconfined and appArmorProfile.type: Unconfined, with hostUsers: false"
        if seccomp == "2" && (probeError.contains("not permitted") || !namespaceFailure) {
          return .hostRestricted(
            reason:
              "a seccomp filter on this process (Seccomp: 2 in /proc/self/status, as a container runtime's default profile sets) refuses what bwrap needs\(probeError.isEmpty ? "" : " (unshare --user: \(probeError))"); bwrap said: \(message)",
            fix: containerFix)
        }
        if confined, let label {
          return .hostRestricted(
            reason:
              "this process runs under the AppArmor profile '\(Sys.printable(label))', which refuses what bwrap needs; bwrap said: \(message)",
            fix: containerFix)
        }
        if probeError.contains("No space left") {
          return .userNamespacesUnavailable(
            reason: "the user-namespace limit is reached (user.max_user_namespaces; unshare --user: \(probeError))",
            fix:
              "sysctl -w user.max_user_namespaces=15000 (in a container: on the host, or hostUsers: false in Kubernetes)"
          )
        }
        if probeError.contains("Invalid argument") {
          return .userNamespacesUnavailable(
            reason: "this kernel has no user namespaces (CONFIG_USER_NS; unshare --user: \(probeError))",
            fix: "run on a kernel built with CONFIG_USER_NS=y (every Debian and Ubuntu kernel is)")
        }
        if !probeError.isEmpty {
          return .userNamespacesUnavailable(
            reason:
              "the kernel refuses user namespaces to this process (unshare --user: \(probeError)); bwrap said: \(message)",
            fix:
              "check kernel.unprivileged_userns_clone and user.max_user_namespaces; in a container, \(containerFix)")
        }
        return nil
      }

      /// Returns why the kernel cannot enforce AppArmor, or nil when it can.
      static func appArmorAbsenceReason() -> String? {
        guard let enabled = Sys.readSmallFile("/sys/module/apparmor/parameters/enabled") else {
          return "this kernel has no AppArmor (/sys/module/apparmor is missing; active LSMs do not include apparmor)"
        }
        if Sys.trimmed(enabled) != "Y" { return "AppArmor is built in but disabled (apparmor=0 or another major LSM)" }
        if !Sys.isDirectory(AppArmorProfile.Paths.securityfs) {
          return "securityfs is not mounted at /sys/kernel/security, so profiles cannot be checked"
        }
        return nil
      }
    }

    /// How the host's system directories and /proc look, which shapes the mount table.
    struct HostLayout: Sendable, Equatable {
      /// Binds and symlinks for /usr, /bin, /lib*, /sbin, matching the host's (merged-/usr or not).
      var systemMounts: [Bwrap.Mount]
      /// /proc entries present on this kernel that the sandbox hides.
      var procMasks: [Bwrap.Mount]
      /// Readable /etc files and dirs that exist here (certificates, users, groups).
      var etcMounts: [Bwrap.Mount]
      /// The shell that holds the payload at the gate.
      var bootstrap: Bwrap.Gate = Bwrap.Gate(shell: "/usr/bin/dash", envCommand: nil)

      static func probe() -> Preflight.HostLayout {
        var system: [Bwrap.Mount] = []
        for path in Bwrap.Layout.systemDirectories {
          var info = stat()
          guard lstat(path, &info) == 0 else { continue }
          if info.st_mode & S_IFMT == S_IFLNK, let target = Sys.readLink(path) {
            system.append(.symlink(target: target, sandboxPath: path))
          } else if info.st_mode & S_IFMT == S_IFDIR {
            system.append(.readOnly(path))
          }
        }
        let masks: [Bwrap.Mount] =
          Bwrap.Layout.maskedProcFiles.filter { Sys.exists($0) }.map { .maskFile($0) }
          + Bwrap.Layout.maskedProcDirectories.filter { Sys.isDirectory($0) }.map { .maskDirectory($0) }
        let etc = Bwrap.Layout.exposedEtc.map(\.path).filter { Sys.exists($0) }.map { Bwrap.Mount.readOnly($0) }
        return Preflight.HostLayout(
          systemMounts: system, procMasks: masks, etcMounts: etc, bootstrap: Bwrap.Gate.probe())
      }
    }

    /// Checks that an AppArmor profile name cannot inject anything into profile syntax or paths.
    /// - Throws: `SandboxError.invalidProfileName`.
    static func validateProfileName(_ name: String) throws(SandboxError) {
      let allowed = name.utf8.allSatisfy {
        Sys.isASCIIWordByte($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".")
      }
      guard allowed, !name.isEmpty, name.utf8.count <= 128, name != ".", name != ".." else {
        throw .invalidProfileName(name)
      }
    }

    /// Checks that `/mnt/REL` is a plain path under /mnt (no host access); returns REL.
    static func scriptRelativePath(_ sandboxPath: String) throws(SandboxError) -> String {
      let prefix = "\(Bwrap.Layout.mountPoint)/"
      guard sandboxPath.hasPrefix(prefix) else {
        throw .invalidScriptPath(path: sandboxPath, reason: "must lie under \(Bwrap.Layout.mountPoint)/")
      }
      let relative = String(sandboxPath.dropFirst(prefix.count))
      guard isPlainRelativePath(relative) else {
        throw .invalidScriptPath(path: sandboxPath, reason: "must be a plain path: no '..', '.' or empty parts")
      }
      return relative
    }

    /// A relative path of plain names: not empty, no '..', '.' or empty part (so no leading '/').
    static func isPlainRelativePath(_ path: String) -> Bool {
      !path.isEmpty
        && !path.split(separator: "/", omittingEmptySubsequences: false).contains {
          $0.isEmpty || $0 == "." || $0 == ".."
        }
    }

    /// Checks `/mnt/REL` names a regular file in the mountDir; returns REL.
    static func checkScript(_ sandboxPath: String, in mountDir: Changes.OpenMountDirectory?) throws(SandboxError)
      -> String
    {
      let relative = try Preflight.scriptRelativePath(sandboxPath)
      guard let mountDir else {
        throw .invalidScriptPath(path: sandboxPath, reason: "a script needs a mount directory to live in")
      }
      // Beneath the mount dir, no symlink in any component: the payload may have left the tree.
      let fd = Changes.openBeneath(mountDir.pathFD, Array(relative.utf8), flags: Sys.openPathOnly | O_CLOEXEC)
      var info = stat()
      defer { if fd >= 0 { close(fd) } }
      guard fd >= 0, fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
        throw .invalidScriptPath(path: sandboxPath, reason: "no regular file at \(mountDir.hostPath)/\(relative)")
      }
      return relative
    }

    /// The host's accounts: the fields of each line of /etc/passwd (name, password, uid, gid,
    /// gecos, home, shell). Read from the file, never through NSS (see `HostUser`).
    static func accounts() -> [[Substring]] {
      (Sys.readSmallFile("/etc/passwd", limit: 16 << 20) ?? "").split(separator: "\n").map {
        $0.split(separator: ":", omittingEmptySubsequences: false)
      }
    }

    /// The host's home directories, resolved, with their accounts' names (from `accounts()`).
    static func homeDirectories() -> [(home: String, account: Substring)] {
      Preflight.accounts().compactMap { fields in
        guard fields.count >= 6, fields[5].hasPrefix("/") else { return nil }
        return (Sys.resolvedPath(String(fields[5])) ?? String(fields[5]), fields[0])
      }
    }

    /// Why `temp` (the resolved temp dir, from $TMPDIR) may not hold writable binds, or nil.
    /// $TMPDIR decides where a mount dir may be, so it must not widen that: not `/`, not a home
    /// directory or a directory above one (`TMPDIR=/home` would allow `/home/USER/.ssh`), and
    /// either sticky and world-writable, like /tmp, or the caller's own.
    static func temporaryRootProblem(_ temp: String) -> String? {
      let fix = "set TMPDIR to /tmp or to a directory of your own"
      guard temp != "/" else { return "the temp dir is /, which would allow any directory: \(fix)" }
      var info = stat()
      guard stat(temp, &info) == 0 else { return "the temp dir \(temp) cannot be examined: \(Sys.errnoText(errno))" }
      guard info.st_mode & 0o1002 == 0o1002 || info.st_uid == geteuid() else {
        return "the temp dir \(temp) is neither sticky and world-writable (like /tmp) nor yours: \(fix)"
      }
      for (home, account) in Preflight.homeDirectories() where home == temp || home.hasPrefix("\(temp)/") {
        return "the temp dir \(temp) is, or holds, the home directory \(home) (of \(account)): \(fix)"
      }
      return nil
    }

    /// The unprivileged account a root caller drops to (`--user`).
    struct HostUser: Sendable, Equatable {
      let name: String
      let uid: uid_t
      let gid: gid_t

      /// Resolves a name or a uid through the host's account database.
      init(_ user: String) throws(SandboxError) {
        guard getuid() == 0 else {
          throw .invalidUser(user: user, reason: "only a root caller can run the sandbox as another account")
        }
        // /etc/passwd itself, not NSS: the static CLI cannot load NSS modules (a lookup that falls
        // through to one crashes), and the file is what bwrap binds into the sandbox anyway.
        let fields = Preflight.accounts().first { $0.count >= 4 && ($0[0] == user || $0[2] == user) }
        guard let fields, let number = uid_t(fields[2]), let group = gid_t(fields[3]) else {
          throw .invalidUser(user: user, reason: "no such account in /etc/passwd")
        }
        guard number != 0 else { throw .invalidUser(user: user, reason: "that is root, which drops nothing") }
        name = String(fields[0])
        uid = number
        gid = group
      }

      /// Runs one `test` per path as this account (through the same setpriv drop as the run), so
      /// the check is the kernel's own, ACLs and all; names the first path it cannot use.
      func checkAccess(venv: Preflight.VenvLayout, bwrap: String) throws(SandboxError) {
        guard let setpriv = Sys.findExecutable("setpriv") else { throw .setprivNotFound }
        var paths = [venv.root, "\(venv.root)/bin", bwrap]
        if let interpreter = Sys.resolvedPath(venv.python) { paths.append(interpreter) }
        paths += (venv.base?.binds ?? []) + venv.extraDirectories
        // readable, and executable unless a shared library (which the loader only maps)
        let script =
          #"for p; do [ -r "$p" ] && { [ -x "$p" ] || case $p in *.so*) true;; *) false;; esac; } || { printf '%s' "$p"; exit 1; }; done"#
        let outcome = try Spawner.runToCompletion(
          Spawner.Request(
            executable: setpriv,
            arguments: [
              "--reuid", "\(uid)", "--regid", "\(gid)", "--clear-groups", "--", "/bin/sh", "-c", script, "sh",
            ]
              + paths,
            environment: ["PATH=/usr/bin:/bin"], timeout: .seconds(10)))
        guard outcome.status == .exited(0) else {
          let path = String(decoding: outcome.stdout, as: UTF8.self)
          throw .invalidUser(
            user: name,
            reason: path.isEmpty
              ? "checking what it can read failed: \(Sys.firstLine(of: outcome.stderr))"
              : "it cannot read and enter \(path), which the sandbox binds")
        }
      }

      /// Why a mount dir will not do for this account, or nil: the payload writes it as this
      /// account, and bwrap (0.8) reaches it by its real path, so every directory above it must
      /// let this account in (by mode; ACLs are not read here, bwrap would then refuse instead).
      func ownershipProblem(_ fd: Int32, path: String) -> String? {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return "cannot be examined: \(Sys.errnoText(errno))" }
        guard info.st_uid == uid, info.st_mode & 0o700 == 0o700 else {
          return
            "the payload runs as \(name) (uid \(uid)), who must own it (mode u+rwx); it is owned by uid \(info.st_uid)"
        }
        var directory = Sys.parentDirectory(path)
        while true {
          var above = stat()
          guard stat(directory, &above) == 0 else { return "cannot examine \(directory): \(Sys.errnoText(errno))" }
          let enters =
            above.st_uid == uid
            ? above.st_mode & 0o100 != 0 : above.st_gid == gid ? above.st_mode & 0o010 != 0 : above.st_mode & 0o001 != 0
          guard enters else {
            return
              "\(name) cannot enter \(directory) on the way to it: make its private parent \(name)'s (SandboxMountDirectory(owner:) does)"
          }
          if directory == "/" { return nil }
          directory = Sys.parentDirectory(directory)
        }
      }
    }

    /// matplotlib's font list (`fontlist-vX.json`), built once per key by a run of our own code in
    /// a fresh sandbox and copied into each run's `/tmp/.cache/matplotlib` (HOME is `/tmp`):
    /// without it, matplotlib scans every font on each run (a second with many fonts). Each run
    /// gets its own copy (bwrap `--file`), so nothing written is shared between runs (DECISIONS 17).
    /// The key covers the venv, matplotlib's version and the font directories' change times; the
    /// list lives in `$XDG_CACHE_HOME/sandbox-swift` (else `~/.cache/sandbox-swift`), mode 0700.
    /// Not used with `--user` (that account could not read the caller's cache).
    struct FontList: Sendable {
      /// Where in the sandbox matplotlib looks for it.
      var sandboxPath: String
      /// The host file (in the cache dir) it is read from at each run.
      var hostPath: String
      var contents: [UInt8] = []

      /// The cache key, or nil when the venv has no matplotlib or there is nowhere to cache.
      static func key(venv: VenvLayout) -> (key: String, directory: String)? {
        guard let site = VenvLayout.sitePackages(venv.root),
          let distInfo = Sys.directoryNames(site).first(where: {
            $0.hasPrefix("matplotlib-") && $0.hasSuffix(".dist-info")
          })
        else { return nil }
        let cacheHome =
          Sys.environmentValue("XDG_CACHE_HOME").flatMap { $0.hasPrefix("/") ? $0 : nil }
          ?? Sys.environmentValue("HOME").flatMap { $0.hasPrefix("/") && $0 != "/" ? "\($0)/.cache" : nil }
        guard let cacheHome else { return nil }
        var facts = [venv.root, distInfo]
        var directories = [
          "/etc/fonts", "/usr/share/fonts", "/usr/local/share/fonts", "\(site)/matplotlib/mpl-data/fonts",
        ]
        var index = 0
        while index < directories.count && index < 512 {  // bounded: font dirs are few levels deep
          let directory = directories[index]
          var info = stat()
          if stat(directory, &info) == 0 {
            facts.append("\(directory):\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec):\(info.st_ino)")
            if index >= 4 || directory.hasPrefix("/usr") {
              directories += Sys.directoryNames(directory).map { "\(directory)/\($0)" }.filter(Sys.isDirectory)
            }
          }
          index += 1
        }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a over the facts: a name, not a secret
        for byte in facts.joined(separator: "\n").utf8 {
          hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        return (String(hash, radix: 16), "\(cacheHome)/sandbox-swift")
      }

      /// The cached list for `key`, or one built now by a run of `sandbox`; nil when it cannot be
      /// had (matplotlib then builds its own in the run, as without this).
      static func find(_ key: (key: String, directory: String), with sandbox: Sandbox) -> FontList? {
        let stem = "fontlist-\(key.key)"
        if let stored = Sys.readOwnFile(directory: key.directory, name: "\(stem).name", limit: 256),
          let name = Sys.validUTF8(stored).map(Sys.trimmed), isListName(name)
        {
          return FontList(sandboxPath: "/tmp/.cache/matplotlib/\(name)", hostPath: "\(key.directory)/\(stem).json")
        }
        // Nowhere of our own to keep it (no writable HOME, a cache dir of another user's): no
        // build either, or every Sandbox would pay for one.
        guard Sys.makeDirectories(key.directory, mode: 0o700),
          let io = try? SandboxMountDirectory(prefix: "sandbox-fonts-")
        else { return nil }
        defer { io.remove() }
        guard
          let result = try? sandbox.runOnce(
            .code("import matplotlib.font_manager"), mountDirectory: io.path, timeout: .seconds(120), stdin: [],
            environment: ["MPLCONFIGDIR": "/mnt"], cancellation: nil),
          result.returnCode == 0,
          let name = result.changedFiles.first(where: isListName),
          let list = try? io.readOutput(name, limit: 32 << 20), !list.truncated, list.bytes.first == UInt8(ascii: "{")
        else { return nil }
        guard Sys.writeFileAtomically("\(key.directory)/\(stem).json", list.bytes),
          Sys.writeFileAtomically("\(key.directory)/\(stem).name", Array(name.utf8))
        else { return nil }
        return FontList(sandboxPath: "/tmp/.cache/matplotlib/\(name)", hostPath: "\(key.directory)/\(stem).json")
      }

      /// matplotlib's own name for the list (`fontlist-v390.json`, `fontlist-v3.11.0.json`): nothing
      /// else becomes a path in the sandbox.
      static func isListName(_ name: String) -> Bool {
        guard name.hasPrefix("fontlist-v") && name.hasSuffix(".json") && !name.contains("..") else { return false }
        return name.dropFirst("fontlist-v".count).dropLast(".json".count).allSatisfy {
          $0.isASCII && ($0.isLetter || $0.isNumber || $0 == ".")
        }
      }

      /// This list with its contents read now (nil when the file went away or is not ours: the
      /// run goes without). Read through the cache dir's descriptor, no symlink followed, only a
      /// regular file of this user's that no one else may write (another user may own $HOME/.cache).
      func loaded() -> FontList? {
        guard
          let bytes = Sys.readOwnFile(
            directory: Sys.parentDirectory(hostPath), name: String(hostPath.split(separator: "/").last ?? ""),
            limit: 32 << 20)
        else { return nil }
        var copy = self
        copy.contents = bytes
        return copy
      }
    }

    /// A venv as the sandbox binds it: its real path and, for pyenv/uv venvs, the base interpreter.
    struct VenvLayout: Sendable, Equatable {
      /// The venv's real path (no symlinks); it is bound read-only at the same path.
      var root: String
      /// The base interpreter when it lies outside the bound system dirs (pyenv, uv, a --prefix build).
      var base: BaseInterpreter?
      /// Extra directories bound read-only (`SandboxConfig.readOnlyDirectories`), real paths, checked.
      var extraDirectories: [String] = []

      var python: String { "\(root)/bin/python" }
      /// The base interpreter's prefix, for messages and the self-tests (never bound as a whole).
      var basePrefix: String? { base?.prefix }

      init(root: String, base: BaseInterpreter?) {
        self.root = root
        self.base = base
      }

      /// What the self-test header should tell the user about this venv: packages without
      /// bytecode (uv does not compile by default, and the venv is read-only inside, so every run
      /// compiles them again) and `.pth` entries that point outside what the sandbox binds (an
      /// editable install fails there with ModuleNotFoundError).
      func advisories() -> [String] {
        var notes: [String] = []
        let lib = "\(root)/lib"
        for version in Sys.directoryNames(lib) where version.hasPrefix("python") {
          let site = "\(lib)/\(version)/site-packages"
          let packages = Sys.directoryNames(site).filter {
            !$0.hasSuffix(".dist-info") && $0 != "__pycache__" && Sys.isFile("\(site)/\($0)/__init__.py")
          }
          let uncompiled = packages.filter { Sys.directoryNames("\(site)/\($0)/__pycache__").isEmpty }
          if !uncompiled.isEmpty {
            notes.append(
              "\(uncompiled.count) of \(packages.count) packages in \(site) have no bytecode (e.g. \(uncompiled.prefix(3).joined(separator: ", "))): the venv is read-only inside, so every run compiles them again (seconds for pandas); install with 'uv pip install --compile-bytecode' or run '\(python) -m compileall -q \(site)'"
            )
          }
          for file in Sys.directoryNames(site) where file.hasSuffix(".pth") {
            for line in (Sys.readSmallFile("\(site)/\(file)") ?? "").split(separator: "\n").map(String.init) {
              let entry = Sys.trimmed(line)
              if entry.isEmpty || entry.hasPrefix("#") || entry.hasPrefix("import ") || entry.hasPrefix("import\t") {
                continue
              }
              let path = entry.hasPrefix("/") ? entry : "\(site)/\(entry)"
              let real = Sys.resolvedPath(path) ?? path
              let bound = [root] + Bwrap.Layout.systemDirectories + (base?.binds ?? []) + extraDirectories
              guard !bound.contains(where: { real == $0 || real.hasPrefix("\($0)/") }) else { continue }
              notes.append(
                "\(site)/\(file) adds \(Sys.printable(real)) to sys.path, which the sandbox does not bind: imports from it fail with ModuleNotFoundError (install the package into the venv, not as an editable install)"
              )
            }
          }
        }
        return notes
      }

      /// The venv's site-packages directory (the first `lib/python*/site-packages`), if any.
      static func sitePackages(_ root: String) -> String? {
        Sys.directoryNames("\(root)/lib").filter { $0.hasPrefix("python") }.map { "\(root)/lib/\($0)/site-packages" }
          .first(where: Sys.isDirectory)
      }

      /// Files a directory bound with `--ro-dir` must not hold at its top: credentials, by name.
      static let credentialNames = [
        ".ssh", ".gnupg", ".aws", ".azure", ".kube", ".docker", ".netrc", ".git-credentials", ".pypirc",
        ".password-store",
      ]

      /// Checks one `--ro-dir` directory and returns its real path.
      /// - Throws: `invalidReadOnlyDirectory` naming why it may not be bound.
      static func checkExtraDirectory(_ path: String) throws(SandboxError) -> String {
        func refuse(_ reason: String) -> SandboxError { .invalidReadOnlyDirectory(path: path, reason: reason) }
        guard path.hasPrefix("/") else { throw refuse("not an absolute path") }
        guard let real = Sys.resolvedPath(path), Sys.isDirectory(real) else { throw refuse("not a directory") }
        guard real != "/" else { throw refuse("that is /, the whole host") }
        guard real.split(separator: "/").count >= 2 else {
          throw refuse("\(real) is a top-level directory, which holds far more than one project")
        }
        let sandboxPaths =
          Bwrap.Layout.systemDirectories + ["/proc", "/sys", "/dev", "/etc", "/run", "/mnt", "/tmp", "/boot"]
        if let clash = sandboxPaths.first(where: { real == $0 || real.hasPrefix("\($0)/") || $0.hasPrefix("\(real)/") })
        {
          throw refuse("it is, lies in or holds \(clash), which the sandbox shows as it decides (or not at all)")
        }
        let homes = Preflight.homeDirectories()
        for (home, account) in homes where home == real || home.hasPrefix("\(real)/") {
          throw refuse(
            "it is, or holds, the home directory \(home) (of \(account)): bind the project directory inside it")
        }
        if let secret = credentialNames.first(where: { Sys.exists("\(real)/\($0)") }) {
          throw refuse("it holds \(secret), credentials the payload must not read")
        }
        if let secret = real.split(separator: "/").first(where: { credentialNames.contains(String($0)) }) {
          throw refuse("it lies in \(secret), credentials the payload must not read")
        }
        for (home, _) in homes where real.hasPrefix("\(home)/") && real.dropFirst(home.count + 1).hasPrefix(".") {
          throw refuse("it lies in a dot-directory of the home \(home), where programs keep tokens and keys")
        }
        return real
      }

      /// Opens a `--ro-dir` for one run and checks what was opened (not the path, which may change
      /// after): the descriptor is what bwrap binds (`--ro-bind-fd`), and it must still be the
      /// directory `Sandbox.init` checked.
      /// - Throws: `invalidReadOnlyDirectory` when it moved or no longer passes.
      static func openExtraDirectory(_ path: String) throws(SandboxError) -> Int32 {
        let fd = open(path, Sys.openPathOnly | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
          throw .invalidReadOnlyDirectory(path: path, reason: "cannot be opened: \(Sys.errnoText(errno))")
        }
        guard let opened = Sys.readLink("/proc/self/fd/\(fd)"), opened == path,
          (try? checkExtraDirectory(opened)) == opened
        else {
          close(fd)
          throw .invalidReadOnlyDirectory(
            path: path, reason: "it changed since the sandbox was made (a symlink, a rename)")
        }
        return fd
      }

      /// The `key = value` lines of a pyvenv.cfg.
      static func configValues(_ text: String) -> [String: String] {
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
          guard let equals = line.firstIndex(of: "=") else { continue }
          values[Sys.trimmed(String(line[..<equals]))] = Sys.trimmed(String(line[line.index(after: equals)...]))
        }
        return values
      }

      /// Resolves a venv path on the host.
      /// - Throws: `venvNotFound`, `venvHasNoPython`, or `baseInterpreterIncomplete`.
      init(venvPath: String) throws(SandboxError) {
        guard let root = Sys.resolvedPath(venvPath), Sys.isDirectory(root) else { throw .venvNotFound(path: venvPath) }
        // bin/python is usually a symlink to the base interpreter, which must be reachable too.
        guard access("\(root)/bin/python", X_OK) == 0, let interpreter = Sys.resolvedPath("\(root)/bin/python") else {
          throw .venvHasNoPython(path: venvPath)
        }
        self.init(root: root, base: try BaseInterpreter.find(venvRoot: root, interpreter: interpreter))
      }
    }

    /// What of a base interpreter outside the system dirs the sandbox binds: its binary, its
    /// standard library and its libpython, never its whole prefix. A prefix may be `$HOME` (a
    /// `./configure --prefix=$HOME` build) or `/opt`, whose other contents (`~/.ssh`, other
    /// programs' files) the payload must not see; bwrap makes the directories leading to each
    /// bind, empty and read-only.
    struct BaseInterpreter: Sendable, Equatable {
      /// The prefix the venv names (the parent of pyvenv.cfg's `home`), for messages.
      var prefix: String
      /// Real paths bound read-only at the same place: the interpreter binary, its stdlib
      /// directory (found by its landmark, os.py), the libpython files beside the prefix's lib.
      var binds: [String]
      /// Symlinks on the way to those (`venv/bin/python` → `PREFIX/bin/python3` → `python3.12`,
      /// a symlinked stdlib), recreated in the sandbox exactly as the host has them.
      var links: [Link]
      /// The prefix's real path, covered by an empty tmpfs that holds the binds and links and is
      /// then made read-only: under a writable tmpfs of the sandbox (a prefix in the host's /tmp),
      /// the directories bwrap makes on the way would otherwise be writable. Nil when bound already.
      var cover: String? = nil

      struct Link: Sendable, Equatable {
        var path: String
        var target: String
      }

      /// The base interpreter of the venv at `venvRoot` whose `bin/python` resolves to
      /// `interpreter`; nil when it lies in the bound system dirs or inside the venv.
      /// - Throws: `baseInterpreterIncomplete` when its standard library is not where Python looks.
      static func find(venvRoot: String, interpreter: String) throws(SandboxError) -> BaseInterpreter? {
        func isBound(_ path: String) -> Bool {
          path == venvRoot || path.hasPrefix("\(venvRoot)/")
            || Bwrap.Layout.systemDirectories.contains { path == $0 || path.hasPrefix("\($0)/") }
        }
        let configured = Sys.readSmallFile("\(venvRoot)/pyvenv.cfg").map(VenvLayout.configValues) ?? [:]
        // Python finds its prefix from pyvenv.cfg's `home` (the base binary's directory), as written.
        let home = configured["home"] ?? Sys.parentDirectory(interpreter)
        let prefix = Sys.parentDirectory(home)
        guard prefix != "/", !isBound(interpreter) || !isBound(Sys.resolvedPath(prefix) ?? prefix) else { return nil }
        let name = interpreter.split(separator: "/").last.map(String.init) ?? ""
        let version =
          name.hasPrefix("python3.")
          ? String(name.dropFirst("python".count))
          : (configured["version"] ?? configured["version_info"] ?? "").split(separator: ".").prefix(2).joined(
            separator: ".")
        let stdlib = "\(prefix)/lib/python\(version)"
        guard !version.isEmpty, Sys.resolvedPath("\(stdlib)/os.py") != nil else {
          throw .baseInterpreterIncomplete(
            prefix: prefix, reason: "no standard library at \(stdlib) (its landmark os.py is missing)")
        }
        var wanted = ["\(venvRoot)/bin/python", stdlib]
        // libpython for a --enable-shared build (pyenv's, uv's), found where its RPATH points.
        wanted += Sys.directoryNames("\(prefix)/lib").filter { $0.hasPrefix("libpython") }.map { "\(prefix)/lib/\($0)" }
        // the names Python may run itself by (sys._base_executable is HOME/python…)
        wanted += Sys.directoryNames(home).filter {
          $0.hasPrefix("python") && Sys.resolvedPath("\(home)/\($0)") == interpreter
        }.map { "\(home)/\($0)" }
        let realPrefix = Sys.resolvedPath(prefix)
        var base = BaseInterpreter(
          prefix: prefix, binds: [], links: [], cover: realPrefix.flatMap { isBound($0) || $0 == "/" ? nil : $0 })
        // Whatever is bound must lie inside the prefix's real path (pyvenv.cfg and every link in
        // the prefix are the venv maker's to write: none may steer a bind to /root or ~/.ssh),
        // be what it claims (the stdlib a directory, the rest regular files), and hold no
        // credentials at its top.
        func refuse(_ path: String, _ why: String) -> SandboxError {
          .baseInterpreterIncomplete(prefix: prefix, reason: "\(Sys.printable(path)) \(why)")
        }
        for path in wanted {
          let (links, real) = Sys.symlinkChain(path)
          for link in links.map({ Link(path: $0.path, target: $0.target) })
          where !isBound(link.path) && !base.links.contains(link) {
            base.links.append(link)
          }
          guard let real, !isBound(real), !base.binds.contains(real) else { continue }
          guard let inside = realPrefix, real.hasPrefix("\(inside)/") else {
            throw refuse(
              path, "resolves to \(Sys.printable(real)), outside the interpreter's prefix \(realPrefix ?? prefix)")
          }
          if path == stdlib {
            guard Sys.isDirectory(real) else { throw refuse(path, "is not a directory") }
            if let secret = VenvLayout.credentialNames.first(where: { Sys.exists("\(real)/\($0)") }) {
              throw refuse(path, "holds \(secret), credentials the payload must not read")
            }
          } else if !Sys.isFile(real) {
            throw refuse(path, "is not a regular file (the interpreter binary and libpython are files)")
          }
          base.binds.append(real)
        }
        // a link inside a bind exists there already
        base.links.removeAll { link in base.binds.contains { link.path.hasPrefix("\($0)/") } }
        return base
      }
    }

  }
}

// MARK: - bwrap command line

extension Sandbox {
  /// The bwrap command line of a run, built from data, and what bwrap reports. Pure: it runs nothing.
  enum Bwrap {
    /// Fixed places in the sandbox's filesystem, and what of the host it may see.
    enum Layout {
      static let mountPoint = "/mnt"
      /// Where `SandboxConfig.inputDirectory` appears, read-only (never beneath /mnt: DECISIONS 8).
      static let inputPoint = "/input"
      /// Where the code of a `.code` payload appears, read-only.
      static let codePath = "/run/sandbox/main.py"
      /// A warm pool's slot: its driver (the slot's payload until the run comes), and where the
      /// driver writes a `.code` run's code, which `codePath` links to: the payload's own file
      /// is on disk at its path, as in a cold run (multiprocessing's spawn re-reads it).
      static let warmDriverPath = "/run/sandbox/warm.py"
      static let warmCodePath = "/dev/shm/.sandbox-main.py"
      static let hostname = "sandbox"
      /// Starts a session of its own (bwrap's --new-session made pid 1 the leader), makes the
      /// pty on fds 0–2 its controlling terminal, then becomes the REPL: Ctrl-C on that pty now
      /// signals the REPL's process group.
      static let interactiveBootstrap = """
        import fcntl, os, sys, termios
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        os.execv(sys.executable, [sys.executable])

        """
      /// Bound read-only (or symlinked, when the host's is a symlink into /usr).
      static let systemDirectories = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]
      /// A host path the payload may read, and why. The mount table and the AppArmor profile's
      /// access rules are both derived from these rows.
      struct Exposed: Sendable {
        var path: String
        var directory: Bool
        var why: String
      }
      /// Host /etc entries the payload may read (bound read-only where they exist); everything
      /// else in /etc stays invisible.
      static let exposedEtc = [
        Exposed(path: "/etc/passwd", directory: false, why: "user names for uids (pwd, getpass, ~)"),
        Exposed(path: "/etc/group", directory: false, why: "group names for gids"),
        Exposed(path: "/etc/ssl/certs", directory: true, why: "CA certificates (TLS)"),
        Exposed(path: "/etc/ca-certificates", directory: true, why: "CA certificates (what certs/ links to)"),
        Exposed(
          path: "/etc/fonts", directory: true,
          why: "the public font configuration: fontconfig (matplotlib's fc-list) finds /usr/share/fonts, no error"),
      ]
      /// /etc files the sandbox writes itself (read-only data, never the host's).
      static let generatedEtc = [
        (path: "/etc/resolv.conf", contents: resolvConf, why: "fixed public resolvers; the host's stays hidden"),
        (path: "/etc/hosts", contents: hosts, why: "localhost and the sandbox's hostname"),
      ]
      /// The device nodes bwrap's --dev binds from the host, and the access the profile grants.
      static let deviceNodes = [
        (name: "null", access: "rw", why: "discarded output, empty input"),
        (name: "zero", access: "rw", why: "zeroed memory and input"),
        (name: "full", access: "rw", why: "a disk-full device for tests"),
        (name: "random", access: "r", why: "entropy"),
        (name: "urandom", access: "r", why: "entropy (os.urandom, ssl)"),
        (name: "tty", access: "rw", why: "the controlling terminal of --interactive"),
      ]
      /// What else /dev holds: bwrap's --dev links (fd, stdin, stdout, stderr, ptmx, core) and
      /// devpts (pts), and our tmpfs for POSIX shared memory (shm).
      static let deviceOthers = ["fd", "stdin", "stdout", "stderr", "ptmx", "core", "pts", "shm"]
      /// /proc files that leak kernel or host state (Docker's masked paths), covered by /dev/null.
      static let maskedProcFiles = [
        "/proc/kcore", "/proc/keys", "/proc/key-users", "/proc/kmsg", "/proc/kallsyms", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/proc/latency_stats", "/proc/sysrq-trigger",
      ]
      /// /proc dirs of hardware and driver state, covered by an empty read-only tmpfs.
      static let maskedProcDirectories = [
        "/proc/acpi", "/proc/asound", "/proc/scsi", "/proc/driver", "/proc/irq", "/proc/bus", "/proc/fs",
      ]

      static let resolvConf = """
        # Written by sandbox.swift: fixed public resolvers; the host's resolv.conf stays hidden.
        nameserver 8.8.8.8
        nameserver 8.8.4.4
        nameserver 1.1.1.1

        """
      static let hosts = """
        127.0.0.1 localhost
        127.0.1.1 \(hostname)
        ::1 localhost ip6-localhost ip6-loopback

        """
    }

    /// The sandbox's first process after bwrap's pid 1: a POSIX shell that waits at the gate,
    /// then becomes the payload's interpreter.
    ///
    /// `dash -c 'printf R >&3 && read -r go <&3 && [ "$go" = GO ] && exec "$0" "$@" 3<&-' PYTHON SCRIPT`
    /// says "R" on the channel (fd 3), and runs `PYTHON SCRIPT` only on the host's "GO": the host
    /// sends it after setting the rlimits on this process (`prlimit`, after bwrap's setup is over)
    /// and checking bwrap's pid 1 is armed (see `superviseSandbox`). End of file — the host died, or
    /// stopped the run — makes `read` fail: nothing runs. The shell forks nothing (`printf`, `read`
    /// and `[` are built in) and adds nothing to the environment but `PWD`, which bwrap already
    /// set; the payload starts exactly as `python SCRIPT`, with no frame of ours.
    struct Gate: Sendable, Equatable {
      /// The shell: dash, which adds nothing to the environment it passes on. A host without dash
      /// gets `/bin/sh` (bash on Fedora or Arch), whose `exec` exports `SHLVL=0`: `env -u SHLVL`
      /// takes it out again, at the cost of one more exec.
      var shell: String
      var envCommand: String?

      /// The channel is fd 3 in bwrap and in the gate (dash redirects single-digit fds only).
      static let channelFD: Int32 = 3
      static let go = "GO\n"

      /// The gate for this host: dash when the system dirs have it.
      static func probe() -> Bwrap.Gate {
        for dash in ["/usr/bin/dash", "/bin/dash"] where access(dash, X_OK) == 0 {
          return Bwrap.Gate(shell: dash, envCommand: nil)
        }
        return Bwrap.Gate(shell: "/bin/sh", envCommand: Sys.findExecutable("env") ?? "/usr/bin/env")
      }

      /// The command bwrap runs: the gate, then `python script`. A session's driver keeps the
      /// channel (`keepingChannel`): its cells come over it.
      func command(python: String, script: String, keepingChannel: Bool = false) -> [String] {
        let fd = Self.channelFD
        let start = envCommand.map { "exec \($0) -u SHLVL \"$0\" \"$@\"" } ?? "exec \"$0\" \"$@\""
        let closing = keepingChannel ? "" : " \(fd)<&-"
        return [
          shell, "-c", "printf R >&\(fd) && read -r go <&\(fd) && [ \"$go\" = GO ] && \(start)\(closing)", python,
          script,
        ]
      }
    }

    /// What bwrap itself reports, parsed (its protocol, not ours).
    enum Report {
      /// The payload's return code from bwrap's exit status. bwrap folds a payload's death by
      /// signal N into exit 128+N, so 129…159 are read as −N too (a payload calling exit(137)
      /// is reported as −9).
      static func returnCode(_ status: Spawner.ExitStatus) -> Int32 {
        if case .exited(let code) = status, code > 128 && code < 160 { return -(code - 128) }
        return status.returnCode
      }

      /// The number after `"KEY":` in bwrap's `--json-status-fd` report (`{ "child-pid": 42, … }`,
      /// later `{ "exit-code": 0 }`), once a character after its digits shows it is complete.
      static func number(after key: String, in report: [UInt8]) -> pid_t? {
        let needle = Array("\"\(key)\":".utf8)
        guard report.count >= needle.count,
          let at = (0...(report.count - needle.count)).first(where: {
            report[$0..<($0 + needle.count)].elementsEqual(needle)
          })
        else { return nil }
        let value = report[(at + needle.count)...].drop { $0 == UInt8(ascii: " ") }
        let digits = value.prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
        guard !digits.isEmpty, digits.count < 10, value.count > digits.count else { return nil }
        return pid_t(String(decoding: digits, as: UTF8.self))
      }
    }

    /// One entry of the sandbox's filesystem, rendered as bwrap arguments.
    enum Mount: Sendable, Equatable {
      case readOnly(String)  // --ro-bind P P
      case readWriteDescriptor(fd: Int32, sandboxPath: String)  // --bind-fd FD P (bwrap closes FD)
      case readOnlyDescriptor(fd: Int32, sandboxPath: String)  // --ro-bind-fd FD P (bwrap closes FD)
      case symlink(target: String, sandboxPath: String)  // --symlink TARGET P
      case tmpfs(String, sizeBytes: Int)  // --size N --tmpfs P
      case proc(String)  // --proc P
      case dev(String)  // --dev P
      case data(fd: Int32, sandboxPath: String)  // --ro-bind-data FD P (bwrap reads FD, closes it)
      case file(fd: Int32, sandboxPath: String)  // --file FD P: a copy in a tmpfs, the run's own (no mount)
      case maskFile(String)  // --ro-bind /dev/null P
      case maskDirectory(String)  // --tmpfs P --remount-ro P
      case remountReadOnly(String)  // --remount-ro P

      var bwrapArguments: [String] {
        switch self {
        case .readOnly(let path): return ["--ro-bind", path, path]
        case .readWriteDescriptor(let fd, let sandbox): return ["--bind-fd", String(fd), sandbox]
        case .readOnlyDescriptor(let fd, let sandbox): return ["--ro-bind-fd", String(fd), sandbox]
        case .symlink(let target, let path): return ["--symlink", target, path]
        case .tmpfs(let path, let size): return ["--size", String(size), "--tmpfs", path]
        case .proc(let path): return ["--proc", path]
        case .dev(let path): return ["--dev", path]
        case .data(let fd, let path): return ["--ro-bind-data", String(fd), path]
        case .file(let fd, let path): return ["--file", String(fd), path]
        case .maskFile(let path): return ["--ro-bind", "/dev/null", path]
        case .maskDirectory(let path): return ["--tmpfs", path, "--remount-ro", path]
        case .remountReadOnly(let path): return ["--remount-ro", path]
        }
      }
    }

    /// Everything one run's bwrap command line depends on; the builder below is pure.
    struct RunPlan {
      var host: Preflight.HostLayout
      var venv: Preflight.VenvLayout
      var networkEnabled: Bool
      /// `--unshare-net`: with the network off, or on through pasta (`--isolated-network`).
      var ownNetworkNamespace: Bool = false
      /// Descriptors (O_PATH) of `venv.extraDirectories`, opened and checked for this run, in order.
      var extraDirectoryFDs: [Int32] = []
      /// Host descriptor of the validated mount directory (O_PATH), if any.
      var mountDirectoryFD: Int32?
      /// Host descriptor of the validated input directory (O_PATH), bound read-only at /input.
      var inputDirectoryFD: Int32? = nil
      /// The payload's `sys.argv[1:]`.
      var arguments: [String] = []
      var payload: SandboxPayload
      var environment: [(String, String)]
      var tmpfsBytes: Int
      /// The seccomp program (`--seccomp`); `SeccompFilter.allowAll` when that layer is relaxed
      /// (the host watches pid 1 load a filter to know it is armed, see `superviseSandbox`).
      var seccompProgram: [UInt8]
      /// matplotlib's font list for this venv (`Preflight.FontList`): copied into the run's /tmp.
      var fontList: Preflight.FontList? = nil
      /// A session: the payload is the driver, which keeps the gate's channel for its cells.
      var keepsChannel = false
      /// A warm pool's slot: the `.code` payload is the slot's driver (see `Layout.warmDriverPath`).
      var warmSlot = false
    }

    /// A bwrap command line plus the descriptors it names, which become fds 3, 4, … in bwrap.
    struct Invocation {
      var arguments: [String]
      var inputs: [Spawner.ChildInput]
      /// The mount table the arguments were rendered from (the AppArmor profile is derived from it).
      var mounts: [Bwrap.Mount]

      /// Sandbox paths of the tmpfs mounts the payload can write (the tmpfs watch reads them).
      var writableTmpfsPaths: [String] {
        mounts.compactMap { if case .tmpfs(let path, _) = $0 { path } else { nil } }
      }
    }

    /// Builds the bwrap command line for one run.
    ///
    /// The order of the mount table matters: bwrap applies entries top to bottom, so tmpfs
    /// mounts come before the binds that live inside them, masks come after /proc, and the
    /// root is made read-only last, once every mount point has been created.
    static func makeInvocation(_ plan: Bwrap.RunPlan) -> Bwrap.Invocation {
      var inputs: [Spawner.ChildInput] = [.channel]  // fd 3: the gate's channel (see `Bootstrap`)
      func childFD(for input: Spawner.ChildInput) -> Int32 {
        inputs.append(input)
        return Int32(2 + inputs.count)
      }

      var mounts: [Bwrap.Mount] = plan.host.systemMounts  // /usr, /bin, /lib*: read-only
      mounts += plan.host.etcMounts  // users, groups, CA certificates
      for file in Bwrap.Layout.generatedEtc {  // resolv.conf, hosts: ours
        mounts.append(.data(fd: childFD(for: .bytes(Array(file.contents.utf8))), sandboxPath: file.path))
      }
      mounts.append(.proc("/proc"))  // this pid namespace only
      mounts += plan.host.procMasks  // kernel state the payload must not read
      mounts.append(.remountReadOnly("/proc"))  // as root, /proc/sys would be the host's
      mounts.append(.dev("/dev"))  // Layout.deviceNodes and bwrap's links
      mounts.append(.tmpfs("/dev/shm", sizeBytes: plan.tmpfsBytes))  // POSIX semaphores (multiprocessing)
      mounts.append(.remountReadOnly("/dev"))  // no new nodes or files in /dev
      mounts.append(.tmpfs("/tmp", sizeBytes: plan.tmpfsBytes))  // private scratch space
      if let fonts = plan.fontList {  // after /tmp: a copy in it, so matplotlib does not rebuild the list
        mounts.append(.file(fd: childFD(for: .bytes(fonts.contents)), sandboxPath: fonts.sandboxPath))
      }
      if let hostFD = plan.mountDirectoryFD {
        // Bind the directory we validated and hold open, not its path: renaming or swapping a
        // symlink after the check cannot redirect the bind. bwrap closes the descriptor after
        // binding it, so it never reaches the payload.
        mounts.append(.readWriteDescriptor(fd: childFD(for: .descriptor(hostFD)), sandboxPath: Bwrap.Layout.mountPoint))
      } else {
        mounts.append(.tmpfs(Bwrap.Layout.mountPoint, sizeBytes: plan.tmpfsBytes))  // ephemeral, gone with the run
      }
      if let inputFD = plan.inputDirectoryFD {  // the inputs, read-only, beside /mnt (never beneath it)
        mounts.append(.readOnlyDescriptor(fd: childFD(for: .descriptor(inputFD)), sandboxPath: Bwrap.Layout.inputPoint))
      }
      mounts.append(.readOnly(plan.venv.root))  // interpreter and packages
      for (index, path) in plan.venv.extraDirectories.enumerated() {  // --ro-dir: the checked directory itself
        let fd = index < plan.extraDirectoryFDs.count ? plan.extraDirectoryFDs[index] : -1  // -1: the profile's plan
        mounts.append(.readOnlyDescriptor(fd: childFD(for: .descriptor(fd)), sandboxPath: path))
      }
      if let base = plan.venv.base {  // pyenv/uv base: its binary, stdlib and libpython, never the whole prefix
        if let cover = base.cover { mounts.append(.tmpfs(cover, sizeBytes: 1 << 16)) }  // first: it holds the rest
        mounts += base.binds.map { .readOnly($0) }
        mounts += base.links.map { .symlink(target: $0.target, sandboxPath: $0.path) }
        if let cover = base.cover { mounts.append(.remountReadOnly(cover)) }  // last: nothing more goes in
      }
      let script: String
      switch plan.payload {
      case .code(let source) where plan.warmSlot:
        mounts.append(.data(fd: childFD(for: .bytes(Array(source.utf8))), sandboxPath: Bwrap.Layout.warmDriverPath))
        mounts.append(.symlink(target: Bwrap.Layout.warmCodePath, sandboxPath: Bwrap.Layout.codePath))
        script = Bwrap.Layout.warmDriverPath
      case .code(let source):
        mounts.append(.data(fd: childFD(for: .bytes(Array(source.utf8))), sandboxPath: Bwrap.Layout.codePath))
        script = Bwrap.Layout.codePath
      case .script(let path):
        script = path
      }
      mounts.append(.remountReadOnly("/"))  // nothing else is writable

      var arguments = [
        "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
      ]
      if !plan.networkEnabled || plan.ownNetworkNamespace { arguments.append("--unshare-net") }  // lo (and pasta's tap)
      arguments += [
        "--disable-userns",  // no nested user namespaces
        "--assert-userns-disabled",  // ... and bwrap fails rather than run without that
        "--die-with-parent",  // the sandbox dies with the thread that started it
        "--new-session",  // no controlling terminal: no TIOCSTI into the caller's tty
        "--cap-drop", "ALL",  // as root, bwrap would otherwise keep every capability
        "--hostname", Bwrap.Layout.hostname,
        "--clearenv",
      ]
      for (name, value) in plan.environment { arguments += ["--setenv", name, value] }
      // Start-up handshake (see `superviseSandbox`): bwrap reports its pid 1 and, later, the
      // payload's exit on --json-status-fd. fd 3 is not bwrap's: it passes through to the gate,
      // which says "ready" there and waits for the host's "go".
      arguments += ["--json-status-fd", String(childFD(for: .report))]
      arguments += ["--seccomp", String(childFD(for: .bytes(plan.seccompProgram)))]  // loaded just before the payload
      for mount in mounts { arguments += mount.bwrapArguments }
      arguments +=
        ["--chdir", Bwrap.Layout.mountPoint, "--"]
        + plan.host.bootstrap.command(python: plan.venv.python, script: script, keepingChannel: plan.keepsChannel)
        + plan.arguments
      return Bwrap.Invocation(arguments: arguments, inputs: inputs, mounts: mounts)
    }

    /// Variables every payload sees; the caller's `environment` is added on top.
    static func makePayloadEnvironment(venvRoot: String, extra: [String: String]) throws(SandboxError) -> [(
      String, String
    )] {
      var variables: [String: String] = [
        "PATH": "\(venvRoot)/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
      ]
      for (name, value) in extra {
        guard Bwrap.isEnvironmentName(name), !value.utf8.contains(0) else { throw .invalidEnvironment(name: name) }
        variables[name] = value
      }
      return variables.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    static func isEnvironmentName(_ name: String) -> Bool {
      guard let first = name.utf8.first, !(first >= 0x30 && first <= 0x39) else { return false }
      return name.utf8.allSatisfy(Sys.isASCIIWordByte)
    }

  }
}

// MARK: - seccomp filter

extension Sandbox {
  /// The seccomp filter, built as classic BPF from tables. Pure: it loads nothing.
  enum Seccomp {
    /// One classic-BPF instruction, as `struct sock_filter` in `<linux/filter.h>`.
    struct Instruction: Equatable {
      var code: UInt16
      var jumpIfTrue: UInt8
      var jumpIfFalse: UInt8
      var k: UInt32

      // BPF_LD|BPF_W|BPF_ABS
      static func load(offset: UInt32) -> Self { Self(code: 0x20, jumpIfTrue: 0, jumpIfFalse: 0, k: offset) }
      static func jumpIfEqual(_ value: UInt32, _ onTrue: UInt8, _ onFalse: UInt8) -> Self {
        Self(code: 0x15, jumpIfTrue: onTrue, jumpIfFalse: onFalse, k: value)
      }
      static func jumpIfAtLeast(_ value: UInt32, _ onTrue: UInt8, _ onFalse: UInt8) -> Self {
        Self(code: 0x35, jumpIfTrue: onTrue, jumpIfFalse: onFalse, k: value)
      }
      static func jumpIfAnyBit(_ mask: UInt32, _ onTrue: UInt8, _ onFalse: UInt8) -> Self {
        Self(code: 0x45, jumpIfTrue: onTrue, jumpIfFalse: onFalse, k: mask)
      }
      static func ret(_ action: UInt32) -> Self { Self(code: 0x06, jumpIfTrue: 0, jumpIfFalse: 0, k: action) }
    }

    /// The seccomp filter bwrap loads just before the payload starts (`--seccomp`), built here
    /// without libseccomp. Denied calls fail with the errno a well-behaved program expects
    /// (ENOSYS where libc or libraries fall back, e.g. clone3 and io_uring); a call made through
    /// another architecture's entry point (ia32 on x86_64, or any foreign ABI) kills the process;
    /// x32 numbers and every number above the highest reviewed one fail with ENOSYS, so no 32-bit
    /// door and no call a newer kernel adds is open until it has been reviewed here.
    enum Filter {
      static let allow: UInt32 = 0x7fff_0000  // SECCOMP_RET_ALLOW
      static let killProcess: UInt32 = 0x8000_0000  // SECCOMP_RET_KILL_PROCESS
      static func fail(_ code: Int32) -> UInt32 { 0x0005_0000 | UInt32(code) }  // SECCOMP_RET_ERRNO

      /// The architectures a filter is built for (`AUDIT_ARCH_*` in `<linux/audit.h>`).
      enum Architecture: String, CaseIterable {
        case x86_64, aarch64
        var auditArch: UInt32 { self == .x86_64 ? 0xC000_003E : 0xC000_00B7 }
        /// The highest system call number reviewed for this table: 469 (`file_setattr`, Linux 6.17)
        /// on both. Since 451 (`cachestat`) the numbers are shared; of 451–469 only
        /// `lsm_set_self_attr` and `open_tree_attr` are denied (below); `fchmodat2` and `mseal`,
        /// which glibc 2.41 uses, are allowed. x32 numbers (bit 30) lie above it too.
        var highestReviewed: UInt32 { 469 }
        static var native: Architecture? {
          #if arch(x86_64)
            return .x86_64
          #elseif arch(arm64)
            return .aarch64
          #else
            return nil
          #endif
        }
      }

      /// A system call: its numbers (`<asm/unistd.h>`) and the errno it returns when refused.
      struct Rule {
        let name: String
        let x86_64: UInt32?
        let aarch64: UInt32?
        let errno: Int32
        func number(_ architecture: Architecture) -> UInt32? { architecture == .x86_64 ? x86_64 : aarch64 }
      }

      /// Calls refused outright, by group, with the reason for each group.
      static let deniedCalls: [Rule] =
        // Kernel keyring: the caller's session keyring stays out of reach.
        [
          Rule(name: "add_key", x86_64: 248, aarch64: 217, errno: EPERM),
          Rule(name: "keyctl", x86_64: 250, aarch64: 219, errno: EPERM),
          Rule(name: "request_key", x86_64: 249, aarch64: 218, errno: EPERM),
        ]
        // Tracing and reaching into other processes: pid 1 holds bwrap's status eventfd, which
        // pidfd_getfd would hand over (a forged exit); ptrace and process_vm_* read or write memory.
        + [
          Rule(name: "ptrace", x86_64: 101, aarch64: 117, errno: EPERM),
          Rule(name: "process_vm_readv", x86_64: 310, aarch64: 270, errno: EPERM),
          Rule(name: "process_vm_writev", x86_64: 311, aarch64: 271, errno: EPERM),
          Rule(name: "pidfd_getfd", x86_64: 438, aarch64: 438, errno: EPERM),
          Rule(name: "perf_event_open", x86_64: 298, aarch64: 241, errno: EPERM),
        ]
        // Kernel attack surface that programs do not need: BPF, userfaultfd (race widening), io_uring.
        + [
          Rule(name: "bpf", x86_64: 321, aarch64: 280, errno: EPERM),
          Rule(name: "userfaultfd", x86_64: 323, aarch64: 282, errno: EPERM),
          Rule(name: "io_uring_setup", x86_64: 425, aarch64: 425, errno: ENOSYS),
          Rule(name: "io_uring_enter", x86_64: 426, aarch64: 426, errno: ENOSYS),
          Rule(name: "io_uring_register", x86_64: 427, aarch64: 427, errno: ENOSYS),
        ]
        // Administration of the machine: kernels, modules, swap, reboot, logs, accounting, quotas, I/O ports.
        + [
          Rule(name: "kexec_load", x86_64: 246, aarch64: 104, errno: EPERM),
          Rule(name: "kexec_file_load", x86_64: 320, aarch64: 294, errno: EPERM),
          Rule(name: "init_module", x86_64: 175, aarch64: 105, errno: EPERM),
          Rule(name: "finit_module", x86_64: 313, aarch64: 273, errno: EPERM),
          Rule(name: "delete_module", x86_64: 176, aarch64: 106, errno: EPERM),
          Rule(name: "swapon", x86_64: 167, aarch64: 224, errno: EPERM),
          Rule(name: "swapoff", x86_64: 168, aarch64: 225, errno: EPERM),
          Rule(name: "reboot", x86_64: 169, aarch64: 142, errno: EPERM),
          Rule(name: "syslog", x86_64: 103, aarch64: 116, errno: EPERM),
          Rule(name: "acct", x86_64: 163, aarch64: 89, errno: EPERM),
          Rule(name: "quotactl", x86_64: 179, aarch64: 60, errno: EPERM),
          Rule(name: "quotactl_fd", x86_64: 443, aarch64: 443, errno: EPERM),
          Rule(name: "uselib", x86_64: 134, aarch64: nil, errno: EPERM),
          Rule(name: "lookup_dcookie", x86_64: 212, aarch64: 18, errno: EPERM),
          Rule(name: "iopl", x86_64: 172, aarch64: nil, errno: EPERM),
          Rule(name: "ioperm", x86_64: 173, aarch64: nil, errno: EPERM),
          Rule(name: "lsm_set_self_attr", x86_64: 460, aarch64: 460, errno: EPERM),
        ]
        // Files by handle and filesystem-wide notification: both bypass the path-based view.
        + [
          Rule(name: "name_to_handle_at", x86_64: 303, aarch64: 264, errno: EPERM),
          Rule(name: "open_by_handle_at", x86_64: 304, aarch64: 265, errno: EPERM),
          Rule(name: "fanotify_init", x86_64: 300, aarch64: 262, errno: EPERM),
        ]
        // Mounts and namespaces: the filesystem view and the namespaces are bwrap's, once.
        + [
          Rule(name: "mount", x86_64: 165, aarch64: 40, errno: EPERM),
          Rule(name: "umount2", x86_64: 166, aarch64: 39, errno: EPERM),
          Rule(name: "pivot_root", x86_64: 155, aarch64: 41, errno: EPERM),
          Rule(name: "chroot", x86_64: 161, aarch64: 51, errno: EPERM),
          Rule(name: "unshare", x86_64: 272, aarch64: 97, errno: EPERM),
          Rule(name: "setns", x86_64: 308, aarch64: 268, errno: EPERM),
        ]
        // NUMA placement: moves other processes' memory; nothing in the sandbox needs it.
        + [
          Rule(name: "move_pages", x86_64: 279, aarch64: 239, errno: EPERM),
          Rule(name: "mbind", x86_64: 237, aarch64: 235, errno: EPERM),
          Rule(name: "migrate_pages", x86_64: 256, aarch64: 238, errno: EPERM),
          Rule(name: "set_mempolicy", x86_64: 238, aarch64: 237, errno: EPERM),
          Rule(name: "set_mempolicy_home_node", x86_64: 450, aarch64: 450, errno: EPERM),
        ]
        // clone3's flags live in memory BPF cannot read, and the new mount API: ENOSYS, as on an
        // older kernel, makes glibc and libraries fall back (to clone, whose flags are checked below).
        + [
          Rule(name: "clone3", x86_64: 435, aarch64: 435, errno: ENOSYS),
          Rule(name: "open_tree", x86_64: 428, aarch64: 428, errno: ENOSYS),
          Rule(name: "move_mount", x86_64: 429, aarch64: 429, errno: ENOSYS),
          Rule(name: "fsopen", x86_64: 430, aarch64: 430, errno: ENOSYS),
          Rule(name: "fsconfig", x86_64: 431, aarch64: 431, errno: ENOSYS),
          Rule(name: "fsmount", x86_64: 432, aarch64: 432, errno: ENOSYS),
          Rule(name: "fspick", x86_64: 433, aarch64: 433, errno: ENOSYS),
          Rule(name: "mount_setattr", x86_64: 442, aarch64: 442, errno: ENOSYS),
          Rule(name: "open_tree_attr", x86_64: 467, aarch64: 467, errno: ENOSYS),
        ]
        // Space and memory no limit follows. fallocate reserves gigabytes in microseconds, faster
        // than the disk watch looks: EOPNOTSUPP makes glibc's posix_fallocate fall back to writes,
        // which RLIMIT_FSIZE and the watch do follow. SysV shared memory counts against no rlimit
        // and is unlimited in a fresh IPC namespace: ENOSYS, as a kernel without SYSVIPC says
        // (Python's multiprocessing uses POSIX shared memory in /dev/shm, a capped tmpfs).
        + [
          Rule(name: "fallocate", x86_64: 285, aarch64: 47, errno: EOPNOTSUPP),
          Rule(name: "shmget", x86_64: 29, aarch64: 194, errno: ENOSYS),
        ]
        // openat2 takes its mode in a struct BPF cannot read (a set-id file could be created):
        // ENOSYS, as before Linux 5.6; glibc's open and openat do not use it.
        + [
          Rule(name: "openat2", x86_64: 437, aarch64: 437, errno: ENOSYS)
        ]

      /// A condition on one argument of a call (its low 32 bits, as the kernel reads an `int`).
      enum Condition {
        case isOneOf([UInt32])
        case isNoneOf([UInt32])
        case hasNoneOfBits(UInt32)
      }

      /// A call that is allowed only when every condition of one of its alternatives holds on its
      /// arguments; otherwise it fails with the rule's errno.
      struct ArgumentRule {
        let call: Rule
        let alternatives: [[(argument: UInt32, condition: Condition)]]
        let why: String

        init(call: Rule, conditions: [(argument: UInt32, condition: Condition)], why: String) {
          self.init(call: call, alternatives: [conditions], why: why)
        }
        init(call: Rule, alternatives: [[(argument: UInt32, condition: Condition)]], why: String) {
          self.call = call
          self.alternatives = alternatives
          self.why = why
        }
      }

      /// S_ISUID | S_ISGID: a payload may not make set-id files (see `argumentRules`).
      static let setIDBits: UInt32 = 0o6000
      /// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET.
      static let cloneNamespaceFlags: UInt32 = 0x7E02_0000
      /// TIOCSTI and TIOCLINUX (typing into a terminal, console tricks); and the space
      /// reservations that are fallocate by another door, which no limit follows (they leave the
      /// size at 0, so not even RLIMIT_FSIZE): FS_IOC_RESVSP and _RESVSP64, FS_IOC_ZERO_RANGE,
      /// XFS_IOC_ALLOCSP and _ALLOCSP64 (`_IOW('X', nr, struct space_resv)`).
      static let deniedIoctls: [UInt32] = [
        0x5412, 0x541C, 0x4030_5828, 0x4030_582A, 0x4030_5839, 0x4030_580A, 0x4030_5824,
      ]
      /// MAP_GROWSDOWN: a mapping the kernel grows as a stack, which RLIMIT_DATA does not count.
      static let mapGrowsDown: UInt32 = 0x0100
      /// AF_UNIX, AF_NETLINK, AF_INET and AF_INET6, with the network on or off: off, the payload's
      /// own network namespace has only `lo`, so IP reaches nothing outside it, and loopback
      /// servers (http.server, multiprocessing managers, Jupyter kernels, test servers) work.
      static func allowedSocketFamilies(networkEnabled: Bool) -> [UInt32] { [1, 2, 10, 16] }
      static let socketCall = Rule(name: "socket", x86_64: 41, aarch64: 198, errno: EAFNOSUPPORT)

      static func argumentRules(networkEnabled: Bool) -> [ArgumentRule] {
        [
          ArgumentRule(
            call: socketCall, conditions: [(0, .isOneOf(allowedSocketFamilies(networkEnabled: networkEnabled)))],
            why: "no raw, packet or vsock sockets"),
          ArgumentRule(
            call: Rule(name: "clone", x86_64: 56, aarch64: 220, errno: EPERM),
            conditions: [(0, .hasNoneOfBits(cloneNamespaceFlags))],
            why: "fork and threads, but no new namespaces"),
          ArgumentRule(
            call: Rule(name: "ioctl", x86_64: 16, aarch64: 29, errno: EPERM),
            conditions: [(1, .isNoneOf(deniedIoctls))],
            why: "no typing into a terminal (TIOCSTI), console tricks (TIOCLINUX) or space reserved unseen"),
          ArgumentRule(
            call: Rule(name: "mmap", x86_64: 9, aarch64: 222, errno: EPERM),
            conditions: [(3, .hasNoneOfBits(mapGrowsDown))],
            why: "no MAP_GROWSDOWN: private memory RLIMIT_DATA would not count (glibc never asks for it)"),
          ArgumentRule(
            call: Rule(name: "personality", x86_64: 135, aarch64: 92, errno: EPERM),
            conditions: [(0, .isOneOf([0, 0xFFFF_FFFF]))],
            why: "only PER_LINUX or a query: no READ_IMPLIES_EXEC or ADDR_NO_RANDOMIZE"),
          // Scheduling of anything but the caller itself (pid 0): a payload could otherwise demote
          // bwrap's pid 1, which must run to tear the sandbox down. A process naming its own pid
          // explicitly gets EPERM too, since BPF cannot tell its pid.
          ArgumentRule(
            call: Rule(name: "sched_setscheduler", x86_64: 144, aarch64: 119, errno: EPERM),
            conditions: [(0, .isOneOf([0]))],
            why: "only the caller's own policy"),
          ArgumentRule(
            call: Rule(name: "sched_setattr", x86_64: 314, aarch64: 274, errno: EPERM),
            conditions: [(0, .isOneOf([0]))],
            why: "only the caller's own attributes"),
          ArgumentRule(
            call: Rule(name: "sched_setaffinity", x86_64: 203, aarch64: 122, errno: EPERM),
            conditions: [(0, .isOneOf([0]))],
            why: "only the caller's own CPUs"),
          ArgumentRule(
            call: Rule(name: "setpriority", x86_64: 141, aarch64: 140, errno: EPERM),
            conditions: [(0, .isOneOf([0])), (1, .isOneOf([0]))],
            why: "only PRIO_PROCESS of the caller (PRIO_PGRP and PRIO_USER would reach pid 1)"),
          ArgumentRule(
            call: Rule(name: "sched_setparam", x86_64: 142, aarch64: 118, errno: EPERM),
            conditions: [(0, .isOneOf([0]))],
            why: "only the caller's own parameters"),
          ArgumentRule(
            call: Rule(name: "ioprio_set", x86_64: 251, aarch64: 30, errno: EPERM),
            conditions: [(0, .isOneOf([1])), (1, .isOneOf([0]))],
            why: "only IOPRIO_WHO_PROCESS of the caller (a process group or user would reach pid 1)"),
          // Set-id files: a payload never makes one. Whoever else can reach the mount dir during
          // the run (a parent other users can enter) could link or open such a file where the
          // host's clean-up never looks; the host still clears any set-id bit it finds.
          ArgumentRule(
            call: Rule(name: "chmod", x86_64: 90, aarch64: nil, errno: EPERM),
            conditions: [(1, .hasNoneOfBits(setIDBits))], why: "no set-id bits"),
          ArgumentRule(
            call: Rule(name: "fchmod", x86_64: 91, aarch64: 52, errno: EPERM),
            conditions: [(1, .hasNoneOfBits(setIDBits))], why: "no set-id bits"),
          ArgumentRule(
            call: Rule(name: "fchmodat", x86_64: 268, aarch64: 53, errno: EPERM),
            conditions: [(2, .hasNoneOfBits(setIDBits))], why: "no set-id bits"),
          ArgumentRule(
            call: Rule(name: "fchmodat2", x86_64: 452, aarch64: 452, errno: EPERM),
            conditions: [(2, .hasNoneOfBits(setIDBits))], why: "no set-id bits"),
          ArgumentRule(
            call: Rule(name: "open", x86_64: 2, aarch64: nil, errno: EPERM),
            conditions: [(2, .hasNoneOfBits(setIDBits))], why: "no file created set-id"),
          ArgumentRule(
            call: Rule(name: "openat", x86_64: 257, aarch64: 56, errno: EPERM),
            conditions: [(3, .hasNoneOfBits(setIDBits))], why: "no file created set-id"),
          ArgumentRule(
            call: Rule(name: "creat", x86_64: 85, aarch64: nil, errno: EPERM),
            conditions: [(1, .hasNoneOfBits(setIDBits))], why: "no file created set-id"),
          ArgumentRule(
            call: Rule(name: "mknod", x86_64: 133, aarch64: nil, errno: EPERM),
            conditions: [(1, .hasNoneOfBits(setIDBits))], why: "no file created set-id"),
          ArgumentRule(
            call: Rule(name: "mknodat", x86_64: 259, aarch64: 33, errno: EPERM),
            conditions: [(2, .hasNoneOfBits(setIDBits))], why: "no file created set-id"),
          ArgumentRule(
            call: Rule(name: "prlimit64", x86_64: 302, aarch64: 261, errno: EPERM),
            alternatives: [[(0, .isOneOf([0]))], [(2, .isOneOf([0]))]],
            why: "setting limits only of the caller itself (pid 0); reading another's (new = NULL) stays allowed"),
        ]
      }

      /// Builds the program: check the architecture and the number's range, then each rule in
      /// turn, else allow. Jumps are resolved from labels, never counted by hand.
      static func makeProgram(for architecture: Architecture, networkEnabled: Bool) -> [Seccomp.Instruction] {
        var program = Seccomp.Assembler()
        program.emit(.load(offset: 4))  // seccomp_data.arch
        program.emit(.jumpIfEqual(architecture.auditArch, 1, 0))
        program.emit(.ret(killProcess))
        program.emit(.load(offset: 0))  // seccomp_data.nr
        program.emit(.jumpIfAtLeast(architecture.highestReviewed + 1, 0, 1))
        program.emit(.ret(fail(ENOSYS)))
        for rule in deniedCalls {
          guard let number = rule.number(architecture) else { continue }
          program.emit(.jumpIfEqual(number, 0, 1))
          program.emit(.ret(fail(rule.errno)))
        }
        for rule in argumentRules(networkEnabled: networkEnabled) {
          guard let number = rule.call.number(architecture) else { continue }
          let next = program.label()
          let refuse = program.label()
          program.jump(ifEqual: number, else: next)
          for (index, conditions) in rule.alternatives.enumerated() {
            let fails = index == rule.alternatives.count - 1 ? refuse : program.label()  // try the next alternative
            for (argument, condition) in conditions {
              program.emit(.load(offset: 16 + 8 * argument))  // seccomp_data.args[i], low half (little-endian)
              switch condition {
              case .isOneOf(let values):
                let holds = program.label()
                for value in values { program.jump(ifEqual: value, to: holds) }
                program.jump(to: fails)
                program.place(holds)
              case .isNoneOf(let values):
                for value in values { program.jump(ifEqual: value, to: fails) }
              case .hasNoneOfBits(let mask):
                program.jump(ifAnyBit: mask, to: fails)
              }
            }
            program.emit(.ret(allow))
            if fails != refuse { program.place(fails) }
          }
          program.place(refuse)
          program.emit(.ret(fail(rule.call.errno)))
          program.place(next)  // reached only from the number test: the accumulator still holds nr
        }
        program.emit(.ret(allow))
        return program.assembled()
      }

      /// The program as bytes for bwrap (`struct sock_filter`, native byte order).
      static func encode(_ program: [Seccomp.Instruction]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(program.count * 8)
        for instruction in program {
          withUnsafeBytes(of: instruction.code) { bytes += $0 }
          bytes += [instruction.jumpIfTrue, instruction.jumpIfFalse]
          withUnsafeBytes(of: instruction.k) { bytes += $0 }
        }
        return bytes
      }

      private static let networkOnProgram = Architecture.native.map {
        encode(makeProgram(for: $0, networkEnabled: true))
      }
      private static let networkOffProgram = Architecture.native.map {
        encode(makeProgram(for: $0, networkEnabled: false))
      }
      /// The program of a relaxed layer (`--no-seccomp`): it allows everything, and exists so that
      /// bwrap's pid 1 still visibly loads a filter once it is armed (see `superviseSandbox`).
      static let allowAll = encode([.ret(allow)])

      /// This machine's encoded program, built once per process; nil on an unsupported architecture.
      static func program(networkEnabled: Bool) -> [UInt8]? {
        networkEnabled ? networkOnProgram : networkOffProgram
      }
    }

    /// A classic-BPF program under construction, with forward jumps to labels.
    struct Assembler {
      typealias Label = Int
      private var instructions: [Seccomp.Instruction] = []
      private var targets: [Int?] = []  // label → instruction index
      private var fixups: [(at: Int, label: Label, onTrue: Bool)] = []

      mutating func emit(_ instruction: Seccomp.Instruction) { instructions.append(instruction) }
      mutating func label() -> Label {
        targets.append(nil)
        return targets.count - 1
      }
      mutating func place(_ label: Label) { targets[label] = instructions.count }

      /// Falls through when the accumulator equals `value`, else jumps to `label`.
      mutating func jump(ifEqual value: UInt32, else label: Label) {
        fixups.append((instructions.count, label, false))
        emit(.jumpIfEqual(value, 0, 0))
      }
      mutating func jump(ifEqual value: UInt32, to label: Label) {
        fixups.append((instructions.count, label, true))
        emit(.jumpIfEqual(value, 0, 0))
      }
      mutating func jump(ifAnyBit mask: UInt32, to label: Label) {
        fixups.append((instructions.count, label, true))
        emit(.jumpIfAnyBit(mask, 0, 0))
      }
      /// An unconditional jump, as `jeq 0` with both branches to `label`.
      mutating func jump(to label: Label) {
        fixups.append((instructions.count, label, true))
        fixups.append((instructions.count, label, false))
        emit(.jumpIfEqual(0, 0, 0))
      }

      /// The program with every jump resolved (forward, within 255 instructions, as BPF requires).
      func assembled() -> [Seccomp.Instruction] {
        var program = instructions
        for fixup in fixups {
          // A label is always placed after its jumps here; a wrong offset would fail the golden tests.
          let offset = UInt8(clamping: (targets[fixup.label] ?? fixup.at + 1) - fixup.at - 1)
          if fixup.onTrue { program[fixup.at].jumpIfTrue = offset } else { program[fixup.at].jumpIfFalse = offset }
        }
        return program
      }
    }
  }
}

// MARK: - Landlock

extension Sandbox {
  /// Landlock's scoping of abstract unix sockets (ABI ≥ 6, Linux ≥ 6.12): with the network on,
  /// the payload shares the host's network namespace, where host programs' abstract sockets live.
  enum Landlock {
    // `<linux/landlock.h>` and `<asm/unistd.h>` (the same numbers on x86_64 and aarch64).
    static let createRuleset = 444
    static let restrictSelf = 446
    static let versionFlag = 1  // LANDLOCK_CREATE_RULESET_VERSION
    static let scopeAbstractUnixSocket: UInt64 = 1
    static let setNoNewPrivileges: Int32 = 38  // PR_SET_NO_NEW_PRIVS

    /// The kernel's Landlock ABI version, 0 when Landlock is unavailable.
    static let abi: Int = Sys.GlibcExtras.syscall.map { max(0, $0(createRuleset, 0, 0, versionFlag, 0)) } ?? 0
    static var scopesAbstractSockets: Bool { abi >= 6 }

    /// Confines the calling thread (and what it spawns) so abstract unix sockets created outside
    /// the domain cannot be reached. no_new_privs and the domain are per thread: call it only on
    /// a thread of the sandbox's own.
    /// - Throws: `SandboxError.layerUnavailable` when the kernel refuses.
    static func restrictThreadToOwnAbstractSockets() throws(SandboxError) {
      guard let syscall = Sys.GlibcExtras.syscall, let prctl = Sys.GlibcExtras.prctl else {
        throw .glibcTooOld(function: "syscall/prctl")
      }
      var attribute: (UInt64, UInt64, UInt64) = (0, 0, scopeAbstractUnixSocket)  // fs, net, scoped
      let ruleset = withUnsafeBytes(of: &attribute) { raw in
        syscall(createRuleset, Int(bitPattern: raw.baseAddress), raw.count, 0, 0)
      }
      guard ruleset >= 0 else {
        throw .layerUnavailable(
          layer: .landlockScope, reason: "landlock_create_ruleset: \(Sys.errnoText(errno))", relax: "report this")
      }
      defer { close(Int32(ruleset)) }
      guard prctl(setNoNewPrivileges, 1, 0, 0, 0) == 0, syscall(restrictSelf, ruleset, 0, 0, 0) == 0 else {
        throw .layerUnavailable(
          layer: .landlockScope, reason: "landlock_restrict_self: \(Sys.errnoText(errno))", relax: "report this")
      }
    }
  }
}

// MARK: - AppArmor profile

extension Sandbox {
  /// The AppArmor profile for a venv, generated from a rule table and the mount table, and its state in the kernel.
  enum AppArmorProfile {
    /// Which AppArmor language the parser and kernel on this host understand.
    struct Support: Sendable, Equatable {
      /// `apparmor_parser --version`, e.g. "3.0.8"; nil when the parser is not installed.
      var parserVersion: String?
      /// The kernel mediates user namespace creation: `userns_create` in `features/namespaces/mask`
      /// (upstream and Debian 13 kernels), or the file `features/namespaces/userns_create` (Ubuntu).
      var kernelMediatesUserns: Bool

      /// AppArmor 4 syntax (`abi <abi/4.0>`, `userns,`) only where both sides support it.
      var usesABI4: Bool { (Sys.parseVersion(parserVersion ?? "")?.first ?? 0) >= 4 && kernelMediatesUserns }

      /// Probed once per process, when a profile is first needed.
      static let current = probe()

      static func probe() -> AppArmorProfile.Support {
        var version: String? = nil
        if let parser = Sys.findExecutable("apparmor_parser") {
          version = try? Sys.readVersion(of: parser)  // "AppArmor parser version 3.0.8"
        }
        let namespaces = "\(AppArmorProfile.Paths.features)/namespaces"
        let mask = Sys.readSmallFile("\(namespaces)/mask").map { $0.split(whereSeparator: \.isWhitespace) } ?? []
        return AppArmorProfile.Support(
          parserVersion: version,
          kernelMediatesUserns: mask.contains("userns_create") || Sys.exists("\(namespaces)/userns_create"))
      }
    }

    /// Where AppArmor keeps things on the host.
    enum Paths {
      static let securityfs = "/sys/kernel/security/apparmor"
      static let features = "\(securityfs)/features"
      static let loadedProfiles = "\(securityfs)/profiles"
      static let profileDirectory = "/etc/apparmor.d"
    }

    /// One profile rule and the reason it exists (written into the profile as a comment).
    struct Rule: Equatable {
      var rule: String
      var why: String
    }

    /// Quotes a path for a profile, or refuses it: AppArmor treats `* ? [ ] { } ^ "` and `\` as
    /// pattern syntax, and a newline would end the rule.
    /// - Throws: `SandboxError.unsafeAppArmorPath`.
    static func quotedPath(_ path: String) throws(SandboxError) -> String {
      let special: Set<Character> = ["*", "?", "[", "]", "{", "}", "^", "\"", "\\", "#", ",", "\0"]
      if path.contains(where: { special.contains($0) || $0.isNewline })
        || path.unicodeScalars.contains(where: { $0.value < 0x20 })
      {
        throw .unsafeAppArmorPath(path: path)
      }
      return path.contains(" ") ? "\"\(path)\"" : path
    }

    /// The profile for this venv on this host (what `Sandbox` compares the installed one with).
    static func makeProfile(name: String, venv: Preflight.VenvLayout, host: Preflight.HostFacts) throws(SandboxError)
      -> String
    {
      try AppArmorProfile.makeProfile(
        name: name, venv: venv, interpreter: Sys.resolvedPath(venv.python) ?? venv.python, host: host.layout,
        bwrapPath: host.bwrapPath, support: AppArmorProfile.Support.current, isDirectory: Sys.isDirectory)
    }

    /// Generates the profile that confines bwrap's setup and the payload for this venv.
    ///
    /// bwrap sets no_new_privs, so no profile transition can happen inside the sandbox: one profile
    /// covers bwrap (capabilities and mounts to build the sandbox) and the payload (`ix` rules).
    /// Mount rules come from the same mount table the bwrap argv is rendered from, for both /mnt
    /// variants, so a new mount cannot be forgotten here. Paths are as seen inside bwrap's mount
    /// namespace (`/oldroot/…` is the host, `/newroot/…` the sandbox under construction).
    /// - Throws: `SandboxError.unsafeAppArmorPath` for a venv path AppArmor cannot express.
    static func makeProfile(
      name: String, venv: Preflight.VenvLayout, interpreter: String, host: Preflight.HostLayout, bwrapPath: String,
      support: AppArmorProfile.Support, isDirectory: (String) -> Bool
    ) throws(SandboxError) -> String {
      let rules = try AppArmorProfile.makeRules(
        name: name, venv: venv, interpreter: interpreter, host: host, bwrapPath: bwrapPath, support: support,
        isDirectory: isDirectory)
      var text = """
        # AppArmor profile \(name), generated by sandbox.swift for the venv \(venv.root).
        # Regenerate it with the tool rather than editing it: the tool compares the installed copy.
        abi <abi/\(support.usesABI4 ? "4.0" : "3.0")>,
        include <tunables/global>

        profile \(name) flags=(attach_disconnected) {

        """
      for rule in rules {
        text += "  # \(rule.why)\n  \(rule.rule)\n"
      }
      return text + "}\n"
    }

    static func makeRules(
      name: String, venv: Preflight.VenvLayout, interpreter: String, host: Preflight.HostLayout, bwrapPath: String,
      support: AppArmorProfile.Support, isDirectory: (String) -> Bool
    ) throws(SandboxError) -> [AppArmorProfile.Rule] {
      let venvRoot = try AppArmorProfile.quotedPath(venv.root)
      let python = try AppArmorProfile.quotedPath(interpreter)
      let bwrap = try AppArmorProfile.quotedPath(bwrapPath)
      var rules: [AppArmorProfile.Rule] = [
        AppArmorProfile.Rule(rule: "include <abstractions/base>", why: "libc, the dynamic loader, locales"),
        // bwrap building the sandbox (verified in enforce mode: bwrap 0.8, apparmor 3.0.8, Linux 6.1)
        AppArmorProfile.Rule(rule: "\(bwrap) mr,", why: "bwrap itself, started by setpriv under this profile"),
        AppArmorProfile.Rule(
          rule: "capability sys_admin,", why: "bwrap: new namespaces, mount, pivot_root (inside its user namespace)"),
        AppArmorProfile.Rule(rule: "capability net_admin,", why: "bwrap: bring up lo in a new network namespace"),
        AppArmorProfile.Rule(rule: "capability setpcap,", why: "bwrap --cap-drop ALL drops the bounding set (as root)"),
        AppArmorProfile.Rule(
          rule: "deny capability dac_override,",
          why: "asked for by bwrap, not needed: refused quietly (the payload holds no capabilities at all)"),
        AppArmorProfile.Rule(
          rule: "deny capability sys_ptrace,", why: "asked for by bwrap, not needed; no ptrace outside the sandbox"),
        AppArmorProfile.Rule(
          rule: "capability sys_resource,",
          why: "bwrap --disable-userns lowers user.max_user_namespaces in its nested namespace"),
        AppArmorProfile.Rule(rule: "network netlink raw,", why: "bwrap: rtnetlink for lo; Python: interface names"),
        AppArmorProfile.Rule(rule: "@{PROC}/sys/kernel/overflow{u,g}id r,", why: "bwrap: user namespace setup"),
        AppArmorProfile.Rule(rule: "@{PROC}/sys/user/max_user_namespaces r,", why: "bwrap: user namespace setup"),
        AppArmorProfile.Rule(
          rule: "@{PROC}/sys/user/max_user_namespaces w,",
          why: "bwrap --disable-userns lowers it inside the sandbox's own namespace"),
        AppArmorProfile.Rule(
          rule: "@{PROC}/@{pid}/{uid_map,gid_map,setgroups} rw,", why: "bwrap: map the caller's uid and gid"),
        AppArmorProfile.Rule(rule: "@{PROC}/@{pid}/mountinfo r,", why: "bwrap: read its mounts to remount them"),
        AppArmorProfile.Rule(rule: "@{PROC}/@{pid}/fd/ r,", why: "bwrap: descriptors (--bind-fd, --ro-bind-data)"),
        AppArmorProfile.Rule(rule: "/ r,", why: "bwrap: the root it builds on"),
        AppArmorProfile.Rule(rule: "/tmp/{newroot,oldroot}/ w,", why: "bwrap: staging points of pivot_root"),
        AppArmorProfile.Rule(rule: "/newroot/** rwl,", why: "bwrap: mount points and generated files of the new root"),
        AppArmorProfile.Rule(
          rule: "/bindfile* rw,", why: "bwrap: staging file of each --ro-bind-data (generated /etc files, the code)"),
        AppArmorProfile.Rule(
          rule: "mount options=(rw, silent, rslave) -> /,", why: "bwrap: stop mount propagation to the host"),
        AppArmorProfile.Rule(rule: "mount fstype=tmpfs -> /tmp/,", why: "bwrap: the staging tmpfs"),
        AppArmorProfile.Rule(
          rule: "mount options=(rw, rbind) /tmp/newroot/ -> /tmp/newroot/,",
          why: "bwrap: make the new root a mount point"),
        AppArmorProfile.Rule(rule: "pivot_root oldroot=/tmp/oldroot/ /tmp/,", why: "bwrap: first pivot"),
        AppArmorProfile.Rule(
          rule: "mount options=(rw, silent, rprivate) -> /oldroot/,", why: "bwrap: detach the host's mounts"),
        // bwrap 0.12 (verified in enforce mode on Debian 13; unused by 0.8, and kept for every
        // version so that a bwrap upgrade never invalidates an installed profile)
        AppArmorProfile.Rule(rule: "/proc/ w,", why: "bwrap 0.12: mkdir /proc in the staging tmpfs"),
        AppArmorProfile.Rule(
          rule: "mount options=(rw, rbind) /oldroot/proc/ -> /proc/,",
          why: "bwrap 0.12: the host's /proc in the staging root (its /proc/self/fd paths)"),
        AppArmorProfile.Rule(rule: "/newroot/ r,", why: "bwrap 0.12: opens the new root to resolve paths in it"),
      ]
      // Mounts of the sandbox, from the mount table (with and without a host mount dir, and a
      // warm pool's slot).
      let variants = [(Int32(3), false), (nil, false), (Int32(3), true)].map { fd, warm in
        var plan = Bwrap.RunPlan(
          host: host, venv: venv, networkEnabled: false, mountDirectoryFD: fd, inputDirectoryFD: fd,
          payload: .code(""), environment: [], tmpfsBytes: 1, seccompProgram: [])
        plan.warmSlot = warm
        return Bwrap.makeInvocation(plan).mounts
      }
      var seen: Set<String> = Set(rules.map(\.rule))
      for mount in variants.joined() {
        for rule in try AppArmorProfile.mountRules(mount, isDirectory: isDirectory)
        where seen.insert(rule.rule).inserted {
          rules.append(rule)
        }
      }
      rules += [
        AppArmorProfile.Rule(rule: "pivot_root oldroot=/newroot/ /newroot/,", why: "bwrap: make the new root the root"),
        AppArmorProfile.Rule(rule: "umount /oldroot/,", why: "bwrap: drop the host's filesystem"),
        AppArmorProfile.Rule(rule: "umount /,", why: "bwrap: drop the host's filesystem"),
        AppArmorProfile.Rule(
          rule: "signal (receive) peer=unconfined,", why: "the host's sandbox process kills bwrap on timeout"),
        AppArmorProfile.Rule(
          rule: "signal (send, receive) peer=\(name),", why: "processes inside the sandbox signal each other"),
        AppArmorProfile.Rule(
          rule: "ptrace (read, readby) peer=\(name),",
          why: "reading /proc of the sandbox's own processes; nothing outside"),
        // The payload (bwrap sets no_new_privs, so every exec stays in this profile: ix)
        AppArmorProfile.Rule(
          rule: "\(try AppArmorProfile.quotedPath(host.bootstrap.shell)) ix,",
          why: "the gate: a shell that waits for the host's go, then runs the interpreter"),
        AppArmorProfile.Rule(rule: "\(python) ix,", why: "the venv's interpreter (bin/python resolves here)"),
        AppArmorProfile.Rule(rule: "/usr/** mr,", why: "system libraries and the standard library, read-only"),
        AppArmorProfile.Rule(rule: "/usr/bin/* ix,", why: "subprocesses the payload may run (sh, coreutils)"),
        AppArmorProfile.Rule(
          rule: "audit deny /usr/sbin/* x,",
          why: "administration tools are never run from the sandbox (AppArmor-only denial)"),
        AppArmorProfile.Rule(rule: "\(venvRoot)/ r,", why: "the venv"),
        AppArmorProfile.Rule(rule: "\(venvRoot)/** mr,", why: "the venv's packages, read-only"),
        AppArmorProfile.Rule(rule: "\(venvRoot)/bin/* ix,", why: "the venv's scripts"),
      ]
      for directory in venv.extraDirectories {
        let path = try AppArmorProfile.quotedPath(directory)
        rules.append(AppArmorProfile.Rule(rule: "\(path)/{,**} mr,", why: "an extra read-only directory (--ro-dir)"))
      }
      for bind in venv.base?.binds ?? [] {  // the interpreter's binary is `python` above
        let path = try AppArmorProfile.quotedPath(bind)
        rules.append(
          isDirectory(bind)
            ? AppArmorProfile.Rule(rule: "\(path)/{,**} mr,", why: "the base interpreter's standard library, read-only")
            : AppArmorProfile.Rule(rule: "\(path) mr,", why: "the base interpreter's binary or libpython, read-only"))
      }
      rules += [
        AppArmorProfile.Rule(rule: "/etc/ r,", why: "listing /etc shows only the documented files")
      ]
      for entry in Bwrap.Layout.exposedEtc {
        let path = try AppArmorProfile.quotedPath(entry.path)
        rules.append(AppArmorProfile.Rule(rule: entry.directory ? "\(path)/{,**} r," : "\(path) r,", why: entry.why))
      }
      for file in Bwrap.Layout.generatedEtc {
        rules.append(AppArmorProfile.Rule(rule: "\(try AppArmorProfile.quotedPath(file.path)) r,", why: file.why))
      }
      rules += [
        AppArmorProfile.Rule(
          rule: "/run/{,sandbox/} r,", why: "the directory of the code (Python lists its script's directory)"),
        AppArmorProfile.Rule(rule: "\(Bwrap.Layout.codePath) r,", why: "the code of a .code payload"),
        AppArmorProfile.Rule(rule: "\(Bwrap.Layout.warmDriverPath) r,", why: "a warm pool's slot: its driver"),
        AppArmorProfile.Rule(rule: "\(Bwrap.Layout.mountPoint)/{,**} rwlkm,", why: "/mnt, the one host interface"),
        AppArmorProfile.Rule(rule: "\(Bwrap.Layout.inputPoint)/{,**} mr,", why: "/input, the inputs (read-only)"),
        AppArmorProfile.Rule(rule: "/tmp/{,**} rwlkm,", why: "the private /tmp"),
        AppArmorProfile.Rule(rule: "/dev/shm/{,**} rwlkm,", why: "POSIX semaphores (multiprocessing)"),
        AppArmorProfile.Rule(rule: "/dev/ r,", why: "listing the minimal /dev"),
      ]
      for node in Bwrap.Layout.deviceNodes {
        rules.append(AppArmorProfile.Rule(rule: "/dev/\(node.name) \(node.access),", why: node.why))
      }
      rules += [
        AppArmorProfile.Rule(rule: "/dev/ptmx rw,", why: "pseudo-terminals of --interactive (a link into pts)"),
        AppArmorProfile.Rule(rule: "/dev/pts/{,*} rw,", why: "pseudo-terminals of --interactive"),
        AppArmorProfile.Rule(rule: "@{PROC}/{,**} r,", why: "the sandbox's own /proc (a new pid namespace)"),
        AppArmorProfile.Rule(
          rule: "audit deny @{PROC}/*/environ r,", why: "no process's environment is readable (AppArmor-only denial)"),
        AppArmorProfile.Rule(rule: "deny @{PROC}/*/mem rw,", why: "no process's memory is readable"),
        AppArmorProfile.Rule(
          rule: "deny @{PROC}/sys/{kernel,vm,fs,net,dev,debug,abi,crypto}/** w,",
          why:
            "no sysctl writes (as root they would be the host's); only user/ is writable, by bwrap, in its own namespace"
        ),
        AppArmorProfile.Rule(
          rule:
            "deny @{PROC}/{\(Bwrap.Layout.maskedProcFiles.map { $0.dropFirst("/proc/".count) }.joined(separator: ","))} rw,",
          why: "the masked kernel state (Layout.maskedProcFiles): never, even if a mask were missing"),
        AppArmorProfile.Rule(rule: "deny /sys/** rwklx,", why: "sysfs is not mounted; never reachable"),
        AppArmorProfile.Rule(rule: "audit deny /sys/kernel/security/** rw,", why: "the LSM's own interface"),
        AppArmorProfile.Rule(rule: "network unix,", why: "local sockets"),
        AppArmorProfile.Rule(rule: "network netlink dgram,", why: "interface lookups"),
        AppArmorProfile.Rule(
          rule: "network inet stream,", why: "TCP: the host's network when on, the sandbox's own lo when off"),
        AppArmorProfile.Rule(
          rule: "network inet dgram,", why: "UDP and DNS (the sandbox's own lo when the network is off)"),
        AppArmorProfile.Rule(rule: "network inet6 stream,", why: "TCP over IPv6 (::1 only when the network is off)"),
        AppArmorProfile.Rule(rule: "network inet6 dgram,", why: "UDP over IPv6 (::1 only when the network is off)"),
      ]
      if support.usesABI4 {
        rules.append(
          AppArmorProfile.Rule(rule: "userns,", why: "bwrap needs a user namespace (AppArmor 4 mediates creating one)"))
      }
      return rules
    }

    /// The mount rules bwrap needs for one entry of the mount table (see `Mount`).
    static func mountRules(_ mount: Bwrap.Mount, isDirectory: (String) -> Bool) throws(SandboxError) -> [AppArmorProfile
      .Rule]
    {
      func target(_ path: String, directory: Bool) throws(SandboxError) -> String {
        let inside = try AppArmorProfile.quotedPath(path == "/" ? "/newroot" : "/newroot\(path)")
        return directory ? inside + "/" : inside
      }
      func remount(_ path: String, directory: Bool) throws(SandboxError) -> AppArmorProfile.Rule {
        AppArmorProfile.Rule(
          rule:
            "mount options in (ro, rw, nosuid, nodev, noexec, remount, bind, silent, relatime) -> \(try target(path, directory: directory)),",
          why: "remount \(path) with its flags")
      }
      switch mount {
      case .readOnly(let path):
        let directory = isDirectory(path)
        let source = try AppArmorProfile.quotedPath("/oldroot\(path)") + (directory ? "/" : "")
        return [
          AppArmorProfile.Rule(
            rule: "mount options=(rw, rbind) \(source) -> \(try target(path, directory: directory)),",
            why: "bind \(path) from the host"),
          try remount(path, directory: directory),
        ]
      case .readWriteDescriptor(_, let path), .readOnlyDescriptor(_, let path):
        let what =
          if case .readWriteDescriptor = mount {
            "the validated mount dir"
          } else if path == Bwrap.Layout.inputPoint {
            "the validated input dir"
          } else {
            "the checked --ro-dir"
          }
        return [
          AppArmorProfile.Rule(
            rule: "mount options=(rw, rbind) /oldroot/** -> \(try target(path, directory: true)),",
            why: "bind \(what) (reached through its descriptor) at \(path)"),
          try remount(path, directory: true),
        ]
      case .tmpfs(let path, _), .maskDirectory(let path):
        return [
          AppArmorProfile.Rule(
            rule: "mount fstype=tmpfs -> \(try target(path, directory: true)),", why: "tmpfs at \(path)"),
          try remount(path, directory: true),
        ]
      case .proc(let path):
        var rules = [
          AppArmorProfile.Rule(rule: "mount fstype=proc -> \(try target(path, directory: true)),", why: "a new /proc"),
          try remount(path, directory: true),
        ]
        for (entry, directory) in [("sys", true), ("sysrq-trigger", false), ("irq", true), ("bus", true)] {
          let inside = try target("\(path)/\(entry)", directory: directory)
          rules.append(
            AppArmorProfile.Rule(
              rule: "mount options=(rw, rbind) \(inside) -> \(inside),",
              why: "bwrap --proc covers \(path)/\(entry) read-only by binding it over itself"))
          rules.append(try remount("\(path)/\(entry)", directory: directory))
        }
        return rules
      case .dev(let path):
        var rules = [
          AppArmorProfile.Rule(
            rule: "mount fstype=tmpfs -> \(try target(path, directory: true)),",
            why: "bwrap --dev: a tmpfs for the minimal /dev")
        ]
        for node in Bwrap.Layout.deviceNodes.map(\.name) {
          rules.append(
            AppArmorProfile.Rule(
              rule:
                "mount options=(rw, rbind) /oldroot/dev/\(node) -> \(try target("\(path)/\(node)", directory: false)),",
              why: "bwrap --dev: \(path)/\(node) from the host"))
          rules.append(try remount("\(path)/\(node)", directory: false))
        }
        rules.append(
          AppArmorProfile.Rule(
            rule: "mount fstype=devpts -> \(try target("\(path)/pts", directory: true)),",
            why: "bwrap --dev: a private devpts"))
        rules.append(try remount("\(path)/pts", directory: true))
        return rules
      case .data(_, let path):
        return [
          AppArmorProfile.Rule(
            rule: "mount options=(rw, rbind) /bindfile* -> \(try target(path, directory: false)),",
            why: "bwrap stages \(path) as /bindfileXXXXXX, then binds it"),
          try remount(path, directory: false),
        ]
      case .maskFile(let path):
        return [
          AppArmorProfile.Rule(
            rule: "mount options=(rw, rbind) /oldroot/dev/null -> \(try target(path, directory: false)),",
            why: "mask \(path) with /dev/null"),
          try remount(path, directory: false),
        ]
      case .remountReadOnly(let path):
        return [try remount(path, directory: true)]
      case .symlink, .file:  // made in the new root's tmpfs, which /newroot/** rwl covers
        return []
      }
    }

    /// How a profile is loaded in the kernel.
    enum State: Equatable {
      case notLoaded
      case enforce
      case complain
      case other(String)

      init(mode: String) {
        switch mode {
        case "enforce": self = .enforce
        case "complain": self = .complain
        default: self = .other(mode)
        }
      }

      /// Reads the profile's mode from `policy/profiles/*/{name,mode}` (readable by every user),
      /// else from the root-only listing `profiles` (lines "NAME (MODE)").
      static func read(_ name: String) -> AppArmorProfile.State {
        let policy = "\(AppArmorProfile.Paths.securityfs)/policy/profiles"
        if let directory = opendir(policy) {
          defer { closedir(directory) }
          while let entry = readdir(directory) {
            let entry = Sys.entryName(entry)
            guard entry.hasPrefix("\(name)."), Sys.readSmallFile("\(policy)/\(entry)/name").map(Sys.trimmed) == name,
              let mode = Sys.readSmallFile("\(policy)/\(entry)/mode").map(Sys.trimmed)
            else { continue }
            return AppArmorProfile.State(mode: mode)
          }
        }
        guard let listing = Sys.readSmallFile(AppArmorProfile.Paths.loadedProfiles, limit: 16 << 20) else {
          return .notLoaded
        }
        for line in listing.split(separator: "\n") where line.hasPrefix("\(name) (") {
          return AppArmorProfile.State(mode: String(line.dropFirst(name.count + 2).prefix { $0 != ")" }))
        }
        return .notLoaded
      }
    }

    /// A unified diff of two texts (3 lines of context), for the installed-vs-generated check.
    static func makeUnifiedDiff(old: String, new: String, oldName: String, newName: String) -> String {
      let a = old.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
      let b = new.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
      // Longest common subsequence table, from the end (profiles are a few hundred lines).
      var table = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
      for i in stride(from: a.count - 1, through: 0, by: -1) {
        for j in stride(from: b.count - 1, through: 0, by: -1) {
          table[i][j] = a[i] == b[j] ? table[i + 1][j + 1] + 1 : max(table[i + 1][j], table[i][j + 1])
        }
      }
      enum Line {
        case same(String)
        case removed(String)
        case added(String)
        var isChange: Bool { if case .same = self { false } else { true } }
      }
      var lines: [Line] = []
      var (i, j) = (0, 0)
      while i < a.count || j < b.count {
        if i < a.count && j < b.count && a[i] == b[j] {
          lines.append(.same(a[i]))
          i += 1
          j += 1
        } else if i < a.count && (j == b.count || table[i + 1][j] >= table[i][j + 1]) {
          lines.append(.removed(a[i]))
          i += 1  // removals first, as diff(1) shows them
        } else {
          lines.append(.added(b[j]))
          j += 1
        }
      }
      var output = "--- \(oldName)\n+++ \(newName)\n"
      var index = 0
      var oldLine = 1
      var newLine = 1
      while index < lines.count {
        guard let firstChange = lines[index...].firstIndex(where: \.isChange) else { break }
        let start = max(index, firstChange - 3)
        var end = firstChange
        while end < lines.count {  // extend while changes are within 6 lines of each other
          let next = lines[end...].firstIndex(where: \.isChange) ?? lines.count
          if next == lines.count || next - end > 6 { break }
          end = next + 1
        }
        end = min(lines.count, end + 3)
        for line in lines[index..<start] {
          if case .same = line {
            oldLine += 1
            newLine += 1
          }
        }
        var oldCount = 0
        var newCount = 0
        var body = ""
        for line in lines[start..<end] {
          switch line {
          case .same(let text):
            body += " \(text)\n"
            oldCount += 1
            newCount += 1
          case .removed(let text):
            body += "-\(text)\n"
            oldCount += 1
          case .added(let text):
            body += "+\(text)\n"
            newCount += 1
          }
        }
        output += "@@ -\(oldLine),\(oldCount) +\(newLine),\(newCount) @@\n" + body
        oldLine += oldCount
        newLine += newCount
        index = end
      }
      return output
    }
  }
}

// MARK: - Process spawning

extension Sandbox {
  /// The only place that calls posix_spawn, poll, waitpid and pidfd_send_signal. Knows nothing of bwrap.
  enum Spawner {
    /// A descriptor handed to the child as one of its fds 3, 4, ….
    enum ChildInput {
      /// Bytes we feed through a one-way socket (generated files, code, the seccomp program).
      case bytes([UInt8])
      /// A descriptor we hold (the mount directory).
      case descriptor(Int32)
      /// A pipe the child writes and we read (a status report).
      case report
      /// One end of a socket pair whose other end we keep (a two-way channel with the child).
      case channel
    }

    /// A child process, held by a pidfd so that it is watched and signalled without pid reuse.
    struct Child {
      let pid: pid_t
      /// -1 when the child was gone before its pidfd could be opened (SIGCHLD ignored: the kernel
      /// reaped it, and its pid may belong to someone else already).
      let pidFD: Int32
    }

    /// Spawns `executable` with `descriptors[N]` as its fd N and every other descriptor closed,
    /// default signal dispositions and an empty signal mask.
    ///
    /// - Parameter processGroup: the group to join (0: a new one of its own; nil: ours).
    /// - Throws: `SandboxError.system` when the spawn fails, `.lifecycleUnavailable` without pidfds.
    static func spawn(
      _ executable: String, arguments: [String], environment: [String], descriptors: [Int32], processGroup: pid_t? = nil
    ) throws(SandboxError) -> Spawner.Child {
      guard let addCloseFrom = Sys.GlibcExtras.addCloseFrom else {
        throw .glibcTooOld(function: "posix_spawn_file_actions_addclosefrom_np")
      }
      guard let pidfdOpen = Sys.GlibcExtras.pidfdOpen else { throw .glibcTooOld(function: "pidfd_open") }
      // dup2 runs in order, so a source numbered like an earlier target would be clobbered:
      // move every such source above the highest target first.
      var sources = descriptors
      var moved: [Int32] = []
      defer { for fd in moved { close(fd) } }
      let firstFree = Int32(sources.count)
      for (index, fd) in sources.enumerated() where fd < firstFree {
        let copy = try Sys.check("fcntl(F_DUPFD_CLOEXEC)") { fcntl(fd, F_DUPFD_CLOEXEC, firstFree) }
        moved.append(copy)
        sources[index] = copy
      }
      var actions = posix_spawn_file_actions_t()
      posix_spawn_file_actions_init(&actions)
      defer { posix_spawn_file_actions_destroy(&actions) }
      for (target, source) in sources.enumerated() {
        try Sys.checkSpawn("posix_spawn_file_actions_adddup2") {
          posix_spawn_file_actions_adddup2(&actions, source, Int32(target))
        }
      }
      try Sys.checkSpawn("posix_spawn_file_actions_addclosefrom_np") { addCloseFrom(&actions, firstFree) }
      var attributes = posix_spawnattr_t()
      posix_spawnattr_init(&attributes)
      defer { posix_spawnattr_destroy(&attributes) }
      var noSignals = sigset_t()
      sigemptyset(&noSignals)
      var allSignals = sigset_t()
      sigfillset(&allSignals)
      posix_spawnattr_setsigmask(&attributes, &noSignals)
      posix_spawnattr_setsigdefault(&attributes, &allSignals)
      var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
      if let processGroup {
        posix_spawnattr_setpgroup(&attributes, processGroup)
        flags |= POSIX_SPAWN_SETPGROUP
      }
      posix_spawnattr_setflags(&attributes, Int16(flags))
      var pid: pid_t = 0
      try Sys.withCStrings([executable] + arguments) { argv throws(SandboxError) in
        try Sys.withCStrings(environment) { envp throws(SandboxError) in
          try Sys.checkSpawn("posix_spawn", path: executable) {
            posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
          }
        }
      }
      let pidFD = pidfdOpen(pid, 0)
      if pidFD < 0 {
        if errno == ENOSYS {
          throw .lifecycleUnavailable(reason: "the kernel has no pidfd_open (Linux 5.3 or newer is needed)")
        }
        return Spawner.Child(pid: pid, pidFD: -1)  // already reaped by the kernel (SIGCHLD ignored)
      }
      // With SIGCHLD ignored the pid may have been reaped and reused before pidfd_open: the
      // process behind the pidfd must still be our child.
      guard Lifecycle.ProcessStatus.read(pid)?.parent == getpid(), !hasExited(pidFD) else {
        close(pidFD)
        return Spawner.Child(pid: pid, pidFD: -1)
      }
      return Spawner.Child(pid: pid, pidFD: pidFD)
    }

    /// Sends `signal` through a pidfd (`pidfd_send_signal(2)`): never to a pid that was reused.
    @discardableResult
    static func send(_ signal: Int32, to pidFD: Int32) -> Bool {
      guard pidFD >= 0, let syscall = Sys.GlibcExtras.syscall else { return false }
      return syscall(424, Int(pidFD), Int(signal), 0, 0) == 0
    }

    /// Collects the exit status of our exited child; nil when the kernel reaped it already
    /// (SIGCHLD ignored, or another waiter took it).
    static func reap(_ child: Spawner.Child) -> Spawner.ExitStatus? {
      var raw: Int32 = 0
      let result = Sys.retryingInterrupts { waitpid(child.pid, &raw, WNOHANG) }
      return result == child.pid ? Spawner.ExitStatus(waitStatus: raw) : nil
    }

    /// Whether the process behind `pidFD` has exited (its pidfd is readable), waiting up to
    /// `milliseconds` for it.
    static func hasExited(_ pidFD: Int32, within milliseconds: Int32 = 0) -> Bool {
      var entry = pollfd(fd: pidFD, events: Int16(POLLIN), revents: 0)
      return poll(&entry, 1, milliseconds) == 1
    }

    /// A `poll(2)` loop over descriptors and deadlines. It only dispatches: what a descriptor
    /// means is the business of whoever watches it.
    final class EventLoop {
      typealias Handler = (_ revents: Int16) -> Void
      private var watched: [(fd: Int32, events: Int16, handler: Handler)] = []
      private var timers: [(id: Int, at: ContinuousClock.Instant, handler: () -> Void)] = []
      private var nextTimer = 0
      /// One read buffer for every reader of this loop.
      var buffer = [UInt8](repeating: 0, count: 1 << 16)

      func watch(_ fd: Int32, events: Int16, _ handler: @escaping Handler) {
        watched.append((fd, events, handler))
      }

      func unwatch(_ fd: Int32) { watched.removeAll { $0.fd == fd } }

      @discardableResult
      func at(_ instant: ContinuousClock.Instant, _ handler: @escaping () -> Void) -> Int {
        nextTimer += 1
        timers.append((nextTimer, instant, handler))
        return nextTimer
      }

      func cancel(timer id: Int) { timers.removeAll { $0.id == id } }

      /// Polls and dispatches until `finished()` holds (or nothing is left to wait for).
      /// - Throws: `SandboxError.system` when poll fails.
      func run(until finished: () -> Bool) throws(SandboxError) {
        while !finished() {
          guard !watched.isEmpty || !timers.isEmpty else { return }
          var fds = watched.map { pollfd(fd: $0.fd, events: $0.events, revents: 0) }
          let wait = timers.map { Sys.millisecondsUntil($0.at) }.min() ?? -1
          // EINTR (a signal handler ran): not retried here; the loop recomputes the timers' wait.
          if poll(&fds, nfds_t(fds.count), wait) < 0 && errno != EINTR {
            throw .system(call: "poll", path: nil, errno: errno)
          }
          let now = ContinuousClock.now
          for timer in timers where timer.at <= now {
            cancel(timer: timer.id)
            timer.handler()
          }
          for entry in fds where entry.revents != 0 {
            // An earlier handler of this round may have unwatched it.
            watched.first { $0.fd == entry.fd }?.handler(entry.revents)
          }
        }
      }

      /// Reads what `fd` has now into `output`, keeping at most `limit` bytes of it (the rest is
      /// read and dropped, and `truncated` set); false at EOF or on a read error. At most `reads`
      /// reads per call, so a writer that keeps the pipe full cannot starve the loop's timers (the
      /// time limit, the disk watch): what is left wakes the next round.
      func drain(
        _ fd: Int32, into output: inout [UInt8], limit: Int, truncated: inout Bool, reads: Int = 16
      ) -> Bool {
        for _ in 0..<reads {
          let count = Sys.readSome(fd, into: &buffer)
          if count == 0 { return false }
          if count < 0 { return errno == EAGAIN }
          let room = max(0, limit - output.count)
          if count > room { truncated = true }
          output.append(contentsOf: buffer[0..<min(count, room)])
          if count < buffer.count { return true }
        }
        return true
      }
    }

    /// Standard output or error of a child: read as it comes, capped.
    final class OutputCapture {
      private(set) var fd: Int32
      var bytes: [UInt8] = []
      var truncated = false
      let limit: Int
      /// Bytes handed over by `take` (a session's cells): they count against `limit`, a session budget.
      private var taken = 0
      /// Called with each run of bytes as it is kept (streaming); what the cap drops is never sent.
      var onChunk: (([UInt8]) -> Void)? = nil

      init(fd: Int32, limit: Int) {
        self.fd = fd
        self.limit = limit
        _ = fcntl(fd, F_SETFL, O_NONBLOCK)
      }
      deinit { if fd >= 0 { close(fd) } }

      func attach(to loop: Spawner.EventLoop) {
        loop.watch(fd, events: Int16(POLLIN)) { [unowned self, unowned loop] _ in
          if !streaming({ loop.drain(fd, into: &bytes, limit: limit - taken, truncated: &truncated) }) { finish(loop) }
        }
      }

      /// Runs one drain and passes on what it kept.
      private func streaming(_ drain: () -> Bool) -> Bool {
        let before = bytes.count
        let open = drain()
        if let onChunk, bytes.count > before { onChunk(Array(bytes[before...])) }
        return open
      }

      /// Reads what the pipe holds now (at most 4 MiB: a writer that keeps it full cannot hold
      /// the loop), as a session does before it hands a cell its output.
      func drainNow(_ loop: Spawner.EventLoop) {
        guard fd >= 0 else { return }
        if !streaming({ loop.drain(fd, into: &bytes, limit: limit - taken, truncated: &truncated, reads: 64) }) {
          finish(loop)
        }
      }

      /// Hands over what was kept since the last call, and whether some was cut since then.
      func take() -> (bytes: [UInt8], truncated: Bool) {
        defer {
          taken += bytes.count
          bytes = []
          truncated = false
        }
        return (bytes, truncated)
      }

      /// Takes what is left once every writer is gone.
      func finish(_ loop: Spawner.EventLoop) {
        guard fd >= 0 else { return }
        _ = streaming { loop.drain(fd, into: &bytes, limit: limit - taken, truncated: &truncated, reads: .max) }
        loop.unwatch(fd)
        close(fd)
        fd = -1
      }
    }

    /// Bytes for a child, sent through a socket as it reads them (a socket, so a reader that
    /// went away gives EPIPE, never SIGPIPE).
    final class InputFeed {
      private var fd: Int32
      private let bytes: [UInt8]
      private var offset = 0

      /// Sends what the socket buffer takes at once, before the child exists: the small inputs
      /// (arguments, the seccomp program, the code) are then sent and their descriptor closed
      /// (the child still reads them, then EOF), so a run holds one descriptor less per input.
      init(fd: Int32, bytes: [UInt8]) {
        self.fd = fd
        self.bytes = bytes
        _ = fcntl(fd, F_SETFL, O_NONBLOCK)
        while fd >= 0 && sendSome() {}
      }
      deinit { if fd >= 0 { close(fd) } }

      func attach(to loop: Spawner.EventLoop) {
        guard fd >= 0 else { return }
        let watched = fd
        loop.watch(watched, events: Int16(POLLOUT)) { [unowned self, unowned loop] _ in
          while sendSome() {}
          if fd < 0 { loop.unwatch(watched) }
        }
      }

      /// One send; closes the descriptor when everything is sent or the reader is gone.
      /// Returns whether to send again at once.
      private func sendSome() -> Bool {
        guard offset < bytes.count else {
          close(fd)
          fd = -1
          return false
        }
        let sent = Sys.retryingInterrupts {
          bytes.withUnsafeBytes { raw in
            Glibc.send(
              fd, raw.baseAddress! + offset, min(raw.count - offset, 1 << 16),
              Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))  // offset < count
          }
        }
        if sent > 0 { offset += sent }
        if (sent < 0 && errno != EAGAIN) || offset == bytes.count {
          close(fd)
          fd = -1
          return false
        }
        return sent > 0
      }
    }

    /// A pseudo-terminal between the user's terminal and an interactive payload.
    struct TerminalRelay {
      /// Our side of the pty; bytes the payload's terminal shows come out here.
      var master: Int32
      /// The payload's side; it becomes fds 0–2 of the child (the caller closes its copy after).
      var slave: Int32
      /// Where keystrokes come from (the user's terminal, in raw mode).
      var input: Int32
      /// Where the payload's terminal output goes.
      var output: Int32
      /// What of that output may reach the user's terminal (state kept across reads).
      let filter = Spawner.TerminalFilter()

      /// Relays keystrokes to the pty and its output to the user's terminal.
      func attach(to loop: Spawner.EventLoop) {
        _ = fcntl(master, F_SETFL, O_NONBLOCK)
        let relay = self
        loop.watch(input, events: Int16(POLLIN)) { [unowned loop] _ in
          let count = Sys.readSome(relay.input, into: &loop.buffer)
          if count > 0 {
            // Blocking on a full pty is fine: the payload is reading its terminal.
            _ = fcntl(relay.master, F_SETFL, 0)
            Sys.writeAll(relay.master, Array(loop.buffer[0..<count]))
            _ = fcntl(relay.master, F_SETFL, O_NONBLOCK)
          } else if count == 0 || errno != EAGAIN {
            loop.unwatch(relay.input)  // the user's terminal hit EOF
          }
        }
        loop.watch(master, events: Int16(POLLIN)) { [unowned loop] _ in relay.show(loop) }
      }

      /// Copies what the pty has to the user's terminal; unwatches it once every slave is closed (EIO).
      func show(_ loop: Spawner.EventLoop) {
        var shown: [UInt8] = []
        var ignored = false
        if !loop.drain(master, into: &shown, limit: .max, truncated: &ignored) { loop.unwatch(master) }
        Sys.writeAll(output, filter.filter(shown))
      }
    }

    /// Drops from the payload's terminal output what would act on the user's terminal instead of
    /// drawing on it: OSC, DCS, SOS, PM and APC strings (clipboard writes with OSC 52, titles,
    /// colour and font queries, tmux and screen passthrough), their 8-bit C1 forms (raw, or
    /// UTF-8 encoded), and the CSI requests a terminal answers by typing into its own input
    /// (DSR `n`, DA `c`, window reports `t`, XTVERSION `> q`, DECRQM `$ p`, DECREQTPARM `x`),
    /// which the host shell could read after the REPL exits. Colours, cursor movement, erasing
    /// and every other CSI sequence pass: a REPL needs them.
    final class TerminalFilter {
      private enum State { case text, escape, csi, string, stringEscape, leadC2 }
      private var state = State.text
      private var sequence: [UInt8] = []
      /// Continuation bytes still due in the current UTF-8 character.
      private var continuations = 0
      /// C1 introducers of strings (DCS, SOS, OSC, PM, APC) and of CSI.
      private static let stringIntroducers: Set<UInt8> = [0x90, 0x98, 0x9D, 0x9E, 0x9F]
      private static let csiIntroducer: UInt8 = 0x9B
      /// A CSI longer than this is dropped whole (no real sequence is).
      private static let longestCSI = 64

      func filter(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        for byte in bytes {
          switch state {
          case .text: text(byte, &out)
          case .leadC2:
            state = .text
            if TerminalFilter.stringIntroducers.contains(byte) {
              state = .string
            } else if byte == TerminalFilter.csiIntroducer {
              sequence = []
              state = .csi
            } else {
              out.append(0xC2)
              continuations = 1
              text(byte, &out)
            }
          case .escape:
            switch byte {
            case UInt8(ascii: "]"), UInt8(ascii: "P"), UInt8(ascii: "X"), UInt8(ascii: "^"), UInt8(ascii: "_"):
              state = .string
            case UInt8(ascii: "["):
              sequence = []
              state = .csi
            case 0x1B: out.append(0x1B)
            default:
              out += [0x1B, byte]
              state = .text
            }
          case .csi: csi(byte, &out)
          case .string, .stringEscape:
            // Ended by BEL, ST (ESC \ or C1 0x9C) or cancelled by CAN/SUB; all of it is dropped.
            if byte == 0x07 || byte == 0x9C || byte == 0x18 || byte == 0x1A || (state == .stringEscape && byte == 0x5C)
            {
              state = .text
            } else {
              state = byte == 0x1B ? .stringEscape : .string
            }
          }
        }
        return out
      }

      private func text(_ byte: UInt8, _ out: inout [UInt8]) {
        if continuations > 0 && byte & 0xC0 == 0x80 {
          continuations -= 1
          out.append(byte)
          return
        }
        continuations = 0
        switch byte {
        case 0x1B: state = .escape
        case 0xC2: state = .leadC2  // U+0080–U+00BF: C1 controls among them
        case 0x80...0xBF:
          // A stray continuation byte is a raw C1 control to an 8-bit terminal.
          if TerminalFilter.stringIntroducers.contains(byte) {
            state = .string
          } else if byte == TerminalFilter.csiIntroducer {
            sequence = []
            state = .csi
          } else {
            out.append(byte)
          }
        default:
          continuations = byte >= 0xF0 ? 3 : byte >= 0xE0 ? 2 : byte >= 0xC0 ? 1 : 0
          out.append(byte)
        }
      }

      private func csi(_ byte: UInt8, _ out: inout [UInt8]) {
        guard (0x40...0x7E).contains(byte) else {
          sequence.append(byte)
          if sequence.count > TerminalFilter.longestCSI || !(0x20...0x3F).contains(byte) { state = .text }
          return
        }
        state = .text
        let parameters = sequence
        let isRequest =
          byte == UInt8(ascii: "n") || byte == UInt8(ascii: "c") || byte == UInt8(ascii: "t")
          || byte == UInt8(ascii: "x") || (byte == UInt8(ascii: "q") && parameters.first == UInt8(ascii: ">"))
          || (byte == UInt8(ascii: "p") && parameters.last == UInt8(ascii: "$"))
        if !isRequest { out += [0x1B, UInt8(ascii: "[")] + parameters + [byte] }
      }
    }

    /// The decoded `waitpid` status (`WIFEXITED` and friends are macros Swift cannot import).
    enum ExitStatus: Equatable {
      case exited(Int32)
      case signaled(Int32)

      init(waitStatus: Int32) {
        let signal = waitStatus & 0x7f
        self = signal == 0 ? .exited((waitStatus >> 8) & 0xff) : .signaled(signal)
      }

      /// The status as a return code: the exit code, or −N for a death by signal N.
      var returnCode: Int32 {
        switch self {
        case .signaled(let signal): return -signal
        case .exited(let code): return code
        }
      }
    }

    /// Lets another thread stop a run: `fire()` wakes the run's poll loop, which kills the sandbox.
    final class CancellationSignal: @unchecked Sendable {
      private let lock = Sys.Mutex()
      private var fired = false  // guarded by `lock`
      private var ends: (read: Int32, write: Int32)? = nil  // guarded by `lock`; made by `arm()`

      /// Holds no descriptor until `arm()`: a run waiting for admission costs none.
      init() {}

      deinit {
        if let ends {
          close(ends.read)
          close(ends.write)
        }
      }

      /// Makes the pipe the run's event loop watches (once admitted); written at once when
      /// `fire()` came first.
      /// - Throws: `SandboxError.system` when pipe2 fails.
      func arm() throws(SandboxError) {
        try lock.withLock { () throws(SandboxError) in
          guard ends == nil else { return }
          let made = try Sys.makePipe()
          _ = fcntl(made.write, F_SETFL, O_NONBLOCK)
          ends = (made.read, made.write)
          if fired { Self.signal(made.write) }
        }
      }

      /// The pipe's read end (after `arm()`; -1 before, which `poll` ignores).
      var fd: Int32 { lock.withLock { ends?.read ?? -1 } }

      /// Whether `fire()` was called.
      var hasFired: Bool { lock.withLock { fired } }

      /// Asks the run to stop; safe from any thread, any number of times.
      func fire() {
        lock.withLock {
          fired = true
          if let ends { Self.signal(ends.write) }
        }
      }

      private static func signal(_ fd: Int32) {
        var byte: UInt8 = 1
        _ = write(fd, &byte, 1)
      }
    }

    /// A command to run to completion (tool versions, the parser in tests): no sandbox involved.
    struct Request {
      var executable: String
      /// Arguments after argv[0].
      var arguments: [String]
      var environment: [String]
      /// Become fds 3, 4, … of the command.
      var descriptors: [Int32] = []
      var stdin: [UInt8] = []
      var timeout: Duration? = nil
      var outputLimitBytes: Int = 16 << 20
    }

    /// How a command of `runToCompletion` ended and what it printed.
    struct Outcome {
      var status: Spawner.ExitStatus?
      var stdout: [UInt8]
      var stderr: [UInt8]
      var timedOut: Bool
    }

    /// Runs a command with posix_spawn and collects its output until it exits (SIGKILL at the
    /// timeout). Both streams are read concurrently, so no amount of output deadlocks.
    /// - Throws: `SandboxError.system` when a pipe cannot be made or the spawn fails.
    static func runToCompletion(_ request: Spawner.Request) throws(SandboxError) -> Spawner.Outcome {
      let input = try Sys.makeSocketPair()
      let output = try Sys.makePipe()
      let errors = try Sys.makePipe()
      let child: Spawner.Child
      do {
        defer { for fd in [input.child, output.write, errors.write] { close(fd) } }
        child = try Spawner.spawn(
          request.executable, arguments: request.arguments, environment: request.environment,
          descriptors: [input.child, output.write, errors.write] + request.descriptors)
      } catch {
        for fd in [input.parent, output.read, errors.read] { close(fd) }
        throw error
      }
      defer { if child.pidFD >= 0 { close(child.pidFD) } }
      let loop = Spawner.EventLoop()
      let feed = Spawner.InputFeed(fd: input.parent, bytes: request.stdin)
      let stdout = Spawner.OutputCapture(fd: output.read, limit: request.outputLimitBytes)
      let stderr = Spawner.OutputCapture(fd: errors.read, limit: request.outputLimitBytes)
      feed.attach(to: loop)
      stdout.attach(to: loop)
      stderr.attach(to: loop)
      var exited = child.pidFD < 0
      var timedOut = false
      if !exited {
        loop.watch(child.pidFD, events: Int16(POLLIN)) { [unowned loop] _ in
          exited = true
          loop.unwatch(child.pidFD)
        }
      }
      if let timeout = request.timeout {
        loop.at(ContinuousClock.now + timeout) {
          timedOut = true
          Spawner.send(SIGKILL, to: child.pidFD)
        }
      }
      try loop.run { exited }  // what the pipes hold at exit is drained below
      stdout.finish(loop)
      stderr.finish(loop)
      return Spawner.Outcome(
        status: Spawner.reap(child), stdout: stdout.bytes, stderr: stderr.bytes, timedOut: timedOut)
    }

  }
}

// MARK: - The cgroup layer

extension Sandbox {
  /// cgroup v2 limits that bind every process of a run, root's too: each run gets a child cgroup
  /// of a delegated, empty parent, and bwrap's pid 1 and the gate join it before "GO", so no
  /// payload code runs outside it. This process and its threads are never moved.
  enum Cgroup {
    /// Where systemd and the AppArmor VM mount the unified hierarchy.
    static let hierarchy = "/sys/fs/cgroup"
    /// Controllers every run needs in the parent's `cgroup.subtree_control`; `cpu` only with `cpus`.
    static let requiredControllers = ["memory", "pids"]
    /// The prefix of the runs' cgroups: `sandbox-PID-N`, PID the host process that made it.
    static let childPrefix = "sandbox-"

    /// Where runs' cgroups are made, or why none can be.
    enum Availability: Sendable, Equatable {
      case available(parent: String, controllers: [String])
      case unavailable(reason: String)

      var parent: String? { if case .available(let parent, _) = self { parent } else { nil } }
    }

    /// The parent given by configuration, or the one detected: the parent of this process's own
    /// cgroup when systemd marked it delegated (`Delegate=yes` sets `trusted.delegate`, or
    /// `user.delegate` for a user manager) and this process sits in a subgroup of it.
    static func find(configured: String?) -> Availability {
      if let configured { return check(parent: configured) }
      guard isCgroup2(hierarchy) else {
        return .unavailable(
          reason: "cgroup v2 is not mounted at \(hierarchy) (this host has cgroup v1 hierarchies only)")
      }
      guard let own = ownCgroup() else {
        return .unavailable(reason: "this process is in no cgroup v2 (no '0::' line in /proc/self/cgroup)")
      }
      guard own != "/" else {
        return .unavailable(reason: "this process runs in the root cgroup, which is delegated to nobody")
      }
      let ownPath = hierarchy + own
      if isDelegated(ownPath) {
        return .unavailable(
          reason:
            "\(ownPath) is delegated but holds this process: move it into a subgroup (systemd: DelegateSubgroup=host) so runs can be its siblings"
        )
      }
      let parent = Sys.parentDirectory(ownPath)
      guard parent != hierarchy, isDelegated(parent) else {
        return .unavailable(
          reason: "\(parent) is not delegated to this process (no trusted.delegate or user.delegate mark)")
      }
      return check(parent: parent)
    }

    /// A parent is usable when it is cgroup v2, ours to write, holds no process of its own (the
    /// no-internal-processes rule) and hands the controllers down.
    static func check(parent: String) -> Availability {
      guard let real = Sys.resolvedPath(parent), Sys.isDirectory(real) else {
        return .unavailable(reason: "\(parent) is not a directory")
      }
      guard isCgroup2(real) else { return .unavailable(reason: "\(real) is not on a cgroup v2 filesystem") }
      guard access(real, W_OK | X_OK) == 0, access("\(real)/cgroup.procs", W_OK) == 0 else {
        return .unavailable(
          reason: "\(real) is not writable by this user (it must be delegated: chown, or systemd's Delegate=yes)")
      }
      guard let procs = Sys.readSmallFile("\(real)/cgroup.procs"), Sys.trimmed(procs).isEmpty else {
        return .unavailable(reason: "\(real) holds processes of its own, so its children cannot have controllers")
      }
      let controllers = (Sys.readSmallFile("\(real)/cgroup.subtree_control") ?? "").split(separator: " ").map {
        Sys.trimmed(String($0))
      }
      let missing = requiredControllers.filter { !controllers.contains($0) }
      guard missing.isEmpty else {
        return .unavailable(
          reason:
            "\(real)/cgroup.subtree_control lacks \(missing.joined(separator: ", ")) (enable with: echo '+memory +pids +cpu' > \(real)/cgroup.subtree_control)"
        )
      }
      return .available(parent: real, controllers: controllers)
    }

    /// A cgroup v2 directory, root or child, has `cgroup.controllers`; a v1 one never does.
    static func isCgroup2(_ path: String) -> Bool { Sys.exists("\(path)/cgroup.controllers") }

    /// This process's cgroup v2 path (the `0::` line of /proc/self/cgroup).
    static func ownCgroup() -> String? {
      guard let text = Sys.readSmallFile("/proc/self/cgroup") else { return nil }
      for line in text.split(separator: "\n") where line.hasPrefix("0::") {
        let path = String(line.dropFirst(3))
        return path.hasPrefix("/") && !path.contains("/../") && !path.hasSuffix("/..") ? path : nil
      }
      return nil
    }

    /// systemd's mark on a cgroup it delegated (`trusted.delegate`, or `user.delegate`) is "1".
    static func isDelegated(_ path: String) -> Bool {
      guard let getxattr = Sys.GlibcExtras.getxattr else { return false }
      return ["trusted.delegate", "user.delegate"].contains { name in
        var value = [UInt8](repeating: 0, count: 8)
        let count = value.withUnsafeMutableBytes { getxattr(path, name, $0.baseAddress, $0.count) }
        return count == 1 && value[0] == UInt8(ascii: "1")
      }
    }

    /// What a run's cgroup accounted.
    struct Usage: Sendable, Equatable {
      /// `memory.peak`: the most memory (anonymous, shared, tmpfs, page cache) the run held.
      var memoryPeakBytes: Int?
      /// `cpu.stat` `usage_usec`: CPU time of every process of the run.
      var cpuTime: Duration?
      /// `memory.events` `oom_kill`: processes the kernel killed at `memory.max`.
      var oomKills: Int
    }

    /// One run's cgroup: made before bwrap starts, joined by pid 1 and the gate before "GO",
    /// killed with the run, read and removed once every process of the run is gone.
    final class RunGroup {
      let path: String
      private static let lock = Sys.Mutex()
      nonisolated(unsafe) private static var made = 0

      /// Makes `parent/sandbox-PID-N` with the run's limits.
      /// - Throws: `layerUnavailable(.cgroup)` naming the file that refused (fail closed).
      init(parent: String, limits: SandboxLimits) throws(SandboxError) {
        let number = RunGroup.lock.withLock { () -> Int in
          RunGroup.made += 1
          return RunGroup.made
        }
        if number == 1 { Cgroup.sweepStale(parent) }
        path = "\(parent)/\(Cgroup.childPrefix)\(getpid())-\(number)"
        guard mkdir(path, 0o755) == 0 else {
          throw Cgroup.failure("mkdir \(path): \(Sys.errnoText(errno))")
        }
        var settings: [(file: String, value: String)] = []
        if let bytes = limits.memoryBytes {
          settings.append(("memory.max", "\(bytes)"))
          settings.append(("memory.swap.max", "0"))  // swap would let memory.max be routed around
        }
        if let count = limits.maxProcesses { settings.append(("pids.max", "\(count)")) }
        if let cpus = limits.cpus { settings.append(("cpu.max", "\(Int((cpus * 100_000).rounded())) 100000")) }
        for setting in settings {
          // memory.swap.max is missing where swap accounting is off: there is no swap to route through then.
          if setting.file == "memory.swap.max" && !Sys.exists("\(path)/\(setting.file)") { continue }
          if let problem = write(setting.value, to: setting.file) {
            rmdir(path)
            throw Cgroup.failure(problem)
          }
        }
      }

      /// Moves `pid` into this cgroup; a problem, or nil.
      func add(_ pid: pid_t) -> String? { write("\(pid)", to: "cgroup.procs") }

      /// Kills every process in the cgroup (`cgroup.kill`, Linux ≥ 5.14).
      func kill() { _ = write("1", to: "cgroup.kill") }

      /// What the kernel accounted to the run.
      func usage() -> Usage {
        func field(_ name: String, in file: String) -> Int? {
          for line in (Sys.readSmallFile("\(path)/\(file)") ?? "").split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, parts[0] == name { return Int(parts[1]) }
          }
          return nil
        }
        let peak = Sys.readSmallFile("\(path)/memory.peak").flatMap { Int(Sys.trimmed($0)) }
        return Usage(
          memoryPeakBytes: peak, cpuTime: field("usage_usec", in: "cpu.stat").map { .microseconds($0) },
          oomKills: field("oom_kill", in: "memory.events") ?? 0)
      }

      /// Removes the cgroup once it is empty (the run's end guarantees that); retried briefly,
      /// since the kernel may still be tearing the last task down. Left behind otherwise, for
      /// the next process's sweep.
      func remove() {
        for _ in 0..<200 {
          if rmdir(path) == 0 || errno == ENOENT { return }
          if errno != EBUSY { return }
          usleep(5_000)
        }
      }

      private func write(_ value: String, to file: String) -> String? {
        let fd = open("\(path)/\(file)", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return "opening \(path)/\(file): \(Sys.errnoText(errno))" }
        defer { close(fd) }
        return Sys.writeAll(fd, Array(value.utf8))
          ? nil : "writing '\(value)' to \(path)/\(file): \(Sys.errnoText(errno))"
      }
    }

    static func failure(_ problem: String) -> SandboxError {
      .layerUnavailable(
        layer: .cgroup, reason: problem,
        relax:
          "check the delegated parent (see the README's cgroup recipe), or pass --no-cgroup to run without the layer")
    }

    /// Removes the empty cgroups of host processes that died before removing their own.
    static func sweepStale(_ parent: String) {
      guard let directory = opendir(parent) else { return }
      defer { closedir(directory) }
      while let entry = readdir(directory) {
        let name = Sys.entryName(entry)
        guard name.hasPrefix(childPrefix) else { continue }
        let fields = name.dropFirst(childPrefix.count).split(separator: "-")
        guard fields.count == 2, let pid = pid_t(fields[0]), pid != getpid(), kill(pid, 0) != 0, errno == ESRCH
        else { continue }
        rmdir("\(parent)/\(name)")  // fails while populated: then it is not stale
      }
    }
  }
}

// MARK: - The network helper

extension Sandbox {
  /// `--isolated-network`: the payload's own network namespace (bwrap `--unshare-net`), reaching
  /// the outside through pasta (package `passt`), configured as DECISIONS 18 says. pasta attaches
  /// before "GO", told the user namespace that owns the netns (with `--disable-userns`, and always
  /// for unprivileged callers, pid 1's own does not); it forwards no ports either way, does not
  /// map the gateway to the host, and runs in the foreground, in the reaper's process group (so a
  /// host death takes it too), killed when the run ends. pasta blocks none of the host's own
  /// addresses, so `prohibit` rules go into the namespace before "GO" (the payload holds no
  /// capabilities there and cannot remove them). Measured: about 70 ms per run, so not the default.
  enum NetworkHelper {
    static let package = "passt"

    /// Destinations the payload must never reach, with the reason per row; the host's own
    /// addresses (a snapshot at each run) are added to them.
    static let deniedIPv4: [(prefix: String, why: String)] = [
      ("127.0.0.0/8", "the host's loopback services (pasta could map them)"),
      ("0.0.0.0/8", "'this host' on the local network"),
      ("169.254.0.0/16", "link-local, the cloud metadata address 169.254.169.254 among them"),
    ]
    static let deniedIPv6: [(prefix: String, why: String)] = [
      ("::1/128", "the host's loopback over IPv6"),
      ("fe80::/10", "link-local"),
      ("fd00:ec2::254/128", "the cloud metadata address over IPv6"),
      ("::ffff:0.0.0.0/96", "IPv4-mapped addresses: the IPv4 rules' way around"),
    ]

    /// What a run's pasta needs: the programs, as found at `Sandbox.init`.
    struct Plan {
      var pasta: String
      var nsenter: String
      var ip: String
      /// `setpriv` drop for `--user` (pasta runs as the account bwrap runs as).
      var dropTo: Preflight.HostUser?
    }

    /// Why `--isolated-network` cannot work here (a program missing, /dev/net/tun closed), or nil.
    static func unavailability(find: (String) -> String? = Sys.findExecutable) -> String? {
      guard find("pasta") != nil else {
        return "pasta is not installed (Debian package '\(package)')"
      }
      guard find("nsenter") != nil, find("ip") != nil else {
        return "nsenter (util-linux) and ip (iproute2) are needed to block the host's addresses"
      }
      guard access("/dev/net/tun", R_OK | W_OK) == 0 else {
        return "/dev/net/tun is not readable and writable by uid \(geteuid()) (Debian's udev makes it 0666)"
      }
      return nil
    }

    static func makePlan(dropTo: Preflight.HostUser?) -> Plan? {
      guard let pasta = Sys.findExecutable("pasta"), let nsenter = Sys.findExecutable("nsenter"),
        let ip = Sys.findExecutable("ip")
      else { return nil }
      return Plan(pasta: pasta, nsenter: nsenter, ip: ip, dropTo: dropTo)
    }

    /// The user namespace that owns `pid`'s network namespace, as a descriptor (ioctl
    /// NS_GET_USERNS on /proc/PID/ns/net); nil when it cannot be had.
    static func owningUserNamespace(of pid: pid_t) -> Int32? {
      let net = open("/proc/\(pid)/ns/net", O_RDONLY | O_CLOEXEC)
      guard net >= 0 else { return nil }
      defer { close(net) }
      let owner = ioctl(net, 0xb701)  // NS_GET_USERNS: a new descriptor of the owning user namespace
      return owner >= 0 ? owner : nil
    }

    /// The command line that starts pasta for `pid`'s namespace: fd 3 is the owning user
    /// namespace, fd 4 the pipe its pid file is (written once the interface is up: the event).
    static func arguments(_ plan: Plan, pid: pid_t) -> (executable: String, arguments: [String]) {
      var pasta = [
        plan.pasta, "--foreground", "--quiet", "--config-net",
        "--tcp-ports", "none", "--udp-ports", "none", "--tcp-ns", "none", "--udp-ns", "none",  // no forwarding
        "--no-map-gw",  // the gateway is not the host
        "--userns", "/proc/self/fd/3", "--netns", "/proc/\(pid)/ns/net", "--pid", "/proc/self/fd/4",
      ]
      // as root, pasta would switch to nobody, who cannot join root's namespace
      if geteuid() == 0 && plan.dropTo == nil { pasta += ["--runas", "0"] }
      guard let user = plan.dropTo, let setpriv = Sys.findExecutable("setpriv") else {
        return (plan.pasta, Array(pasta.dropFirst()))
      }
      return (
        setpriv, ["--reuid", "\(user.uid)", "--regid", "\(user.gid)", "--clear-groups", "--"] + pasta
      )
    }

    /// The rule batches (IPv4, IPv6) that prohibit every denied destination and the host's own
    /// addresses in the sandbox's namespace.
    static func ruleBatches(hostAddresses: (v4: [String], v6: [String])) -> (v4: String, v6: String) {
      func batch(_ prefixes: [String]) -> String {
        var seen: Set<String> = []  // ip refuses a rule twice (the host's ::1 is in the table already)
        return prefixes.filter { seen.insert($0).inserted }.map { "rule add priority 5 to \($0) prohibit\n" }.joined()
      }
      return (
        batch(deniedIPv4.map(\.prefix) + hostAddresses.v4.map { $0.contains("/") ? $0 : "\($0)/32" }),
        batch(deniedIPv6.map(\.prefix) + hostAddresses.v6.filter { !$0.hasPrefix("fe80") }.map { "\($0)/128" })
      )
    }

    /// Installs the rules in `pid`'s namespace with the owner's capabilities (nsenter, then
    /// `ip -batch`) and reads them back; returns what went wrong, or nil.
    static func installBlocks(_ plan: Plan, pid: pid_t, owner: Int32) -> String? {
      let interfaces = Sys.hostAddresses()
      // the kernel's local table too: AnyIP ranges (`ip route add local 10.0.0.0/24 dev lo`) and
      // broadcast addresses are this host without being an interface address
      let batches = ruleBatches(hostAddresses: (interfaces.v4 + Sys.localIPv4Prefixes(), interfaces.v6))
      for (family, rules) in [("-4", batches.v4), ("-6", batches.v6)] {
        let expected = rules.split(separator: "\n").count
        let enter = [
          "--user=/proc/self/fd/3", "--net=/proc/\(pid)/ns/net", "--preserve-credentials", "--", plan.ip, family,
        ]
        let added = try? Spawner.runToCompletion(
          Spawner.Request(
            executable: plan.nsenter, arguments: enter + ["-batch", "-"], environment: ["PATH=/usr/bin:/bin"],
            descriptors: [owner], stdin: Array(rules.utf8), timeout: .seconds(10)))
        guard let added, added.status == .exited(0) else {
          return "ip \(family) -batch could not add the blocking rules: \(Sys.firstLine(of: added?.stderr ?? []))"
        }
        guard
          let listed = try? Spawner.runToCompletion(
            Spawner.Request(
              executable: plan.nsenter, arguments: enter + ["rule", "show", "priority", "5"],
              environment: ["PATH=/usr/bin:/bin"], descriptors: [owner], timeout: .seconds(10))),
          listed.status == .exited(0),
          String(decoding: listed.stdout, as: UTF8.self).split(separator: "\n").filter({ $0.contains("prohibit") })
            .count == expected
        else { return "the blocking rules (\(family)) did not read back as added" }
      }
      return nil
    }
  }
}

// MARK: - The lifecycle

extension Sandbox {
  /// One bwrap run from spawn until every process of the sandbox is gone; the reaper; /proc facts.
  enum Lifecycle {
    /// Why the host ended a run before the payload did.
    enum StopReason: Equatable {
      case timeout, cancelled, disk, tmpfs
      /// The start-up handshake failed (a limit could not be set, pid 1 did not arm in time).
      case setup
      /// A session: closed by the host, idle too long, past its lifetime, or its channel broke
      /// (the payload's interpreter sent what the protocol does not allow).
      case closed, idle, lifetime, channel
    }

    /// What one bwrap run needs from the host: the command line, its inputs, and its bounds.
    struct Launch {
      var executable: String
      var arguments: [String]
      /// Become fds 3, 4, … of bwrap, in order (see `makeBwrapInvocation`).
      var inputs: [Spawner.ChildInput]
      /// Set on the gate process before it may start the payload (see `Bootstrap`).
      var limits: SandboxLimits
      var stdin: [UInt8] = []
      var timeout: Duration? = nil
      var outputLimitBytes: Int = .max
      var cancellation: Spawner.CancellationSignal? = nil
      /// When set, bwrap's fds 0–2 are this pty's slave and the loop relays the terminal.
      var terminal: Spawner.TerminalRelay? = nil
      /// The run's cgroup, which pid 1 and the gate join before "GO".
      var cgroup: Cgroup.RunGroup? = nil
      /// The account bwrap runs as (`--user`), for limits this process may not set itself.
      var dropTo: Preflight.HostUser? = nil
      /// Kills the run when the filesystem holding the mount dir grows or runs low past its bounds.
      var diskWatch: Lifecycle.DiskWatch? = nil
      /// The sandbox's writable tmpfs mounts (sandbox paths) and the inodes each may hold.
      var tmpfsWatch: (paths: [String], inodes: Int64)? = nil
      /// pasta, attached to pid 1's network namespace before "GO" (`--isolated-network`).
      var networkHelper: NetworkHelper.Plan? = nil
      /// A session: the channel stays open after "GO" and carries cells (see `SessionLink`).
      var session: Lifecycle.SessionLink? = nil
      /// Streaming: called on the supervising thread with each chunk kept (`true`: stderr).
      var onOutput: ((_ isStderr: Bool, _ bytes: [UInt8]) -> Void)? = nil
    }

    /// The bounds on the filesystem holding a mount dir, checked with fstatvfs every 50 ms: it may
    /// grow by `budget` bytes and `inodeBudget` inodes, and must keep `reserve` bytes and
    /// `inodeReserve` inodes free.
    struct DiskWatch {
      var fd: Int32
      var budget: Int64
      var reserve: Int64
      var inodeBudget: Int64?
      var inodeReserve: Int64

      /// Whether `now`, measured against `baseline`, breaks a bound.
      func isBroken(_ now: Sys.FilesystemUsage, baseline: Sys.FilesystemUsage) -> Bool {
        // ramfs counts no blocks at all (used and available 0): its bytes cannot be watched
        let measuresBytes = now.used > 0 || now.available > 0
        if measuresBytes && (now.used - baseline.used > budget || now.available < reserve) { return true }
        guard now.inodes > 0 else { return false }  // a filesystem without inode counts (btrfs: 0)
        if let inodeBudget, now.inodesUsed - baseline.inodesUsed > inodeBudget { return true }
        return now.inodesFree < inodeReserve
      }
    }

    /// How a sandbox ended, as the host saw it.
    struct Exit {
      /// bwrap's exit status, which is the payload's; nil when neither waitpid nor bwrap's report gave one.
      var status: Spawner.ExitStatus?
      var stdout: [UInt8]
      var stderr: [UInt8]
      var outputTruncated: Bool
      var duration: Duration
      /// The gate was told "GO": payload code may have run. Until then a failure is bwrap's.
      var started: Bool
      /// Why the host ended the run, if it did.
      var stop: Lifecycle.StopReason?
      /// Why the start-up handshake failed (`stop == .setup`).
      var setupError: SandboxError?
      /// The CPU time of the payload's main process, last sampled (every 100 ms while a CPU limit
      /// is set, and when bwrap exits), or nil when it was never sampled.
      var mainProcessCPU: Duration? = nil
      /// Every process of the sandbox is gone; when false, `leftover` says why and no host work may
      /// touch the mount dir.
      var allGone: Bool
      var leftover: String?
    }

    /// How long the host waits for a sandbox to vanish once it has been killed.
    static let teardownBound: Duration = .seconds(10)
    /// How long bwrap may take to report its pid 1 (it does so within milliseconds).
    static let handshakeBound: Duration = .seconds(10)
    /// How long pid 1 may take to arm itself once the gate is up (it is armed before the gate's
    /// shell has even started, in practice).
    static let armingBound: Duration = .seconds(5)

    /// Runs one bwrap to the end: until every process of the sandbox is gone.
    ///
    /// The order of events, and why the host trusts each:
    /// 1. bwrap's launcher (our child, in the reaper's process group: see `Reaper`) creates the
    ///    namespaces, arms its own parent-death signal and reports pid 1 on `--json-status-fd`.
    ///    Nothing from the sandbox can write there.
    /// 2. We open a pidfd on that pid and check its fdinfo says `NSpid: X 1`: it is the init of a
    ///    new pid namespace (and not a reused pid). From now on every way out sends it SIGKILL.
    /// 3. pid 1 builds the mounts, forks the gate (`Bootstrap`), arms its parent-death signal, then
    ///    loads the seccomp filter (bubblewrap.c `do_init`: `handle_die_with_parent` comes before
    ///    `seccomp_programs_apply`). The gate says "R" on its channel and waits.
    /// 4. On "R", pid 1's only child is the gate: we open a pidfd on it, check it (`NSpid: Y 2`,
    ///    parent pid 1), set the rlimits on it with `prlimit` (bwrap's setup is over), and send "GO"
    ///    only when pid 1's status shows that filter (so it is armed) and its parent is still our
    ///    launcher (so it armed against the launcher, not an orphan's new parent). If this process
    ///    dies before "GO", the channel closes and nothing starts; after it, the parent-death
    ///    signals take the launcher and pid 1 down, and the reaper catches what is left.
    /// 5. The run ends when pid 1's pidfd is readable. A pid namespace's init does not count as
    ///    exited until the kernel has killed and reaped every other process of the namespace
    ///    (kernel/exit.c: `exit_notify` → `forget_original_parent` → `find_child_reaper` →
    ///    `zap_pid_ns_processes`, which waits until `pid_allocated` falls back to the init's own;
    ///    `pidfd_poll` reports an exit only once `exit_state` is set, after that). bwrap's own
    ///    reports (its eventfd, its exit status) can be reached from inside and never decide the end.
    /// - Throws: `SandboxError` when the host cannot spawn; what happens inside is in the result.
    static func supervise(_ launch: Lifecycle.Launch) throws(SandboxError) -> Lifecycle.Exit {
      let run = try Lifecycle.Supervisor(launch)  // this thread's seccomp state, a reaper generation
      try run.wireDescriptors()  // bwrap's 0–2 and its inputs
      try run.spawnLauncher()  // step 1, in the reaper's process group
      run.watch()  // steps 2–5 are the loop's handlers
      try run.loop.run { run.isFinished }
      return run.exit()
    }

    /// One supervised run: its descriptors, its processes and the state of the handshake, one
    /// method per step of `supervise`. Handlers run on one thread, in `loop.run`.
    final class Supervisor {
      let launch: Lifecycle.Launch
      let loop = Spawner.EventLoop()
      /// This thread's seccomp state: pid 1 is armed once it shows one filter more.
      private let inherited: Lifecycle.SeccompState
      private var reaper: Lifecycle.Reaper.Generation?
      /// The launcher may have left a pid 1 blocked in the reaper's group: retire the generation.
      private var launcherMayHaveLeftPidOne = false

      // bwrap's descriptors: 0 stdin, 1 stdout, 2 stderr (or the pty), then the inputs in order.
      private var childFDs: [Int32] = []
      /// Ours to close once bwrap holds them (our copies would hide EOF), or on the way out.
      private var childEnds: [Int32] = []
      private var feeds: [Spawner.InputFeed] = []
      private var stdout: Spawner.OutputCapture? = nil
      private var stderr: Spawner.OutputCapture? = nil
      private var reportFD: Int32 = -1
      private var channelFD: Int32 = -1

      // The processes and the handshake.
      private var start = ContinuousClock.now
      private var launcher = Spawner.Child(pid: 0, pidFD: -1)
      private var launcherExited = false
      private var launcherStatus: Spawner.ExitStatus? = nil
      private var mainProcessCPU: Duration? = nil
      private var report: [UInt8] = []
      private var said: [UInt8] = []
      private var pidOne: Spawner.Child? = nil
      private var pidOneGone = false
      private var gate: Spawner.Child? = nil
      private var ready = false
      private var started = false
      /// pasta (`--isolated-network`), its pid-file pipe, and whether its interface and our
      /// blocking rules are in place; "GO" waits for that.
      private var networkHelper: Spawner.Child? = nil
      private var networkReadyFD: Int32 = -1
      private var networkErrorsFD: Int32 = -1
      private var networkOwnerFD: Int32 = -1
      private var networkReady = false
      private var stop: Lifecycle.StopReason? = nil
      private var setupError: SandboxError? = nil
      private var leftover: String? = nil
      private var tearingDown = false
      /// The teardown bound passed with processes left.
      private var abandoned = false

      init(_ launch: Lifecycle.Launch) throws(SandboxError) {
        self.launch = launch
        inherited = try Lifecycle.SeccompState.ofThisThread()
        reaper = try Lifecycle.Reaper.shared.enter()
      }

      deinit {
        for fd in childEnds + [reportFD, channelFD] + [launcher, gate, pidOne].compactMap({ $0?.pidFD }) where fd >= 0 {
          close(fd)
        }
        if let reaper { Lifecycle.Reaper.shared.leave(reaper, stuck: launcherMayHaveLeftPidOne) }
      }

      var isFinished: Bool { abandoned || hasEnded }
      private var hasEnded: Bool { launcherExited && (pidOne == nil || pidOneGone) }

      /// Pipes and socket pairs for bwrap's descriptors, in the order `launch.inputs` names them.
      func wireDescriptors() throws(SandboxError) {
        if let terminal = launch.terminal {
          childFDs = [terminal.slave, terminal.slave, terminal.slave]
        } else {
          try feed(launch.stdin)
          stdout = Spawner.OutputCapture(fd: try pipeFromChild(), limit: launch.outputLimitBytes)
          stderr = Spawner.OutputCapture(fd: try pipeFromChild(), limit: launch.outputLimitBytes)
          if let onOutput = launch.onOutput {
            stdout?.onChunk = { onOutput(false, $0) }
            stderr?.onChunk = { onOutput(true, $0) }
          }
        }
        for input in launch.inputs {
          switch input {
          case .bytes(let bytes): try feed(bytes)
          case .descriptor(let fd): childFDs.append(fd)
          case .report: reportFD = try pipeFromChild()
          case .channel:
            let pair = try Sys.makeSocketPair(bothWays: true)
            channelFD = pair.parent
            childFDs.append(pair.child)
            childEnds.append(pair.child)
          }
        }
      }

      private func feed(_ bytes: [UInt8]) throws(SandboxError) {
        let ends = try Sys.makeSocketPair()
        feeds.append(Spawner.InputFeed(fd: ends.parent, bytes: bytes))
        childFDs.append(ends.child)
        childEnds.append(ends.child)
      }

      private func pipeFromChild() throws(SandboxError) -> Int32 {
        let pipe = try Sys.makePipe()
        childFDs.append(pipe.write)
        childEnds.append(pipe.write)
        return pipe.read
      }

      /// Step 1: bwrap's launcher, in the reaper's process group.
      func spawnLauncher() throws(SandboxError) {
        start = ContinuousClock.now
        do {
          launcher = try Spawner.spawn(
            launch.executable, arguments: launch.arguments, environment: [], descriptors: childFDs,
            processGroup: reaper?.pid)
        } catch {
          // The reaper's group is gone (it died) or out of reach (this process changed its
          // session): once more, with a new reaper.
          guard case .system(_, _, let code) = error, code == EPERM || code == ESRCH, let stale = reaper else {
            throw error
          }
          Lifecycle.Reaper.shared.leave(stale, stuck: true)
          reaper = nil
          let fresh = try Lifecycle.Reaper.shared.enter()
          reaper = fresh
          launcher = try Spawner.spawn(
            launch.executable, arguments: launch.arguments, environment: [], descriptors: childFDs,
            processGroup: fresh.pid)
        }
        for fd in childEnds { close(fd) }
        childEnds = []
        launcherExited = launcher.pidFD < 0
      }

      /// Arms every handler: the streams, bwrap's report, the gate's channel, the launcher's
      /// exit, and the bounds (timeout, cancellation, disk, handshake).
      func watch() {
        for feed in feeds { feed.attach(to: loop) }
        stdout?.attach(to: loop)
        stderr?.attach(to: loop)
        launch.terminal?.attach(to: loop)
        if reportFD >= 0 {
          _ = fcntl(reportFD, F_SETFL, O_NONBLOCK)
          loop.watch(reportFD, events: Int16(POLLIN)) { [unowned self] _ in readReport() }
        }
        if channelFD >= 0 {
          _ = fcntl(channelFD, F_SETFL, O_NONBLOCK)
          loop.watch(channelFD, events: Int16(POLLIN)) { [unowned self] _ in readChannel() }
        }
        if launcher.pidFD >= 0 {
          loop.watch(launcher.pidFD, events: Int16(POLLIN)) { [unowned self] _ in launcherDidExit() }
        }
        if let timeout = launch.timeout { loop.at(start + timeout) { [unowned self] in halt(.timeout) } }
        if let cancellation = launch.cancellation {
          loop.watch(cancellation.fd, events: Int16(POLLIN)) { [unowned self] _ in
            loop.unwatch(cancellation.fd)
            halt(.cancelled)
          }
        }
        if let watch = launch.diskWatch, let baseline = Sys.filesystemUsage(watch.fd) {
          loop.at(start + .milliseconds(50)) { [unowned self] in checkDisk(watch, baseline: baseline) }
        }
        loop.at(start + Lifecycle.handshakeBound) { [unowned self] in handshakeExpired() }
        if let link = launch.session {
          loop.watch(link.wakeFD, events: Int16(POLLIN)) { [unowned self] _ in serveSession(link) }
          if let lifetime = link.lifetime {
            loop.at(start + lifetime) { [unowned self] in
              endSession(.lifetime, "it reached its lifetime of \(lifetime)")
            }
          }
          loop.at(start + Lifecycle.SessionLink.readyBound) { [unowned self] in
            if !link.ready {
              endSession(.channel, "the interpreter did not get ready within \(Lifecycle.SessionLink.readyBound)")
            }
          }
        }
      }

      /// Step 2: bwrap's report, read as it comes; pid 1 is adopted as soon as it is in it.
      private func readReport() {
        guard reportFD >= 0 else { return }
        var ignored = false
        let open = loop.drain(reportFD, into: &report, limit: 1 << 16, truncated: &ignored)
        adoptPidOne()
        if !open {
          loop.unwatch(reportFD)
          close(reportFD)
          reportFD = -1
        }
      }

      /// Step 2: a pidfd on the reported pid 1, kept only if it is the init of a new pid namespace.
      private func adoptPidOne() {
        guard pidOne == nil, let pid = Bwrap.Report.number(after: "child-pid", in: report), pid > 0,
          let pidfdOpen = Sys.GlibcExtras.pidfdOpen
        else { return }
        let fd = pidfdOpen(pid, 0)
        guard fd >= 0 else {
          pidOne = Spawner.Child(pid: pid, pidFD: -1)
          pidOneGone = true  // gone already, and its namespace with it
          return
        }
        guard Lifecycle.ProcessStatus.namespacePIDs(ofPidFD: fd) == [pid, 1] else {
          close(fd)
          launcherMayHaveLeftPidOne = true
          leftover = "bwrap reported pid \(pid), which is not the init of a new pid namespace"
          return failSetup(.sandboxSetupFailed(message: leftover ?? ""))
        }
        pidOne = Spawner.Child(pid: pid, pidFD: fd)
        loop.watch(fd, events: Int16(POLLIN)) { [unowned self] _ in
          pidOneGone = true
          loop.unwatch(fd)
          killSandbox()  // the namespace is gone; the launcher follows within the bound, or we stop waiting
        }
        if tearingDown {
          Spawner.send(SIGKILL, to: fd)
        } else {
          openGate(deadline: ContinuousClock.now + Lifecycle.armingBound)
        }
      }

      /// Step 3: the gate says "R" when it is up. (After "GO", a session's frames.)
      private func readChannel() {
        if started, let link = launch.session { return readSessionChannel(link) }
        var ignored = false
        let open = loop.drain(channelFD, into: &said, limit: 16, truncated: &ignored)
        if said.first == UInt8(ascii: "R") && !ready {
          ready = true
          openGate(deadline: ContinuousClock.now + Lifecycle.armingBound)
        }
        if !open { closeChannel() }
      }

      /// Step 4: the gate process, limited, then "GO" once pid 1 is armed (retried every millisecond).
      private func openGate(deadline: ContinuousClock.Instant) {
        guard ready, !started, stop == nil, let pidOne, !pidOneGone, channelFD >= 0 else { return }
        if gate == nil {
          guard let child = Lifecycle.ProcessStatus.onlyChild(of: pidOne.pid), let pidfdOpen = Sys.GlibcExtras.pidfdOpen
          else {
            return failSetup(.sandboxSetupFailed(message: "the gate process under bwrap's pid 1 could not be found"))
          }
          let fd = pidfdOpen(child, 0)
          gate = Spawner.Child(pid: child, pidFD: fd)
          guard fd >= 0, Lifecycle.ProcessStatus.namespacePIDs(ofPidFD: fd).last == 2,
            Lifecycle.ProcessStatus.read(child)?.parent == pidOne.pid,
            !Spawner.hasExited(fd)
          else { return failSetup(.sandboxSetupFailed(message: "bwrap's pid 1 has a child that is not the gate")) }
          // Into the run's cgroup: pid 1 first (it forks nothing more), then the gate.
          if let group = launch.cgroup, let problem = group.add(pidOne.pid) ?? group.add(child) {
            return failSetup(Cgroup.failure(problem))
          }
          do throws(SandboxError) {
            // bwrap's setup is over: only the gate is limited
            try Lifecycle.applyLimits(launch.limits, to: child, byCgroup: launch.cgroup != nil, dropTo: launch.dropTo)
          } catch {
            return failSetup(error)
          }
        }
        if let plan = launch.networkHelper, !networkReady {
          if networkHelper == nil { startNetworkHelper(plan, pid: pidOne.pid) }
          return  // its readiness calls this again
        }
        let status = Lifecycle.ProcessStatus.read(pidOne.pid)
        guard !Spawner.hasExited(pidOne.pidFD), let status, status.parent == launcher.pid else {
          return failSetup(
            .sandboxSetupFailed(message: "bwrap's pid 1 lost its launcher before the payload could start"))
        }
        if status.seccompFilters.map({ $0 > inherited.filters }) ?? (inherited.mode == 0 && status.seccompMode == 2) {
          Sys.sendAll(channelFD, Array(Bwrap.Gate.go.utf8))
          started = true
          if launch.session == nil { closeChannel() }  // a session's cells go over it
          if launch.limits.cpuSeconds != nil { sampleCPUPeriodically() }
          if let watch = launch.tmpfsWatch { checkTmpfs(watch) }
        } else if ContinuousClock.now >= deadline {
          failSetup(
            .sandboxSetupFailed(
              message:
                "bwrap's pid 1 did not arm its parent-death signal within \(Lifecycle.armingBound) (its seccomp filter is the sign)"
            ))
        } else {
          loop.at(ContinuousClock.now + .milliseconds(1)) { [unowned self] in openGate(deadline: deadline) }
        }
      }

      /// Step 4, with `--isolated-network`: pasta attached to pid 1's namespace (told the user
      /// namespace that owns it), its pid file a pipe whose first bytes say the interface is up;
      /// then the blocking rules; then the gate opens. Bounded by `armingBound`.
      private func startNetworkHelper(_ plan: NetworkHelper.Plan, pid: pid_t) {
        guard let owner = NetworkHelper.owningUserNamespace(of: pid) else {
          return failSetup(
            .layerUnavailable(
              layer: .isolatedNetwork,
              reason: "the user namespace owning the sandbox's network namespace is out of reach",
              relax: "drop --isolated-network"))
        }
        networkOwnerFD = owner  // for the rules, once pasta is up; closed in stopNetworkHelper
        let command = NetworkHelper.arguments(plan, pid: pid)
        do throws(SandboxError) {
          let pidFile = try Sys.makePipe()
          let errors = try Sys.makePipe()
          let null = open("/dev/null", O_RDWR | O_CLOEXEC)
          defer { for fd in [pidFile.write, errors.write, null] { close(fd) } }
          networkReadyFD = pidFile.read
          networkErrorsFD = errors.read
          for fd in [pidFile.read, errors.read] { _ = fcntl(fd, F_SETFL, O_NONBLOCK) }  // pasta keeps the writers open
          networkHelper = try Spawner.spawn(
            command.executable, arguments: command.arguments, environment: ["PATH=/usr/bin:/bin"],
            descriptors: [null, null, errors.write, owner, pidFile.write], processGroup: reaper?.pid)
        } catch {
          return failSetup(error)
        }
        var written: [UInt8] = []
        loop.watch(networkReadyFD, events: Int16(POLLIN)) { [unowned self] _ in
          var ignored = false
          let open = loop.drain(networkReadyFD, into: &written, limit: 32, truncated: &ignored)
          guard written.contains(UInt8(ascii: "\n")) || !open else { return }
          loop.unwatch(networkReadyFD)
          guard !written.isEmpty, stop == nil else {
            return networkHelperFailed("pasta ended before its interface was up")
          }
          if let problem = NetworkHelper.installBlocks(plan, pid: pid, owner: owner) {
            return networkHelperFailed(problem)
          }
          networkReady = true
          openGate(deadline: ContinuousClock.now + Lifecycle.armingBound)
        }
        loop.at(ContinuousClock.now + Lifecycle.armingBound) { [unowned self] in
          if !networkReady {
            networkHelperFailed("pasta did not bring the interface up within \(Lifecycle.armingBound)")
          }
        }
      }

      private func networkHelperFailed(_ problem: String) {
        var said: [UInt8] = []
        var ignored = false
        if networkErrorsFD >= 0 { _ = loop.drain(networkErrorsFD, into: &said, limit: 4096, truncated: &ignored) }
        let detail = Sys.firstLine(of: said)
        failSetup(
          .layerUnavailable(
            layer: .isolatedNetwork, reason: detail.isEmpty ? problem : "\(problem): \(detail)",
            relax: "drop --isolated-network"))
      }

      /// pasta keeps the namespace alive and never leaves by itself: killed once the run is over.
      private func stopNetworkHelper() {
        for fd in [networkReadyFD, networkErrorsFD, networkOwnerFD] where fd >= 0 { close(fd) }
        (networkReadyFD, networkErrorsFD, networkOwnerFD) = (-1, -1, -1)
        guard let helper = networkHelper, helper.pidFD >= 0 else { return }
        Spawner.send(SIGKILL, to: helper.pidFD)
        var entry = pollfd(fd: helper.pidFD, events: Int16(POLLIN), revents: 0)
        _ = Sys.retryingInterrupts { poll(&entry, 1, 1000) }
        _ = Spawner.reap(helper)
        close(helper.pidFD)
        networkHelper = nil
      }

      /// The CPU time of the payload's main process (the gate, which became it), as the kernel
      /// accounts it; read only while its pidfd says it is that process (alive, or a zombie).
      private func sampleMainProcessCPU() {
        guard let gate, gate.pidFD >= 0, started, let used = Lifecycle.ProcessStatus.cpuTime(gate.pid) else { return }
        // Still there (signal 0 reaches a zombie too) after the read: the pid was not reused.
        guard Spawner.send(0, to: gate.pidFD) else { return }
        mainProcessCPU = max(mainProcessCPU ?? .zero, used)
      }

      private func sampleCPUPeriodically() {
        guard !launcherExited else { return }
        sampleMainProcessCPU()
        loop.at(ContinuousClock.now + .milliseconds(100)) { [unowned self] in sampleCPUPeriodically() }
      }

      /// The payload's main process ended (or bwrap failed): the rest goes with pid 1.
      private func launcherDidExit() {
        launcherExited = true
        loop.unwatch(launcher.pidFD)
        launcherStatus = Spawner.reap(launcher)
        sampleMainProcessCPU()
        readReport()  // a report written just before the exit
        if pidOne == nil { launcherMayHaveLeftPidOne = true }  // it died before reporting pid 1 (or never made one)
        killSandbox()
      }

      /// The disk watch (see `DiskWatch`).
      private func checkDisk(_ watch: Lifecycle.DiskWatch, baseline: Sys.FilesystemUsage) {
        guard stop == nil, !launcherExited else { return }
        if let now = Sys.filesystemUsage(watch.fd), watch.isBroken(now, baseline: baseline) { return halt(.disk) }
        loop.at(ContinuousClock.now + .milliseconds(50)) { [unowned self] in checkDisk(watch, baseline: baseline) }
      }

      /// The tmpfs watch (every 20 ms): each writable tmpfs's inode count, read with statvfs through pid 1's root
      /// (a mount point the payload cannot move or unmount; what is read is only a count).
      private func checkTmpfs(_ watch: (paths: [String], inodes: Int64)) {
        guard stop == nil, !launcherExited, let pidOne, !pidOneGone else { return }
        for path in watch.paths {
          var info = statvfs()
          guard statvfs("/proc/\(pidOne.pid)/root\(path)", &info) == 0 else { continue }
          // Still pid 1 (its pidfd not readable) after the read: the pid was not reused.
          if Int64(info.f_files) - Int64(info.f_ffree) > watch.inodes && !Spawner.hasExited(pidOne.pidFD) {
            return halt(.tmpfs)
          }
        }
        loop.at(ContinuousClock.now + .milliseconds(20)) { [unowned self] in checkTmpfs(watch) }
      }

      /// bwrap never reported its pid 1: kill the launcher (its pid 1, if any, is the reaper's).
      private func handshakeExpired() {
        guard pidOne == nil, !launcherExited else { return }
        launcherMayHaveLeftPidOne = true
        leftover = "bwrap did not report its pid 1 within \(Lifecycle.handshakeBound)"
        Spawner.send(SIGKILL, to: launcher.pidFD)
        killSandbox()
      }

      private func closeChannel() {
        guard channelFD >= 0 else { return }
        loop.unwatch(channelFD)
        close(channelFD)
        channelFD = -1
      }

      /// Kills the sandbox: pid 1 gets SIGKILL (now, or as soon as it is known), the gate EOF.
      private func killSandbox() {
        closeChannel()
        if let pidOne, !pidOneGone { Spawner.send(SIGKILL, to: pidOne.pidFD) }
        if started { launch.cgroup?.kill() }  // the same processes, in one write
        guard !tearingDown else { return }
        tearingDown = true
        loop.at(ContinuousClock.now + Lifecycle.teardownBound) { [unowned self] in abandoned = true }
      }

      /// Ends the run early for `reason`, unless the payload has already ended it.
      private func halt(_ reason: Lifecycle.StopReason) {
        if stop == nil && !launcherExited { stop = reason }
        killSandbox()
      }

      private func failSetup(_ error: SandboxError) {
        setupError = setupError ?? error
        halt(.setup)
      }

      /// Step 5 is over (or its bound passed): what the host saw.
      func exit() -> Lifecycle.Exit {
        stopNetworkHelper()
        if !abandoned && !hasEnded {
          // fail closed: never a false "all gone"
          leftover = leftover ?? "the host lost track of the sandbox's processes"
        }
        if abandoned {
          leftover = leftover ?? "processes of the sandbox were still alive \(Lifecycle.teardownBound) after SIGKILL"
        }
        // Once every writer is gone, what is in the pipes is all there will be.
        stdout?.finish(loop)
        stderr?.finish(loop)
        if let link = launch.session, !link.warm { endCurrentCell(link) }  // with what was left in the pipes
        // A warm run lasts from its dispatch (the slot's start and preloads are the pool's).
        let from = launch.session.flatMap { $0.warm && $0.current != nil ? $0.cellStart : nil } ?? start
        if let terminal = launch.terminal { terminal.show(loop) }
        let reported = Bwrap.Report.number(after: "exit-code", in: report).map { Spawner.ExitStatus.exited($0) }
        return Lifecycle.Exit(
          status: launcherStatus ?? reported, stdout: stdout?.bytes ?? [], stderr: stderr?.bytes ?? [],
          outputTruncated: (stdout?.truncated ?? false) || (stderr?.truncated ?? false),
          duration: ContinuousClock.now - from, started: started, stop: stop, setupError: setupError,
          mainProcessCPU: mainProcessCPU, allGone: !abandoned && leftover == nil, leftover: leftover)
      }
    }

    /// The host's end of a session (`SandboxSession`): requests come from any thread and are
    /// served, one cell at a time, by the supervisor's loop on the session's own thread.
    ///
    /// The channel (fd 3, the gate's) stays open after "GO". Both ways a message is a frame: a
    /// 4-byte big-endian length, then that many bytes. The host sends a cell's code; the
    /// interpreter's driver (`Sessions.driverSource`) answers "R" once, when it is ready, then per
    /// cell "S" when its code starts and "D", the cell's token and its fields, when it is over. Everything that comes back is the payload's: a frame longer than
    /// `frameLimitBytes`, a frame nobody asked for, or the channel's end ends the session.
    final class SessionLink: @unchecked Sendable {  // `queue` and `wakeFD`'s writes are guarded by `lock`
      /// What another thread asks of the session.
      enum Request {
        case cell(Cell)
        /// Interrupt this cell (by `Cell.id`), or drop it if it has not started.
        case interrupt(Int)
        case close
      }

      /// One cell: its code and timeout, and what to call (on the supervisor's thread) when it is over.
      struct Cell {
        var id: Int
        var code: [UInt8]
        /// Sent with the code and expected back first in its reply: a reply that lacks it (one
        /// for an earlier cell, one forged by a process that never saw the cell) ends the session.
        var token: [UInt8] = (0..<16).map { _ in UInt8.random(in: 0...255) }
        /// Streaming: the cell's output as it comes (on the supervisor's thread).
        var onOutput: ((_ isStderr: Bool, _ bytes: [UInt8]) -> Void)? = nil
        var timeout: Duration
        /// Returns why the reply cannot be believed (the session then ends), or nil.
        var done: (CellOutcome) -> String?
      }

      /// How a cell went, as the host saw it: bytes, not yet believed (`Sessions.decodeReply`).
      struct CellOutcome {
        /// The driver's "D" frame without its kind byte; nil when none came (the session ended, or
        /// the cell never started).
        var reply: [UInt8]?
        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        var outputTruncated = false
        var duration: Duration = .zero
        /// SIGINT was sent to the interpreter: the cell passed its timeout (or was cancelled).
        var interrupted = false
        /// The interpreter's own CPU time during the cell (kernel accounting), when it could be read.
        var cpuTime: Duration? = nil
        /// Why the session ended during this cell (or before it started), if it did.
        var ended: String? = nil
        /// The cell never reached the interpreter.
        var neverStarted = false
        /// Why the host ended the session during this cell, if it did (a limit, the interrupt's grace).
        var stoppedBy: Lifecycle.StopReason? = nil
        /// How many cells the interpreter was sent, this one included (its `<cell N>`).
        var number = 0
        /// With the cgroup layer: the session's `memory.peak` so far, and whether the kernel's OOM
        /// killer acted during the cell (authoritative).
        var memoryPeakBytes: Int? = nil
        var oomKilled = false
      }

      /// The largest frame either way: a cell's code, or a reply with its images.
      static let frameLimitBytes = 32 << 20
      /// How long an interrupted cell may take to stop before the session is killed.
      static let interruptGrace: Duration = .seconds(2)
      /// How long the driver may take to say it is ready (the interpreter's start, its imports).
      static let readyBound: Duration = .seconds(60)

      let lifetime: Duration?
      let idleTimeout: Duration?
      /// A warm pool's slot (`SandboxPool`): one "cell", the run itself. The driver answers "S"
      /// once the run's inputs are in place; the host then snapshots the mount dir, closes the
      /// channel and the payload runs as a one-shot run's does, to the sandbox's end.
      let warm: Bool
      private let lock = Sys.Mutex()
      private var queue: [Request] = []  // guarded by `lock`
      private var finalReason: String? = nil  // guarded by `lock`; set once no request is taken
      private let wake: (read: Int32, write: Int32)

      // The supervisor thread's alone, once the session runs.
      /// Called once, when the driver said "R".
      var onReady: () -> Void = {}
      /// Reads the mount dir (set by `runOnce`, which holds it open for the session's life).
      var snapshotMountDirectory: () -> Changes.Snapshot? = { nil }
      /// The session's limits (their caps on change lists apply per cell too).
      var limits = SandboxLimits()
      /// The mount dir as the last cell left it (per-cell changes are measured from it).
      var lastSnapshot: Changes.Snapshot? = nil
      var pending: [Cell] = []
      var current: Cell? = nil
      var ready = false
      var inbox: [UInt8] = []
      var outbox: [UInt8] = []
      var cellStart = ContinuousClock.now
      var cellCPUAtStart: Duration? = nil
      var oomKillsAtStart = 0
      var interrupted = false
      /// The driver said "S": the cell's code runs, and SIGINT reaches it.
      var cellRunning = false
      var cellsSent = 0
      var cellTimers: [Int] = []
      var idleTimer: Int? = nil
      /// Why the session ends, in words, once it does.
      var endReason: String? = nil

      init(lifetime: Duration?, idleTimeout: Duration?, warm: Bool = false) throws(SandboxError) {
        self.lifetime = lifetime
        self.idleTimeout = idleTimeout
        self.warm = warm
        let pipe = try Sys.makePipe()
        for fd in [pipe.read, pipe.write] { _ = fcntl(fd, F_SETFL, O_NONBLOCK) }
        wake = (pipe.read, pipe.write)
      }

      deinit {
        close(wake.read)
        close(wake.write)
      }

      /// The descriptor the supervisor's loop watches for requests.
      var wakeFD: Int32 { wake.read }

      /// Queues a request and wakes the loop; once the session takes no more, why it ended.
      @discardableResult
      func send(_ request: Request) -> String? {
        lock.withLock {
          if let finalReason { return finalReason }
          queue.append(request)
          var byte: UInt8 = 1
          _ = write(wake.write, &byte, 1)  // EAGAIN: a wake-up is pending already
          return nil
        }
      }

      /// Why the session ended, once it takes no more requests.
      var ended: String? { lock.withLock { finalReason } }

      /// The requests queued since the last call (the loop's handler).
      func takeRequests() -> [Request] {
        var sink = [UInt8](repeating: 0, count: 64)
        while Sys.readSome(wake.read, into: &sink) > 0 {}
        return lock.withLock {
          defer { queue = [] }
          return queue
        }
      }

      /// Takes no more requests (the session ended for `reason`); returns the cells still queued
      /// or pending, for the caller to fail.
      func stopTakingRequests(reason: String) -> [Cell] {
        let queued = lock.withLock {
          finalReason = reason
          defer { queue = [] }
          return queue
        }
        defer { pending = [] }
        return pending + queued.compactMap { if case .cell(let cell) = $0 { cell } else { nil } }
      }
    }

    /// Kills every sandbox launcher of this process when the process dies, however it dies.
    ///
    /// bwrap's pid 1 waits on an eventfd that only its launcher writes, right after it is cloned:
    /// if the launcher dies in that window (its parent-death signal fires when this process is
    /// killed), pid 1 blocks forever, with no parent-death signal of its own yet. A process killed
    /// with SIGKILL runs no code, so the cleanup must live elsewhere: every launcher starts in the
    /// process group of one `sh` per generation that reads a pipe only this process writes. When
    /// this process dies the pipe closes and `sh` kills its whole group: the launchers, and pid 1s
    /// still in their launcher's group (bwrap's `--new-session` moves pid 1 out later, after the
    /// window, when it no longer waits on the launcher).
    final class Reaper: @unchecked Sendable {  // every mutable field is guarded by `mutex`
      static let shared = Lifecycle.Reaper()

      /// One `sh` and the runs started in its group.
      final class Generation {
        let pid: pid_t
        let pidFD: Int32
        let lifeline: Int32
        var runs = 0
        var retired = false
        init(pid: pid_t, pidFD: Int32, lifeline: Int32) {
          self.pid = pid
          self.pidFD = pidFD
          self.lifeline = lifeline
        }
      }

      private let mutex = Sys.Mutex()
      private var current: Generation? = nil

      private init() {}

      /// The generation a new run starts in (spawned on first use, or when the last one died).
      func enter() throws(SandboxError) -> Generation {
        try mutex.withLock { () throws(SandboxError) in try enterLocked() }
      }

      private func enterLocked() throws(SandboxError) -> Generation {
        if let generation = current, !Spawner.hasExited(generation.pidFD) {
          generation.runs += 1
          return generation
        }
        if let dead = current { retire(dead) }
        let lifeline = try Sys.makePipe()
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer {
          close(lifeline.read)
          if null >= 0 { close(null) }
        }
        let child = try Spawner.spawn(
          "/bin/sh", arguments: ["-c", "read -r _; kill -s KILL 0"], environment: [],
          descriptors: [lifeline.read, null, null], processGroup: 0)
        guard child.pidFD >= 0 else {
          close(lifeline.write)
          throw .lifecycleUnavailable(reason: "the reaper process (/bin/sh) exited at once")
        }
        let generation = Generation(pid: child.pid, pidFD: child.pidFD, lifeline: lifeline.write)
        generation.runs = 1
        current = generation
        return generation
      }

      /// Ends a run's use of its generation. `stuck`: its launcher died before its pid 1 was
      /// known, so a pid 1 may be blocked in the group; the generation is retired, and killed once
      /// its other runs are over.
      func leave(_ generation: Generation, stuck: Bool) {
        mutex.withLock {
          generation.runs -= 1
          if stuck { retire(generation) }
          if generation.retired && generation.runs == 0 { finish(generation) }
        }
      }

      private func retire(_ generation: Generation) {
        generation.retired = true
        if current === generation { current = nil }
        if generation.runs == 0 { finish(generation) }
      }

      /// Closes the lifeline: `sh` kills its group (only leftovers by now) and itself.
      private func finish(_ generation: Generation) {
        guard generation.runs == 0, generation.lifeline >= 0 else { return }
        close(generation.lifeline)
        _ = Spawner.hasExited(generation.pidFD, within: 1000)
        _ = Spawner.reap(Spawner.Child(pid: generation.pid, pidFD: generation.pidFD))
        close(generation.pidFD)
      }
    }

    /// Facts `/proc/PID/status` gives about a process.
    struct ProcessStatus {
      var parent: pid_t
      var seccompMode: Int
      /// `Seccomp_filters` (Linux ≥ 5.9), nil on older kernels.
      var seccompFilters: Int?

      /// Reads `/proc/PID/status` (or `/proc/thread-self/status` for pid 0).
      static func read(_ pid: pid_t) -> Lifecycle.ProcessStatus? {
        guard
          let text = Sys.readSmallFile(pid == 0 ? "/proc/thread-self/status" : "/proc/\(pid)/status", limit: 16 << 10)
        else { return nil }
        var status = Lifecycle.ProcessStatus(parent: -1, seccompMode: -1, seccompFilters: nil)
        for line in text.split(separator: "\n") {
          let parts = line.split(separator: "\t", omittingEmptySubsequences: true)
          guard parts.count == 2, let value = Int(Sys.trimmed(String(parts[1]))) else { continue }
          switch parts[0] {
          case "PPid:": status.parent = pid_t(truncatingIfNeeded: value)
          case "Seccomp:": status.seccompMode = value
          case "Seccomp_filters:": status.seccompFilters = value
          default: break
          }
        }
        return status.parent >= 0 ? status : nil
      }

      /// `/proc/PID/limits` as the kernel shows it, by RLIMIT_* name: soft and hard ("unlimited"
      /// is RLIM_INFINITY). Readable for any process, whoever owns it.
      static func limits(_ pid: pid_t) -> [String: (rlim_t, rlim_t)] {
        let names = [
          "Max cpu time": "RLIMIT_CPU", "Max file size": "RLIMIT_FSIZE", "Max data size": "RLIMIT_DATA",
          "Max stack size": "RLIMIT_STACK", "Max core file size": "RLIMIT_CORE", "Max processes": "RLIMIT_NPROC",
          "Max open files": "RLIMIT_NOFILE", "Max address space": "RLIMIT_AS",
        ]
        var found: [String: (rlim_t, rlim_t)] = [:]
        for line in (Sys.readSmallFile("/proc/\(pid)/limits") ?? "").split(separator: "\n") {
          let text = String(line)
          guard let (label, name) = names.first(where: { text.hasPrefix($0.key + " ") }) else { continue }
          let values = text.dropFirst(label.count).split(separator: " ").prefix(2).map {
            $0 == "unlimited" ? rlim_t.max : rlim_t($0)
          }
          if values.count == 2, let soft = values[0], let hard = values[1] { found[name] = (soft, hard) }
        }
        return found
      }

      /// The CPU time `pid` has used itself (`/proc/PID/stat`: utime and stime): kernel
      /// accounting, which a process cannot inflate without burning the CPU.
      static func cpuTime(_ pid: pid_t) -> Duration? {
        guard let text = Sys.readSmallFile("/proc/\(pid)/stat", limit: 4096),
          let close = text.lastIndex(of: ")")
        else { return nil }
        // After "(comm)": state is field 3, so utime..cstime (fields 14–17) are 11–14 from here.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 14 else { return nil }
        let ticks = fields[11...12].compactMap { Int($0) }
        let perSecond = sysconf(Int32(_SC_CLK_TCK))
        guard ticks.count == 2, perSecond > 0 else { return nil }
        return .milliseconds(ticks.reduce(0, +) * 1000 / perSecond)
      }

      /// The one child of `pid` (`/proc/PID/task/PID/children`, or a scan of /proc where the kernel
      /// lacks that file); nil when it has none or several.
      static func onlyChild(of pid: pid_t) -> pid_t? {
        var children: [pid_t] = []
        if let listed = Sys.readSmallFile("/proc/\(pid)/task/\(pid)/children", limit: 4096) {
          children = listed.split(separator: " ").compactMap { pid_t(Sys.trimmed(String($0))) }
        } else if let proc = opendir("/proc") {
          defer { closedir(proc) }
          while let entry = readdir(proc) {
            if let candidate = pid_t(Sys.entryName(entry)), read(candidate)?.parent == pid {
              children.append(candidate)
            }
          }
        }
        return children.count == 1 ? children[0] : nil
      }

      /// The `NSpid` line of a pidfd's fdinfo: the process's pid in each pid namespace, outermost first.
      static func namespacePIDs(ofPidFD fd: Int32) -> [pid_t] {
        guard let text = Sys.readSmallFile("/proc/self/fdinfo/\(fd)", limit: 4096),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix("NSpid:") })
        else { return [] }
        return line.dropFirst(6).split(whereSeparator: { $0 == "\t" || $0 == " " }).compactMap { pid_t($0) }
      }
    }

    /// The seccomp state of the calling thread, which a spawned process inherits.
    struct SeccompState {
      var mode: Int
      var filters: Int

      /// Reads it from `/proc/thread-self/status`.
      /// - Throws: `SandboxError.lifecycleUnavailable` when /proc cannot tell.
      static func ofThisThread() throws(SandboxError) -> Lifecycle.SeccompState {
        guard let status = Lifecycle.ProcessStatus.read(0) else {
          throw .lifecycleUnavailable(reason: "/proc/thread-self/status cannot be read (is /proc mounted?)")
        }
        if let filters = status.seccompFilters {
          return Lifecycle.SeccompState(mode: status.seccompMode, filters: filters)
        }
        guard status.seccompMode == 0 else {
          throw .lifecycleUnavailable(
            reason:
              "this process already runs under seccomp and the kernel (older than 5.9) does not count filters, so bwrap's pid 1 cannot be seen arming itself"
          )
        }
        return Lifecycle.SeccompState(mode: 0, filters: 0)
      }
    }

    /// Sets the run's rlimits on the gate process (`Bootstrap`), once bwrap's setup is over and
    /// before any payload code runs; every process of the payload inherits them. A limit above
    /// what the caller may grant is clamped to the caller's own hard limit (never raised).
    /// - Throws: `SandboxError.layerUnavailable` when a limit cannot be set (fail closed).
    /// A root without CAP_SYS_RESOURCE (a container's) may not set another account's limits; with
    /// `dropTo`, they are then set by util-linux's `prlimit` running as that account (`setpriv`),
    /// which may lower its own process's limits.
    static func applyLimits(
      _ limits: SandboxLimits, to pid: pid_t, byCgroup: Bool = false, dropTo: Preflight.HostUser? = nil
    ) throws(SandboxError) {
      guard let prlimit = Sys.GlibcExtras.prlimit else { throw .glibcTooOld(function: "prlimit") }
      var wanted: [(resource: Int32, name: String, soft: Int, hard: Int)] = [
        (Sys.ResourceLimit.core, "RLIMIT_CORE", 0, 0),  // a crash must not write a core file past every limit
        (Sys.ResourceLimit.openFiles, "RLIMIT_NOFILE", limits.openFiles, limits.openFiles),
        // The main stack is not data: with an unlimited hard limit the payload could raise its
        // own soft one and grow the stack past RLIMIT_DATA. Both fixed at Linux's usual 8 MiB.
        (Sys.ResourceLimit.stack, "RLIMIT_STACK", SandboxLimits.stackBytes, SandboxLimits.stackBytes),
      ]
      // SIGXCPU, then SIGKILL
      if let seconds = limits.cpuSeconds { wanted.append((Sys.ResourceLimit.cpu, "RLIMIT_CPU", seconds, seconds + 2)) }
      // With the cgroup layer, memory and processes are the cgroup's (memory.max, pids.max).
      if let bytes = limits.memoryBytes, !byCgroup {
        wanted.append((Sys.ResourceLimit.data, "RLIMIT_DATA", bytes, bytes))
      }
      if let bytes = limits.fileSizeBytes { wanted.append((Sys.ResourceLimit.fileSize, "RLIMIT_FSIZE", bytes, bytes)) }
      if let bytes = limits.addressSpaceBytes {
        wanted.append((Sys.ResourceLimit.addressSpace, "RLIMIT_AS", bytes, bytes))
      }
      if let count = limits.maxProcesses, !byCgroup {
        wanted.append((Sys.ResourceLimit.processes, "RLIMIT_NPROC", count, count))
      }
      for limit in wanted {
        func refused() -> SandboxError {
          .layerUnavailable(
            layer: .limits, reason: "prlimit(\(limit.name)) on the sandbox: \(Sys.errnoText(errno))",
            relax: "report this: the sandbox's first process refused its limits")
        }
        var current = rlimit()
        var value = rlimit()
        guard prlimit(pid, limit.resource, nil, &current) == 0 else {
          guard errno == EPERM, let dropTo else { throw refused() }
          return try applyLimitsAs(dropTo, wanted, to: pid)
        }
        value.rlim_max = min(rlim_t(max(0, limit.hard)), current.rlim_max)
        value.rlim_cur = min(rlim_t(max(0, limit.soft)), value.rlim_max)
        guard prlimit(pid, limit.resource, &value, nil) == 0 else { throw refused() }
      }
    }

    /// `applyLimits` through `setpriv … -- prlimit --pid PID --NAME=SOFT:HARD …` as `account`,
    /// each limit clamped to this process's own, which the gate inherited.
    static func applyLimitsAs(
      _ account: Preflight.HostUser, _ wanted: [(resource: Int32, name: String, soft: Int, hard: Int)], to pid: pid_t
    ) throws(SandboxError) {
      let options: [Int32: String] = [
        Sys.ResourceLimit.core: "--core", Sys.ResourceLimit.openFiles: "--nofile", Sys.ResourceLimit.cpu: "--cpu",
        Sys.ResourceLimit.data: "--data", Sys.ResourceLimit.fileSize: "--fsize", Sys.ResourceLimit.addressSpace: "--as",
        Sys.ResourceLimit.processes: "--nproc", Sys.ResourceLimit.stack: "--stack",
      ]
      guard let setpriv = Sys.findExecutable("setpriv"), let tool = Sys.findExecutable("prlimit") else {
        throw .layerUnavailable(
          layer: .limits, reason: "this root may not set another account's limits, and setpriv or prlimit is missing",
          relax: "install util-linux, or give the caller CAP_SYS_RESOURCE")
      }
      var arguments = [
        "--reuid", "\(account.uid)", "--regid", "\(account.gid)", "--clear-groups", "--", tool, "--pid", "\(pid)",
      ]
      var expected: [(name: String, soft: rlim_t, hard: rlim_t)] = []
      for limit in wanted {
        var own = rlimit()
        guard getrlimit(__rlimit_resource_t(UInt32(limit.resource)), &own) == 0, let option = options[limit.resource]
        else {
          throw .layerUnavailable(
            layer: .limits, reason: "getrlimit(\(limit.name)): \(Sys.errnoText(errno))",
            relax: "report this: the host's own limits could not be read")
        }
        let hard = min(rlim_t(max(0, limit.hard)), own.rlim_max)
        arguments.append("\(option)=\(min(rlim_t(max(0, limit.soft)), hard)):\(hard)")
        expected.append((limit.name, min(rlim_t(max(0, limit.soft)), hard), hard))
      }
      let outcome = try Spawner.runToCompletion(
        Spawner.Request(
          executable: setpriv, arguments: arguments, environment: ["PATH=/usr/bin:/bin"], timeout: .seconds(10)))
      guard outcome.status == .exited(0) else {
        throw .layerUnavailable(
          layer: .limits, reason: "prlimit as \(account.name) on the sandbox: \(Sys.firstLine(of: outcome.stderr))",
          relax: "report this: the sandbox's first process refused its limits")
      }
      // The helper's word is not enough: the kernel's own view of the gate's limits, before GO.
      let shown = Lifecycle.ProcessStatus.limits(pid)
      for limit in expected where shown[limit.name].map({ $0 != (limit.soft, limit.hard) }) ?? true {
        throw .layerUnavailable(
          layer: .limits, reason: "\(limit.name) of the sandbox is not what the prlimit helper was asked to set",
          relax: "report this: the sandbox's first process refused its limits")
      }
    }

    /// Tells which limit ended a run, from how it ended and what it last printed.
    static func classifyLimitHit(_ outcome: Lifecycle.Exit, limits: SandboxLimits, cgroup: Cgroup.Usage? = nil)
      -> SandboxLimitHit?
    {
      switch outcome.stop {
      case .timeout: return .timeout
      case .cancelled: return .cancelled
      case .disk: return .disk
      case .tmpfs: return .tmpfs
      case .setup, .closed, .idle, .lifetime, .channel, nil: break
      }
      guard let code = outcome.status.map(Bwrap.Report.returnCode) else { return nil }
      if let seconds = limits.cpuSeconds, code == -SIGXCPU || code == -SIGKILL {
        // SIGXCPU is the soft limit, SIGKILL the hard one (soft + 2 s). Either is the CPU limit
        // only if the kernel accounted that much CPU to the sandbox: a payload can send itself
        // the signal (or exit 152), but cannot fake the time.
        // Sampled every 100 ms: it may lag the kill by that much, per core.
        let lag: Duration = .milliseconds(100 * Sys.onlineProcessors + 50)
        if let used = outcome.mainProcessCPU, used + lag >= .seconds(seconds) { return .cpu }
      }
      if let cgroup, cgroup.oomKills > 0 { return .memory }  // the kernel's word: authoritative
      if code == -SIGXFSZ { return .fileSize }
      guard code != 0 else { return nil }  // a payload that recovered and exited 0 hit no limit
      let tail = String(decoding: outcome.stderr.suffix(4096), as: UTF8.self)
      if limits.memoryBytes != nil && tail.contains("MemoryError") { return .memory }
      if limits.fileSizeBytes != nil && tail.contains("File too large") { return .fileSize }  // Python ignores SIGXFSZ
      return nil
    }

  }
}

/// A session's conversation, on the supervisor's loop (see `SessionLink`): requests, frames,
/// the cell's timers and its share of the output.
extension Sandbox.Lifecycle.Supervisor {
  typealias Lifecycle = Sandbox.Lifecycle
  typealias SessionLink = Sandbox.Lifecycle.SessionLink
  typealias Spawner = Sandbox.Spawner
  typealias Sys = Sandbox.Sys
  typealias Bwrap = Sandbox.Bwrap

  /// A session's requests: cells queue up, an interrupt strikes the current cell, close ends it.
  fileprivate func serveSession(_ link: SessionLink) {
    for request in link.takeRequests() {
      switch request {
      case .cell(let cell): link.pending.append(cell)
      case .interrupt(let id):
        if link.current?.id == id {
          interruptCell(link)
        } else if let index = link.pending.firstIndex(where: { $0.id == id }) {
          let cell = link.pending.remove(at: index)
          _ = cell.done(SessionLink.CellOutcome(reply: nil, ended: nil, neverStarted: true))
        }
      case .close: endSession(.closed, "it was closed")
      }
    }
    startNextCell(link)
  }

  /// Sends the next queued cell once the driver is ready and no cell runs.
  fileprivate func startNextCell(_ link: SessionLink) {
    guard link.ready, link.current == nil, !link.pending.isEmpty, stop == nil, channelFD >= 0 else { return }
    let cell = link.pending.removeFirst()
    if let timer = link.idleTimer { loop.cancel(timer: timer) }
    link.idleTimer = nil
    if link.warm {  // what the preloads printed is not the run's
      for capture in [stdout, stderr].compactMap({ $0 }) {
        capture.drainNow(loop)
        _ = capture.take()
      }
    }
    link.current = cell
    link.cellsSent += 1
    link.interrupted = false
    link.cellRunning = false
    link.cellStart = ContinuousClock.now
    link.cellCPUAtStart = gate.flatMap { Lifecycle.ProcessStatus.cpuTime($0.pid) }
    link.oomKillsAtStart = launch.cgroup?.usage().oomKills ?? 0
    let length = UInt32(cell.token.count + cell.code.count)  // at most frameLimitBytes (SandboxSession checks)
    link.outbox += Sys.bigEndian(length)
    link.outbox += cell.token + cell.code
    flushOutbox(link)
    link.cellTimers = [
      loop.at(link.cellStart + cell.timeout) { [unowned self] in
        if link.warm { halt(.timeout) } else { interruptCell(link) }
      }
    ]
  }

  /// The interpreter itself gets SIGINT (bwrap's pid 1 forwards nothing) once the cell's code runs
  /// (at once, or when its "S" comes): Python raises KeyboardInterrupt in the cell. If the cell has
  /// not answered within the grace, the session dies.
  fileprivate func interruptCell(_ link: SessionLink) {
    guard link.current != nil, !link.interrupted else { return }
    link.interrupted = true
    if link.cellRunning { signalInterpreter(link) }
    link.cellTimers.append(
      loop.at(ContinuousClock.now + SessionLink.interruptGrace) { [unowned self] in
        endSession(.timeout, "the cell did not stop within \(SessionLink.interruptGrace) of its interrupt (SIGINT)")
      })
  }

  /// SIGINT, again every 200 ms until the cell answers: CPython runs its handler between bytecodes,
  /// so a signal that lands just before a blocking call (`time.sleep`) would wait for that call to end.
  fileprivate func signalInterpreter(_ link: SessionLink) {
    guard let gate, link.current != nil else { return }
    Spawner.send(SIGINT, to: gate.pidFD)
    link.cellTimers.append(
      loop.at(ContinuousClock.now + .milliseconds(200)) { [unowned self] in signalInterpreter(link) })
  }

  /// Sends what the outbox holds without blocking; the rest when the channel has room.
  fileprivate func flushOutbox(_ link: SessionLink) {
    while !link.outbox.isEmpty && channelFD >= 0 {
      let sent = Sys.retryingInterrupts {
        link.outbox.withUnsafeBytes {
          Glibc.send(channelFD, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))  // not empty
        }
      }
      if sent > 0 {
        link.outbox.removeFirst(sent)
      } else if sent < 0 && errno == EAGAIN {
        return watchSessionChannel(link, writing: true)
      } else {
        return endSession(.channel, "its channel refused a cell (\(Sys.errnoText(errno)))")
      }
    }
    if channelFD >= 0 { watchSessionChannel(link, writing: false) }
  }

  fileprivate func watchSessionChannel(_ link: SessionLink, writing: Bool) {
    let fd = channelFD
    loop.unwatch(fd)
    loop.watch(fd, events: Int16(POLLIN) | (writing ? Int16(POLLOUT) : 0)) { [unowned self] revents in
      if revents & Int16(POLLOUT) != 0 { flushOutbox(link) }
      if revents & ~Int16(POLLOUT) != 0 { readSessionChannel(link) }
    }
  }

  /// Frames from the driver, read as they come; the inbox never holds more than one frame's
  /// cap plus one read.
  fileprivate func readSessionChannel(_ link: SessionLink) {
    for _ in 0..<16 {
      guard channelFD >= 0, stop == nil else { return }
      let count = Sys.readSome(channelFD, into: &loop.buffer)
      if count < 0 && errno == EAGAIN { return }
      guard count > 0 else {
        // An interpreter that exits closes the channel first: its status says more, so wait a moment for it.
        if let gate, Spawner.hasExited(gate.pidFD, within: 100) {
          loop.unwatch(channelFD)
          return
        }
        return endSession(.channel, "the interpreter closed its channel")
      }
      link.inbox += loop.buffer[0..<count]
      while link.inbox.count >= 4 && stop == nil {
        let length = link.inbox[0..<4].reduce(0) { $0 << 8 | Int($1) }
        guard length <= SessionLink.frameLimitBytes else {
          return endSession(
            .channel,
            "the interpreter sent a frame of \(length) bytes, past the \(SessionLink.frameLimitBytes)-byte cap")
        }
        guard link.inbox.count >= 4 + length else { break }
        let frame = Array(link.inbox[4..<(4 + length)])
        link.inbox.removeFirst(4 + length)
        handleFrame(frame, link)
      }
    }
  }

  fileprivate func handleFrame(_ frame: [UInt8], _ link: SessionLink) {
    switch frame.first {
    case UInt8(ascii: "S") where link.current != nil && !link.cellRunning && frame.count == 1:
      link.cellRunning = true
      if link.warm {  // the inputs are written: the run's baseline, then the payload's own start
        link.lastSnapshot = link.snapshotMountDirectory()
        link.inbox = []
        return closeChannel()
      }
      if link.interrupted { signalInterpreter(link) }  // its timeout came first
    case UInt8(ascii: "R") where !link.ready && frame.count == 1:
      link.ready = true
      link.onReady()
      armIdleTimer(link)
      startNextCell(link)
    case UInt8(ascii: "D") where !link.warm && link.current.map { frame.dropFirst().starts(with: $0.token) } == true:
      finishCell(link, reply: Array(frame.dropFirst(17)))
      armIdleTimer(link)
      startNextCell(link)
    default:
      endSession(.channel, "the interpreter sent a message the protocol does not allow (\(frame.count) bytes)")
    }
  }

  fileprivate func armIdleTimer(_ link: SessionLink) {
    guard let idle = link.idleTimeout, link.current == nil else { return }
    if let timer = link.idleTimer { loop.cancel(timer: timer) }
    link.idleTimer = loop.at(ContinuousClock.now + idle) { [unowned self] in
      endSession(.idle, "it was idle for \(idle)")
    }
  }

  /// The current cell is over (its reply came, or the session ended): its share of the output,
  /// drained first, since the interpreter wrote it before its reply.
  fileprivate func finishCell(_ link: SessionLink, reply: [UInt8]?) {
    guard let cell = link.current else { return }
    link.current = nil
    for timer in link.cellTimers { loop.cancel(timer: timer) }
    link.cellTimers = []
    var outcome = SessionLink.CellOutcome(reply: reply)
    outcome.number = link.cellsSent
    if let stdout {
      stdout.drainNow(loop)
      (outcome.stdout, outcome.outputTruncated) = stdout.take()
    }
    if let stderr {
      stderr.drainNow(loop)
      let (bytes, truncated) = stderr.take()
      outcome.stderr = bytes
      outcome.outputTruncated = outcome.outputTruncated || truncated
    }
    outcome.duration = ContinuousClock.now - link.cellStart
    outcome.interrupted = link.interrupted
    if let before = link.cellCPUAtStart, let gate, let now = Lifecycle.ProcessStatus.cpuTime(gate.pid) {
      outcome.cpuTime = now - before
    }
    if let usage = launch.cgroup?.usage() {
      outcome.memoryPeakBytes = usage.memoryPeakBytes
      outcome.oomKilled = usage.oomKills > link.oomKillsAtStart
    }
    if reply == nil {
      outcome.ended = link.endReason ?? sessionEndDescription()
      outcome.stoppedBy = stop
    }
    if let problem = cell.done(outcome) { endSession(.channel, problem) }
  }

  /// At the end of the session: the cell that was running gets what is left.
  fileprivate func endCurrentCell(_ link: SessionLink) {
    link.endReason = link.endReason ?? sessionEndDescription()
    finishCell(link, reply: nil)
  }

  /// Why the session ended, when the host did not end it: how the interpreter went.
  private func sessionEndDescription() -> String {
    switch launcherStatus.map(Bwrap.Report.returnCode) {
    case .some(let code) where code < 0: return "the interpreter was killed by signal \(-code)"
    case .some(let code): return "the interpreter exited with status \(code)"
    case nil: return "the interpreter is gone"
    }
  }

  /// Ends the session for `reason`, keeping the first reason given.
  fileprivate func endSession(_ reason: Lifecycle.StopReason, _ words: String) {
    guard let link = launch.session else { return }
    if link.endReason == nil && stop == nil && !launcherExited { link.endReason = words }
    halt(reason)
  }
}

// MARK: - Mount dir changes

extension Sandbox {
  /// The mount dir after a run: snapshots, set-id clearing, the change lists, safe reads and removal.
  enum Changes {
    /// Path components joined with "/".
    static func joined(_ components: [[UInt8]]) -> [UInt8] {
      var path: [UInt8] = []
      for (index, component) in components.enumerated() {
        if index > 0 { path.append(UInt8(ascii: "/")) }
        path += component
      }
      return path
    }

    /// A validated mount directory, held open so that the bind, both snapshots and the clean-up
    /// after the run all see the same one. Names below it are bytes: nothing is re-derived from a
    /// decoded string, and no host-side operation on it goes by path.
    struct OpenMountDirectory {
      /// The real path (no symlinks, no `..`), strictly below the temp dir.
      let hostPath: String
      /// An O_PATH descriptor of that directory, opened without following symlinks.
      let pathFD: Int32
      /// Its permission bits before the run (the payload owns the bind root and may change them).
      let mode: mode_t

      /// Resolves and checks `path`, then opens it.
      /// - Throws: `SandboxError.invalidMountDirectory` naming what is wrong.
      init(path: String) throws(SandboxError) {
        let temp = Sys.temporaryDirectory()
        guard let tempReal = Sys.resolvedPath(temp) else {
          throw .invalidMountDirectory(path: path, reason: "the temp dir '\(temp)' does not exist")
        }
        if let problem = Preflight.temporaryRootProblem(tempReal) {
          throw .invalidMountDirectory(path: path, reason: problem)
        }
        guard let real = Sys.resolvedPath(path) else {
          throw .invalidMountDirectory(path: path, reason: "does not exist")
        }
        guard Sys.isDirectory(real) else { throw .invalidMountDirectory(path: path, reason: "is not a directory") }
        if real == tempReal {
          throw .invalidMountDirectory(
            path: path,
            reason:
              "is the temp dir itself; binding all of \(tempReal) would hand the payload every other program's temp files and sockets"
          )
        }
        guard tempReal != "/", real.hasPrefix("\(tempReal)/") else {
          throw .invalidMountDirectory(
            path: path,
            reason:
              "resolves to '\(real)', which is not below the temp dir '\(tempReal)' ($TMPDIR or /tmp); only a directory there may be bound writable"
          )
        }
        let fd = open(real, Sys.openPathOnly | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw .system(call: "open", path: real, errno: errno) }
        // A component swapped for a symlink between realpath and open would show up here.
        var info = stat()
        guard Sys.readLink("/proc/self/fd/\(fd)") == real, fstat(fd, &info) == 0 else {
          Glibc.close(fd)
          throw .invalidMountDirectory(path: path, reason: "changed while it was being checked")
        }
        hostPath = real
        pathFD = fd
        mode = info.st_mode & 0o7777
      }

      func close() { _ = Glibc.close(pathFD) }

      /// Records every entry below the directory, with `lstat` semantics only, within the caps.
      func snapshot(limits: SandboxLimits = SandboxLimits(), clearingSetID: Bool = false) throws(SandboxError)
        -> Changes.Snapshot
      {
        let fd = openat(pathFD, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .system(call: "openat", path: hostPath, errno: errno) }
        return Changes.Snapshot(directoryFD: fd, limits: limits, clearingSetID: clearingSetID)
      }

      /// The host's work on the mount dir once every process of the sandbox is gone: the
      /// after-snapshot (clearing set-id bits as it goes), a full sweep when that walk could not
      /// cover the tree, the bind root's own mode put back, and the changes within the caps.
      /// Returns the changes and, when the clean-up is incomplete, why (the dir is then sealed).
      func finishRun(before: Changes.Snapshot, excluding: [UInt8]?, limits: SandboxLimits) -> (
        Changes.ChangeList, String?
      ) {
        var problems: [String] = []
        // First the bind root's own mode: the payload may have made it unreadable or unsearchable.
        if let problem = restoreMode() { problems.append(problem) }
        var after = Changes.Snapshot(directories: [:])
        do throws(SandboxError) {
          after = try snapshot(limits: limits, clearingSetID: true)
        } catch {
          problems.append(error.description)
        }
        problems += after.problems
        if after.truncated || after.unread > 0 || !problems.isEmpty {
          // The walk stopped at a cap or met directories it could not read: the sweep covers all.
          problems = Changes.SetIDSweep.run(root: pathFD, deadline: ContinuousClock.now + limits.cleanupTimeLimit)
        }
        var changes = Changes.makeChangeList(before: before, after: after, excluding: excluding, limits: limits)
        changes.truncated = changes.truncated || before.truncated || after.truncated
        guard let first = problems.first else { return (changes, nil) }
        seal()
        return (changes, problems.count == 1 ? first : "\(first) (and \(problems.count - 1) more)")
      }

      /// Puts back the bind root's permission bits, which the payload may have changed
      /// (`chmod 777 /mnt`); through the descriptor, never by path.
      func restoreMode() -> String? {
        var info = stat()
        guard fstat(pathFD, &info) == 0 else { return "fstat of the mount dir: \(Sys.errnoText(errno))" }
        guard info.st_mode & 0o7777 != mode else { return nil }
        return Changes.changeMode(ofPathFD: pathFD, to: mode).map { "restoring the mount dir's mode: \($0)" }
      }

      /// Closes the mount dir to everyone (mode 000), and its private parent when the library made
      /// it: what the payload left there is not known to be safe.
      func seal() {
        _ = Changes.changeMode(ofPathFD: pathFD, to: 0)
        if let parent = SandboxMountDirectory.Registry.privateParent(of: hostPath) { chmod(parent, 0) }
      }
    }

    /// Changes the mode of the inode behind an O_PATH descriptor through its `/proc/self/fd` magic
    /// link, which names exactly that inode (no path is resolved again); nil on success.
    static func changeMode(ofPathFD fd: Int32, to mode: mode_t) -> String? {
      chmod("/proc/self/fd/\(fd)", mode) == 0 ? nil : Sys.errnoText(errno)
    }

    /// What identifies a version of a file: a payload can reset mtime with utime, never ctime.
    struct FileStamp: Equatable {
      var type: UInt32
      var mode: UInt32
      var size: Int64
      var modified: Int64
      var changed: Int64
      var inode: UInt64

      init(_ info: stat) {
        type = info.st_mode & S_IFMT
        mode = info.st_mode & 0o7777
        size = Int64(info.st_size)
        modified = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        changed = Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec)
        inode = UInt64(info.st_ino)
      }
    }

    /// Every non-directory entry below a directory, grouped by the directory they are in.
    struct Snapshot {
      struct Entry: Equatable {
        /// The exact bytes of the name.
        var name: [UInt8]
        var stamp: Changes.FileStamp
      }

      /// Each directory's entries in `readdir` order, by the directory's relative path (empty: the top).
      /// Two walks of an unchanged directory list it in the same order, so a diff can pair entries
      /// by position and hash only what moved.
      var directories: [[UInt8]: [Entry]]
      /// A cap (`trackedEntries`, `trackedBytes`) was hit: what lies beyond it is not recorded.
      var truncated = false
      /// Directories that could not be opened (e.g. mode 000 for an unprivileged caller).
      var unread = 0
      /// Set-id bits the walk found and could not clear (after-run walks only).
      var problems: [String] = []

      /// Walks the tree under `directoryFD` (which it takes over and closes).
      ///
      /// Subdirectories are opened beneath the top with no symlink in any component (see
      /// `OpenDirectory`), and everything else is only `fstatat`-ed without following links, so a
      /// planted symlink, FIFO or device is recorded, never followed or opened. With
      /// `clearingSetID`, setuid and setgid bits of files and directories are cleared as they are
      /// found (see `clearSetID`). The walk costs one `fstatat` per entry; a tree bigger than one
      /// batch is shared with a second thread (see `SnapshotWalk`).
      init(directoryFD: Int32, limits: SandboxLimits = SandboxLimits(), clearingSetID: Bool = false) {
        let walk = Changes.SnapshotWalk(
          root: Changes.OpenDirectory(fd: directoryFD, prefix: []), entryLimit: limits.trackedEntries,
          byteLimit: limits.trackedBytes, clearingSetID: clearingSetID)
        directories = walk.run()
        truncated = walk.truncated
        unread = walk.unread
        problems = walk.problems
      }

      init(directories: [[UInt8]: [Entry]]) { self.directories = directories }

      /// Every entry by its relative path, as text (invalid UTF-8 replaced): for tests and tools.
      var entries: [String: Changes.FileStamp] {
        var all: [String: Changes.FileStamp] = [:]
        for (directory, listed) in directories {
          for entry in listed {
            all[String(decoding: Changes.relativePath(directory, entry.name), as: UTF8.self)] = entry.stamp
          }
        }
        return all
      }
    }

    /// `name` inside the relative directory `directory` (empty: the top).
    static func relativePath(_ directory: [UInt8], _ name: [UInt8]) -> [UInt8] {
      directory.isEmpty ? name : directory + [UInt8(ascii: "/")] + name
    }

    /// A directory open for the walk, shared by the jobs that read it and closed after the last.
    ///
    /// Subdirectories are opened from an anchor by a relative path, not from their parent, so a
    /// parent's descriptor closes once its own entries are read: the descriptors held stay few
    /// however wide or deep the tree (a payload may build either). A directory whose path from its
    /// anchor grows long becomes the anchor for what is below it.
    final class OpenDirectory: @unchecked Sendable {  // immutable
      let fd: Int32
      /// The path from the snapshot's top (empty for the top itself).
      let prefix: [UInt8]
      /// What subdirectories are opened from (nil: this directory), and this directory's path from it.
      let anchor: Changes.OpenDirectory?
      let pathFromAnchor: [UInt8]

      static let anchorSpan = 2048  // bytes of path; openat2 takes up to PATH_MAX (4096)

      init(fd: Int32, prefix: [UInt8], anchor: Changes.OpenDirectory? = nil, pathFromAnchor: [UInt8] = []) {
        self.fd = fd
        self.prefix = prefix
        self.anchor = anchor
        self.pathFromAnchor = pathFromAnchor
      }
      deinit { Glibc.close(fd) }

      /// The job that walks the subdirectory `name`: opened from this directory's anchor, or from
      /// this directory when it is one.
      func descend(into name: [UInt8]) -> Changes.SnapshotWalk.Job {
        let prefix = Changes.relativePath(self.prefix, name)
        if let anchor {
          return .descend(from: anchor, path: pathFromAnchor + [UInt8(ascii: "/")] + name, prefix: prefix)
        }
        return .descend(from: self, path: name, prefix: prefix)
      }

      /// Opens `path` below this directory without following any symlink; nil if it cannot be read.
      func openBeneath(_ path: [UInt8], prefix: [UInt8]) -> Changes.OpenDirectory? {
        let child = Changes.openBeneath(fd, path, flags: O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard child >= 0 else { return nil }
        if path.count >= Self.anchorSpan { return Changes.OpenDirectory(fd: child, prefix: prefix) }
        return Changes.OpenDirectory(fd: child, prefix: prefix, anchor: self, pathFromAnchor: path)
      }
    }

    /// Opens the relative `path` below `directoryFD`, refusing symlinks in every component and any
    /// escape above `directoryFD`: `openat2(2)` (Linux ≥ 5.6) with RESOLVE_BENEATH,
    /// RESOLVE_NO_SYMLINKS and RESOLVE_NO_MAGICLINKS in one call or, where that is missing or
    /// filtered, one O_NOFOLLOW `openat` per component. Returns the descriptor or -1 (errno set).
    static func openBeneath(_ directoryFD: Int32, _ path: [UInt8], flags: Int32) -> Int32 {
      var how: (UInt64, UInt64, UInt64) = (UInt64(flags | O_NOFOLLOW), 0, 0x02 | 0x04 | 0x08)  // struct open_how
      if let syscall = Sys.GlibcExtras.syscall {
        let fd = Sys.withCName(path) { name in
          withUnsafeMutablePointer(to: &how) { how in
            syscall(437, Int(directoryFD), Int(bitPattern: name), Int(bitPattern: how), 24)  // openat2
          }
        }
        if fd >= 0 { return Int32(fd) }
        if errno != ENOSYS && errno != EPERM { return -1 }
      }
      return Changes.openBeneathByComponents(directoryFD, path, flags: flags)
    }

    /// `openBeneathNoSymlinks` for kernels without `openat2`: no component may be a symlink or `..`.
    static func openBeneathByComponents(_ directoryFD: Int32, _ path: [UInt8], flags: Int32) -> Int32 {
      let components = path.split(separator: UInt8(ascii: "/")).map(Array.init)
      guard !components.isEmpty, !components.contains([0x2e, 0x2e]) else {
        errno = EXDEV
        return -1
      }
      var fd = openat(directoryFD, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
      for (index, component) in components.enumerated() where fd >= 0 {
        let last = index == components.count - 1
        let next = Sys.withCName(component) {
          openat(fd, $0, (last ? flags : O_RDONLY | O_DIRECTORY) | O_NOFOLLOW | O_CLOEXEC)
        }
        let code = errno
        Glibc.close(fd)
        fd = next
        errno = code
      }
      return fd
    }

    /// Clears the setuid and setgid bits of `name` in `directoryFD`, which `fstatat` just showed
    /// as `expected`: opened with O_PATH and no symlink followed, checked to be that inode and of
    /// that type, then changed through its own descriptor. Returns a problem, or nil.
    static func clearSetID(in directoryFD: Int32, name: [UInt8], expected: stat, path: @autoclosure () -> [UInt8])
      -> String?
    {
      let fd = Sys.withCName(name) { openat(directoryFD, $0, Sys.openPathOnly | O_NOFOLLOW | O_CLOEXEC) }
      guard fd >= 0 else {
        return "opening '\(Sys.printable(path()))' to clear its set-id bits: \(Sys.errnoText(errno))"
      }
      defer { Glibc.close(fd) }
      var info = stat()
      guard fstat(fd, &info) == 0, info.st_ino == expected.st_ino, info.st_dev == expected.st_dev,
        info.st_mode & S_IFMT == expected.st_mode & S_IFMT
      else { return "'\(Sys.printable(path()))' changed while its set-id bits were being cleared" }
      return Changes.changeMode(ofPathFD: fd, to: info.st_mode & 0o7777 & ~(S_ISUID | S_ISGID)).map {
        "clearing the set-id bits of '\(Sys.printable(path()))': \($0)"
      }
    }

    /// One snapshot walk: a queue of jobs served by the calling thread and, once the queue holds
    /// more than one job and the machine has a second core, a helper thread. An `fstatat` costs
    /// about 1.3 µs on the development VM, so 10,000 files take ~15 ms on one thread and about half
    /// on two; four threads on its two cores were slower than two. What it holds is capped: past
    /// `entryLimit` entries or `byteLimit` bytes of names it stops recording and queueing.
    final class SnapshotWalk: @unchecked Sendable {  // every mutable field is guarded by `mutex`
      enum Job {
        case list(Changes.OpenDirectory)  // read the names: queue the subdirectories and batches of the rest
        /// Open a subdirectory (by its path from an anchor) and list it.
        case descend(from: Changes.OpenDirectory, path: [UInt8], prefix: [UInt8])
        case stamp(Changes.OpenDirectory, batch: Int, names: ArraySlice<[UInt8]>)  // fstatat a batch of names
      }

      /// A batch's entries, in the order its names were listed.
      struct Found {
        var directory: [UInt8]
        var batch: Int
        var entries: [Changes.Snapshot.Entry]
      }

      static let batchSize = 256
      static let usesHelper = Sys.onlineProcessors > 1
      private let mutex = Sys.Mutex()  // guards everything below; broadcast when jobs or helpers change
      private var jobs: [Job]
      private var jobsRunning = 0
      private var helpers = 0  // started and not yet finished
      private var helperTried = false
      private var found: [Found] = []
      private let entryLimit: Int
      private let byteLimit: Int
      private let clearingSetID: Bool
      private var entriesSeen = 0
      private var bytesSeen = 0
      private(set) var truncated = false
      private(set) var unread = 0
      private(set) var problems: [String] = []

      init(root: Changes.OpenDirectory, entryLimit: Int, byteLimit: Int, clearingSetID: Bool) {
        jobs = [.list(root)]
        self.entryLimit = entryLimit
        self.byteLimit = byteLimit
        self.clearingSetID = clearingSetID
      }

      /// Walks the whole tree and returns each directory's entries in listing order.
      func run() -> [[UInt8]: [Changes.Snapshot.Entry]] {
        work()
        mutex.withLock { while helpers > 0 { mutex.wait() } }
        var directories: [[UInt8]: [Changes.Snapshot.Entry]] = [:]
        for part in found.sorted(by: { $0.batch < $1.batch }) {
          directories[part.directory, default: []] += part.entries
        }
        return directories
      }

      /// Takes jobs until none is left and none is running (a running job may still add some).
      private func work() {
        var mine: [Found] = []
        while let job = next() {
          switch job {
          case .list(let directory): list(directory)
          case .descend(let anchor, let path, let prefix):
            if let child = anchor.openBeneath(path, prefix: prefix) {
              list(child)
            } else {
              record { unread += 1 }
            }
          case .stamp(let directory, let batch, let names): mine.append(stamp(names, in: directory, batch: batch))
          }
          mutex.withLock {
            jobsRunning -= 1
            if jobsRunning == 0 && jobs.isEmpty { mutex.broadcast() }
          }
        }
        mutex.withLock { found += mine }
      }

      private func record(_ change: () -> Void) { mutex.withLock(change) }

      /// Counts `count` more entries with `bytes` of paths; false once a cap is passed.
      private func admit(_ count: Int, bytes: Int) -> Bool {
        mutex.withLock {
          guard !truncated else { return false }
          entriesSeen += count
          bytesSeen += bytes
          if entriesSeen > entryLimit || bytesSeen > byteLimit { truncated = true }
          return !truncated
        }
      }

      private func next() -> Job? {
        mutex.withLock {
          while jobs.isEmpty && jobsRunning > 0 { mutex.wait() }
          guard let job = jobs.popLast() else { return nil }
          jobsRunning += 1
          return job
        }
      }

      private func add(_ new: [Job]) {
        guard !new.isEmpty else { return }
        let startHelper = mutex.withLock {
          jobs += new
          let start = Self.usesHelper && !helperTried && jobs.count > 1
          if start {
            helperTried = true
            helpers += 1
          }
          mutex.broadcast()
          return start
        }
        guard startHelper else { return }
        if !Sys.startThread(
          inline: false,
          {
            self.work()
            self.helperFinished()
          })
        {
          helperFinished()  // no thread to be had: the caller walks alone
        }
      }

      private func helperFinished() {
        mutex.withLock {
          helpers -= 1
          mutex.broadcast()
        }
      }

      private func list(_ directory: Changes.OpenDirectory) {
        if clearingSetID {
          var info = stat()
          if fstat(directory.fd, &info) == 0 && info.st_mode & (S_ISUID | S_ISGID) != 0 && !directory.prefix.isEmpty,
            fchmod(directory.fd, info.st_mode & 0o7777 & ~(S_ISUID | S_ISGID)) != 0
          {
            let problem =
              "clearing the set-id bits of directory '\(Sys.printable(directory.prefix))': \(Sys.errnoText(errno))"
            record { problems.append(problem) }
          }
        }
        let listFD = openat(directory.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)  // its own offset
        guard listFD >= 0, let stream = fdopendir(listFD) else {
          if listFD >= 0 { Glibc.close(listFD) }
          record { unread += 1 }
          return
        }
        var names: [[UInt8]] = []
        var queued: [Job] = []
        while let entry = readdir(stream) {
          let name = Sys.entryBytes(entry)
          if name == [0x2e] || name == [0x2e, 0x2e] { continue }
          // Charged at what the snapshot stores: the full relative path (a subdirectory's becomes
          // its children's prefix), so a deep chain of long names cannot cost the host O(depth²).
          guard admit(1, bytes: directory.prefix.count + 1 + name.count) else { break }
          if entry.pointee.d_type == UInt8(DT_DIR) {
            queued.append(directory.descend(into: name))
          } else {
            names.append(name)
          }
        }
        closedir(stream)
        for start in stride(from: 0, to: names.count, by: Self.batchSize) {
          queued.append(
            .stamp(
              directory, batch: start / Self.batchSize, names: names[start..<min(start + Self.batchSize, names.count)]))
        }
        add(queued)
      }

      private func stamp(_ names: ArraySlice<[UInt8]>, in directory: Changes.OpenDirectory, batch: Int) -> Found {
        var entries: [Changes.Snapshot.Entry] = []
        entries.reserveCapacity(names.count)
        var subdirectories: [Job] = []
        var problems: [String] = []
        var unstamped = 0
        for name in names {
          var info = stat()
          guard Sys.withCName(name, { fstatat(directory.fd, $0, &info, AT_SYMLINK_NOFOLLOW) }) == 0 else {
            if errno != ENOENT { unstamped += 1 }  // e.g. a directory its owner may read but not search
            continue
          }
          if info.st_mode & S_IFMT == S_IFDIR {  // a filesystem without d_type
            subdirectories.append(directory.descend(into: name))
            continue
          }
          if clearingSetID && info.st_mode & S_IFMT == S_IFREG && info.st_mode & (S_ISUID | S_ISGID) != 0 {
            if let problem = Changes.clearSetID(
              in: directory.fd, name: name, expected: info, path: Changes.relativePath(directory.prefix, name))
            {
              problems.append(problem)
            } else {
              info.st_mode &= ~(S_ISUID | S_ISGID)  // the stamp the after-snapshot would see now
            }
          }
          entries.append(Changes.Snapshot.Entry(name: name, stamp: Changes.FileStamp(info)))
        }
        if !problems.isEmpty || unstamped > 0 {
          record {
            self.problems += problems
            unread += unstamped
          }
        }
        add(subdirectories)
        return Found(directory: directory.prefix, batch: batch, entries: entries)
      }
    }

    /// Up to `limit` names (at most `byteLimit` bytes) of the directory `fd`, from `position` (0:
    /// the start; otherwise a `telldir` cookie, valid across opens of the same directory), without
    /// "." and ".."; with the position after the last and whether the listing ended. One
    /// `getdents64` fills glibc's buffer, so a batch costs about one call however wide the directory.
    static func readDirectoryBatch(_ fd: Int32, from position: Int, limit: Int = 256, byteLimit: Int = 32 << 10)
      -> (names: [[UInt8]], next: Int, atEnd: Bool)?
    {
      let copy = dup(fd)
      guard copy >= 0, let stream = fdopendir(copy) else {
        if copy >= 0 { Glibc.close(copy) }
        return nil
      }
      defer { closedir(stream) }
      // Always: the stream shares the offset of `fd`, so 0 must rewind too (a pass "once more from
      // the start" would otherwise read from where the last one ended).
      seekdir(stream, position)
      var names: [[UInt8]] = []
      var bytes = 0
      while names.count < limit && bytes < byteLimit {
        guard let entry = readdir(stream) else { return (names, 0, true) }
        let name = Sys.entryBytes(entry)
        if name == [0x2e] || name == [0x2e, 0x2e] { continue }
        names.append(name)
        bytes += name.count
      }
      return (names, telldir(stream), false)
    }

    /// The set-id sweep of a whole tree, for when the after-run snapshot could not cover it (a cap,
    /// an unreadable directory): depth first, holding one directory descriptor at a time and, per
    /// level, where its listing stopped and a bounded batch of subdirectory names (O(depth) memory
    /// however wide the tree). Going down opens the child beneath its parent with no symlink
    /// followed; coming back reopens `..` and checks it is the directory it left. A directory the
    /// caller owns but may not read or search (mode 000 left by the payload) is opened up for the
    /// sweep and put back after.
    enum SetIDSweep {
      struct Level {
        var fd: Int32
        var device: dev_t
        var inode: ino_t
        /// Where the listing resumes, subdirectories found and not yet entered, and whether it ended.
        var position: Int = 0
        var pending: [[UInt8]] = []
        var atEnd = false
        /// The mode to put back when the sweep opened the directory up.
        var restore: mode_t? = nil
      }

      /// Sweeps the tree under `root` (an O_PATH or regular directory descriptor, not taken over).
      /// Returns the problems: bits that could not be cleared, entries that could not be examined,
      /// or the deadline passed.
      static func run(root: Int32, deadline: ContinuousClock.Instant) -> [String] {
        var problems: [String] = []
        let top = openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard top >= 0 else { return ["opening the mount dir for the set-id sweep: \(Sys.errnoText(errno))"] }
        var info = stat()
        fstat(top, &info)
        var stack = [Level(fd: top, device: info.st_dev, inode: info.st_ino)]
        var path: [[UInt8]] = []  // for messages only
        func abandon(_ problem: String) -> [String] {
          for level in stack where level.fd >= 0 { Glibc.close(level.fd) }
          return problems + [problem]
        }
        while let current = stack.last {
          let fd = current.fd
          if ContinuousClock.now >= deadline {
            return abandon("the set-id sweep did not finish within the clean-up time limit")
          }
          // A batch of this directory: clear what is set-id, remember its subdirectories.
          if current.pending.isEmpty && !current.atEnd {
            guard let batch = Changes.readDirectoryBatch(fd, from: current.position) else {
              return abandon("listing '\(Sys.printable(joined(path)))' in the set-id sweep: \(Sys.errnoText(errno))")
            }
            var subdirectories: [[UInt8]] = []
            for name in batch.names {
              var info = stat()
              guard Sys.withCName(name, { fstatat(fd, $0, &info, AT_SYMLINK_NOFOLLOW) }) == 0 else {
                if errno != ENOENT {  // what cannot be examined cannot be known clear: fail closed
                  problems.append(
                    "examining '\(Sys.printable(joined(path + [name])))' in the set-id sweep: \(Sys.errnoText(errno))")
                }
                continue
              }
              let type = info.st_mode & S_IFMT
              guard type == S_IFREG || type == S_IFDIR else { continue }
              if info.st_mode & (S_ISUID | S_ISGID) != 0,
                let problem = Changes.clearSetID(in: fd, name: name, expected: info, path: joined(path + [name]))
              {
                problems.append(problem)
              }
              if type == S_IFDIR { subdirectories.append(name) }
            }
            stack[stack.count - 1].pending = subdirectories
            stack[stack.count - 1].position = batch.next
            stack[stack.count - 1].atEnd = batch.atEnd
            continue
          }
          // Down: open the next subdirectory beneath this directory (no symlink followed). One of
          // ours that its owner may not both read and search (mode 000, 0401, 0100, …) is opened up
          // and put back when it is done (root reads and searches everything anyway).
          if !current.pending.isEmpty {
            let name = stack[stack.count - 1].pending.removeFirst()
            let handle = Sys.withCName(name) { openat(fd, $0, Sys.openPathOnly | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            var info = stat()
            guard handle >= 0, fstat(handle, &info) == 0 else {
              if handle >= 0 { Glibc.close(handle) }
              if errno != ENOENT {
                problems.append(
                  "entering '\(Sys.printable(joined(path + [name])))' for the set-id sweep: \(Sys.errnoText(errno))")
              }
              continue
            }
            var restore: mode_t? = nil
            let kept = info.st_mode & 0o7777 & ~(S_ISUID | S_ISGID)
            if geteuid() != 0 && info.st_uid == geteuid() && kept & 0o500 != 0o500
              && Changes.changeMode(ofPathFD: handle, to: kept | 0o500) == nil
            {
              restore = kept
            }
            let child = open("/proc/self/fd/\(handle)", O_RDONLY | O_DIRECTORY | O_CLOEXEC)  // exactly that inode
            let code = errno
            if child < 0, let restore { _ = Changes.changeMode(ofPathFD: handle, to: restore) }
            Glibc.close(handle)
            guard child >= 0 else {
              problems.append(
                "entering '\(Sys.printable(joined(path + [name])))' for the set-id sweep: \(Sys.errnoText(code))")
              continue
            }
            Glibc.close(fd)
            stack[stack.count - 1].fd = -1  // reopened through the child's ".." on the way back
            stack.append(Level(fd: child, device: info.st_dev, inode: info.st_ino, restore: restore))
            path.append(name)
            continue
          }
          // Up: this directory is done. Reopen the parent through ".." (while this one is still
          // searchable), check it, put this one's mode back.
          stack.removeLast()
          if let parent = stack.last {
            let parentFD = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            var parentInfo = stat()
            guard parentFD >= 0, fstat(parentFD, &parentInfo) == 0, parentInfo.st_dev == parent.device,
              parentInfo.st_ino == parent.inode
            else {
              if parentFD >= 0 { Glibc.close(parentFD) }
              if let restore = current.restore { fchmod(fd, restore) }
              Glibc.close(fd)
              return abandon("the directory above '\(Sys.printable(joined(path)))' changed during the set-id sweep")
            }
            stack[stack.count - 1].fd = parentFD
            path.removeLast()
          }
          if let restore = current.restore, fchmod(fd, restore) != 0 {
            problems.append("restoring the mode of '\(Sys.printable(joined(path)))': \(Sys.errnoText(errno))")
          }
          Glibc.close(fd)
        }
        return problems
      }
    }

    /// Created-or-modified and removed entries, as sorted relative paths (exact bytes).
    struct ChangeList: Equatable {
      var changed: [[UInt8]] = []
      var deleted: [[UInt8]] = []
      /// The lists stop at a cap (`reportedChanges`, `reportedChangeBytes`) or a snapshot did.
      var truncated = false
    }

    /// Compares two snapshots; `excluding` (the script that was run) is never reported.
    ///
    /// Entries are paired by position while both listings agree on the name, which is every entry
    /// of an unchanged directory; only the rest is matched by name. At most `reportedChanges`
    /// entries and `reportedChangeBytes` bytes of paths are kept (the smallest, in byte order).
    static func makeChangeList(
      before: Changes.Snapshot, after: Changes.Snapshot, excluding: [UInt8]?, limits: SandboxLimits = SandboxLimits()
    ) -> Changes.ChangeList {
      var changes = Changes.ChangeList()
      for (directory, now) in after.directories {
        let then = before.directories[directory] ?? []
        var paired = 0
        while paired < min(now.count, then.count) && now[paired].name == then[paired].name {
          if now[paired].stamp != then[paired].stamp {
            changes.changed.append(Changes.relativePath(directory, now[paired].name))
          }
          paired += 1
        }
        var unpaired = [[UInt8]: Changes.FileStamp](minimumCapacity: then.count - paired)
        for entry in then[paired...] { unpaired[entry.name] = entry.stamp }
        for entry in now[paired...] where unpaired.removeValue(forKey: entry.name) != entry.stamp {
          changes.changed.append(Changes.relativePath(directory, entry.name))
        }
        if !after.truncated { changes.deleted += unpaired.keys.map { Changes.relativePath(directory, $0) } }
      }
      if !after.truncated {  // a directory missing from a truncated snapshot may just not be reached
        for (directory, then) in before.directories where after.directories[directory] == nil {
          changes.deleted += then.map { Changes.relativePath(directory, $0.name) }
        }
      }
      if let excluding {
        changes.changed.removeAll { $0 == excluding }
        changes.deleted.removeAll { $0 == excluding }
      }
      /// Sorts `paths` and keeps what fits the caps; returns whether some were left out.
      func capped(_ paths: inout [[UInt8]]) -> Bool {
        paths.sort { $0.lexicographicallyPrecedes($1) }
        var bytes = 0
        let kept = paths.prefix { path in
          bytes += path.count
          return bytes <= limits.reportedChangeBytes
        }.prefix(limits.reportedChanges)
        guard kept.count < paths.count else { return false }
        paths = Array(kept)
        return true
      }
      let changedCut = capped(&changes.changed)
      let deletedCut = capped(&changes.deleted)
      changes.truncated = changedCut || deletedCut
      return changes
    }

    /// Reads a file the payload left in the mount dir, safely: beneath the mount dir with no
    /// symlink or magic link in any component, without blocking (O_NONBLOCK), regular files only,
    /// at most `limit` bytes. Opened with O_PATH first, so a FIFO or device is refused before it is
    /// ever opened for reading.
    /// - Throws: `SandboxError.outputUnreadable` naming why.
    static func readOutput(mountDirectory: String, path: String, limit: Int) throws(SandboxError) -> SandboxOutputFile {
      let relative = Array(path.utf8)
      let parts = relative.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
      guard !relative.isEmpty, relative.first != UInt8(ascii: "/"), !relative.contains(0),
        !parts.contains(where: { $0.isEmpty || $0.elementsEqual([0x2e]) || $0.elementsEqual([0x2e, 0x2e]) })
      else {
        throw .outputUnreadable(
          path: path,
          reason: "must be a plain relative path inside the mount dir (no '..', '.', empty parts or leading '/')")
      }
      let root = open(mountDirectory, Sys.openPathOnly | O_DIRECTORY | O_CLOEXEC)
      guard root >= 0 else {
        throw .outputUnreadable(path: path, reason: "the mount dir '\(mountDirectory)': \(Sys.errnoText(errno))")
      }
      defer { close(root) }
      let handle = Changes.openBeneath(root, relative, flags: Sys.openPathOnly)
      guard handle >= 0 else {
        let reason =
          errno == ELOOP || errno == EXDEV ? "a symlink, or a path that leaves the mount dir" : Sys.errnoText(errno)
        throw .outputUnreadable(path: path, reason: reason)
      }
      defer { close(handle) }
      var info = stat()
      guard fstat(handle, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
        throw .outputUnreadable(path: path, reason: "not a regular file (a directory, FIFO, socket, device or symlink)")
      }
      let fd = open("/proc/self/fd/\(handle)", O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
      guard fd >= 0 else { throw .outputUnreadable(path: path, reason: Sys.errnoText(errno)) }
      defer { close(fd) }
      var opened = stat()
      guard fstat(fd, &opened) == 0, opened.st_ino == info.st_ino, opened.st_dev == info.st_dev else {
        throw .outputUnreadable(path: path, reason: "changed while it was opened")
      }
      var bytes: [UInt8] = []
      var truncated = false
      do throws(SandboxError) {
        truncated = try Sys.readAll(fd, into: &bytes, limit: limit)
      } catch {
        throw .outputUnreadable(path: path, reason: error.description)
      }
      return SandboxOutputFile(bytes: bytes, size: Int(opened.st_size), truncated: truncated)
    }

    /// Removes a directory tree whatever it holds: symlinks are unlinked, never followed; mode-000
    /// directories are opened up first; depth first with one descriptor at a time (see
    /// `SetIDSweep`). Returns whether the tree is gone.
    @discardableResult
    static func removeTree(_ path: String) -> Bool {
      let parentFD = open(Sys.parentDirectory(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
      guard parentFD >= 0 else { return false }
      defer { close(parentFD) }
      return Changes.removeEntry(in: parentFD, name: Array(path.utf8.split(separator: UInt8(ascii: "/")).last ?? []))
    }

    /// Opens the directory `name` in `parent` to empty it (its inode, reached without following a
    /// symlink), giving its owner full access first so that its entries can be listed and unlinked.
    private static func openToEmpty(_ parent: Int32, _ name: [UInt8]) -> (fd: Int32, device: dev_t, inode: ino_t)? {
      let handle = Sys.withCName(name) { openat(parent, $0, Sys.openPathOnly | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
      guard handle >= 0 else { return nil }
      defer { close(handle) }
      var info = stat()
      guard fstat(handle, &info) == 0 else { return nil }
      if info.st_mode & 0o700 != 0o700 { _ = Changes.changeMode(ofPathFD: handle, to: 0o700) }
      let fd = open("/proc/self/fd/\(handle)", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
      return fd >= 0 ? (fd, info.st_dev, info.st_ino) : nil
    }

    /// Removes `name` in `directoryFD` and, for a directory, everything below it first, depth
    /// first in batches (see `readDirectoryBatch`): one descriptor open at a time, each level's
    /// name, position and a bounded batch of subdirectories kept (O(depth) memory). Going up
    /// reopens `..` and checks it is the directory it came from. A listing resumed after deletions
    /// may skip entries on some filesystems, so a directory is removed only after a pass from its
    /// start finds nothing left (or nothing more it can remove).
    static func removeEntry(in directoryFD: Int32, name: [UInt8]) -> Bool {
      if Sys.withCName(name, { unlinkat(directoryFD, $0, 0) }) == 0 || errno == ENOENT { return true }
      struct Level {
        var name: [UInt8]
        var device: dev_t
        var inode: ino_t
        var position = 0
        var pending: [[UInt8]] = []
        var atEnd = false
        var sawEntries = false  // since the current pass from the start began
        var stuck = false  // met something it can neither unlink nor enter
      }
      guard let first = openToEmpty(directoryFD, name) else { return false }
      var fd = first.fd
      var trail = [Level(name: name, device: first.device, inode: first.inode)]
      while true {
        let top = trail.count - 1
        if trail[top].pending.isEmpty && !trail[top].atEnd {
          guard let batch = Changes.readDirectoryBatch(fd, from: trail[top].position) else { break }
          for child in batch.names {
            trail[top].sawEntries = true
            if Sys.withCName(child, { unlinkat(fd, $0, 0) }) == 0 || errno == ENOENT { continue }
            trail[top].pending.append(child)
          }
          trail[top].position = batch.next
          trail[top].atEnd = batch.atEnd
          continue
        }
        if !trail[top].pending.isEmpty {
          let child = trail[top].pending.removeFirst()
          guard let opened = openToEmpty(fd, child) else {
            trail[top].stuck = true
            continue
          }
          close(fd)
          fd = opened.fd
          trail.append(Level(name: child, device: opened.device, inode: opened.inode))
          continue
        }
        // The listing ended. Once more from the start, unless that pass found nothing (empty) or
        // met what cannot go.
        if trail[top].sawEntries && !trail[top].stuck {
          trail[top].position = 0
          trail[top].atEnd = false
          trail[top].sawEntries = false
          continue
        }
        // Up one level, and remove this directory there.
        let leaving = trail.removeLast()
        var parent = directoryFD
        if let above = trail.last {
          parent = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
          var info = stat()
          guard parent >= 0, fstat(parent, &info) == 0, info.st_dev == above.device, info.st_ino == above.inode else {
            if parent >= 0 { close(parent) }
            close(fd)
            return false
          }
        }
        close(fd)
        let removed = Sys.withCName(leaving.name) { unlinkat(parent, $0, AT_REMOVEDIR) } == 0
        if trail.isEmpty { return removed }
        if !removed { trail[trail.count - 1].stuck = true }
        fd = parent
      }
      close(fd)
      return false
    }
  }
}

// MARK: - Sessions

/// A sandboxed interpreter kept alive between cells: one bwrap, one Python, every layer of a
/// one-shot run. State (variables, imports, functions, files in /tmp) persists from cell to cell.
///
/// Made by `Sandbox.openSession`. Cells are serialised: `execute` calls from many tasks queue up
/// and run one at a time, in the order they arrive. `close()`, deinit and the end of this process
/// all end the sandbox; the lifecycle guarantees of a one-shot run apply at that end (every
/// process gone, then the mount dir's set-id clearing). Limits: wall time is per cell (the cell
/// gets KeyboardInterrupt, and if it has not stopped `interruptGrace` later, the session is
/// killed); CPU, memory, processes, disk and output are budgets of the whole session.
public final class SandboxSession: @unchecked Sendable {  // immutable; `state` and `link` lock themselves
  /// A session's bounds (besides the `Sandbox`'s limits, which are the session's budgets).
  public struct Options: Sendable, Equatable {
    /// The wall-clock limit of a cell that names none (default 60 s).
    public var cellTimeout: Duration
    /// The session ends after this long without a cell (default 10 minutes); nil: never.
    public var idleTimeout: Duration?
    /// The session ends this long after it opened, whatever it is doing (default 1 hour); nil: never.
    public var lifetime: Duration?

    public init(
      cellTimeout: Duration = .seconds(60), idleTimeout: Duration? = .seconds(600), lifetime: Duration? = .seconds(3600)
    ) {
      self.cellTimeout = cellTimeout
      self.idleTimeout = idleTimeout
      self.lifetime = lifetime
    }
  }

  /// The options the session was opened with.
  public let options: Options
  let link: Sandbox.Lifecycle.SessionLink
  let state = Sandbox.Sessions.State()

  init(link: Sandbox.Lifecycle.SessionLink, options: Options) {
    self.link = link
    self.options = options
  }

  deinit { link.send(.close) }

  /// Runs `code` as the next cell and returns what it did.
  ///
  /// An exception, a timeout or the session's end during the cell is reported in the result
  /// (`exception`, `timedOut`, `sessionEnded`). Cancelling the Task interrupts the cell.
  /// - Throws: `SandboxError.sessionEnded` once the session is over (nothing runs),
  ///   `.invalidCell` for code past the frame cap, `.invalidTimeout`, `.runCancelled` when the
  ///   Task was cancelled before the cell started.
  public func execute(_ code: String, timeout: Duration? = nil) async throws(SandboxError) -> SandboxCellResult {
    try await submit(code, timeout: timeout, id: state.nextCellID(), onOutput: nil)
  }

  /// Runs `code` as the next cell and delivers its output as it arrives, then its result.
  ///
  /// The events come in order: `.stdout` and `.stderr` chunks, then `.finished` (the result, as
  /// `execute` returns it) or `.failed`. The host keeps reading the pipes whatever the consumer
  /// does, so a slow consumer never blocks the interpreter: undelivered events wait in the
  /// stream, which holds at most what the output caps keep. Ending the iteration early
  /// interrupts the cell.
  public func executeStreaming(_ code: String, timeout: Duration? = nil) -> AsyncStream<
    SandboxEvent<SandboxCellResult>
  > {
    let id = state.nextCellID()
    // Ending the iteration cancels the Task, which interrupts the cell (submit's cancellation handler).
    return Sandbox.Sys.eventStream { onOutput throws(SandboxError) in
      try await self.submit(code, timeout: timeout, id: id, onOutput: onOutput)
    }
  }

  func submit(
    _ code: String, timeout: Duration?, id: Int, onOutput: ((_ isStderr: Bool, _ bytes: [UInt8]) -> Void)?
  ) async throws(SandboxError) -> SandboxCellResult {
    let bytes = Array(code.utf8)
    guard bytes.count <= Sandbox.Lifecycle.SessionLink.frameLimitBytes - 16 else {
      throw .invalidCell(
        reason: "its code is \(bytes.count) bytes, past the \(Sandbox.Lifecycle.SessionLink.frameLimitBytes)-byte cap")
    }
    let limit = timeout ?? options.cellTimeout
    try Sandbox.checkTimeout(limit)
    if Task.isCancelled { throw .runCancelled }
    let link = self.link
    let outcome: Swift.Result<SandboxCellResult, SandboxError> = await withTaskCancellationHandler {
      await withCheckedContinuation { continuation in
        var cell = Sandbox.Lifecycle.SessionLink.Cell(id: id, code: bytes, timeout: limit) { outcome in
          let (result, problem) = Sandbox.Sessions.makeCellResult(outcome, link: link)
          continuation.resume(returning: result)
          return problem
        }
        cell.onOutput = onOutput
        if let reason = link.send(.cell(cell)) {
          continuation.resume(returning: .failure(.sessionEnded(reason: reason)))
        }
      }
    } onCancel: {
      link.send(.interrupt(id))
    }
    return try outcome.get()
  }

  /// Ends the session: the sandbox is killed, every process of it is gone, then the host's work on
  /// the mount dir runs (set-id clearing). Returns the session's whole run, as a one-shot run
  /// reports it (the changes since the session opened, `cleanupIncomplete`); safe to call twice.
  @discardableResult
  public func close() async -> SandboxResult? {
    link.send(.close)
    return await state.waitForEnd()
  }

  /// Why the session ended, once it has (nil while it is open).
  public var endReason: String? { link.ended }
}

extension Sandbox {
  /// Opens a session: a sandbox whose interpreter keeps its state between cells.
  ///
  /// Returns once the interpreter is up and waiting for its first cell. Each open session holds
  /// one slot of `Sandbox.Admission` for its whole life, and one thread.
  /// - Parameters:
  ///   - mountDirectory: bound read-write at `/mnt` for the session's life (as `run` takes it).
  ///   - environment: extra variables for the interpreter.
  /// - Throws: `SandboxError` when the sandbox cannot be set up, or `.sessionEnded` when the
  ///   interpreter ended before it was ready.
  public func openSession(
    mountDirectory: String? = nil, environment: [String: String] = [:],
    options: SandboxSession.Options = SandboxSession.Options()
  ) async throws(SandboxError) -> SandboxSession {
    if config.requiresVerifiedHost { try SelfTestGate.requirePassed() }
    for bound in [options.cellTimeout, options.idleTimeout, options.lifetime].compactMap({ $0 }) {
      try Sandbox.checkTimeout(bound)
    }
    let link = try Lifecycle.SessionLink(lifetime: options.lifetime, idleTimeout: options.idleTimeout)
    let session = SandboxSession(link: link, options: options)
    let state = session.state
    let sandbox = self
    if Task.isCancelled { throw .runCancelled }
    // Cancelling the opening Task stops a session still waiting for admission, or kills one that
    // is starting; once open, the session's own bounds and close() end it.
    let cancellation = Spawner.CancellationSignal()
    let opened: Swift.Result<Void, SandboxError> = await withTaskCancellationHandler {
      await withCheckedContinuation { continuation in
        let once = Sessions.Once(continuation)
        link.onReady = { once.resume(.success(())) }
        // The session's own thread: it spawns bwrap and lives exactly as long as the sandbox.
        let started = Sys.startThread(inline: false) {
          let outcome: Swift.Result<SandboxResult, SandboxError>
          do throws(SandboxError) {
            outcome = .success(
              try sandbox.runOnce(
                .code(Sessions.driverSource), mountDirectory: mountDirectory, timeout: nil, stdin: [],
                environment: environment, cancellation: cancellation, session: link))
          } catch {
            outcome = .failure(error)
          }
          let reason: String
          switch outcome {
          case .success(let result): reason = link.endReason ?? Sessions.describeEnd(result)
          case .failure(let error): reason = error.description
          }
          for cell in link.stopTakingRequests(reason: reason) {
            _ = cell.done(Lifecycle.SessionLink.CellOutcome(reply: nil, ended: reason, neverStarted: true))
          }
          switch outcome {
          case .failure(let error): once.resume(.failure(error))
          case .success(let result):
            once.resume(
              .failure(
                .sessionEnded(reason: "the interpreter ended before it was ready: \(Sessions.describeEnd(result))")))
          }
          state.finish(try? outcome.get())
        }
        if !started { once.resume(.failure(.system(call: "pthread_create", path: nil, errno: EAGAIN))) }
      }
    } onCancel: {
      cancellation.fire()
    }
    try opened.get()
    return session
  }

  /// A session's parts: the driver that runs cells inside the sandbox, and the host's reading of
  /// what it sends back (untrusted: the driver runs in the payload's own interpreter).
  enum Sessions {
    /// What a session's open and close wait on; thread-safe.
    final class State: @unchecked Sendable {  // every field is guarded by `lock`
      private let lock = Sys.Mutex()
      private var cells = 0
      private var ended = false
      private var result: SandboxResult? = nil
      private var waiters: [CheckedContinuation<SandboxResult?, Never>] = []

      func nextCellID() -> Int {
        lock.withLock {
          cells += 1
          return cells
        }
      }

      /// The session's thread is done: the sandbox is gone and the mount dir finished.
      func finish(_ result: SandboxResult?) {
        let waiting = lock.withLock {
          ended = true
          self.result = result
          defer { waiters = [] }
          return waiters
        }
        for waiter in waiting { waiter.resume(returning: result) }
      }

      func waitForEnd() async -> SandboxResult? {
        await withCheckedContinuation { continuation in
          let now: SandboxResult?? = lock.withLock {
            if ended { return .some(result) }
            waiters.append(continuation)
            return nil
          }
          if let now { continuation.resume(returning: now) }
        }
      }
    }

    /// Resumes a continuation once, whichever of several ways gets there first.
    final class Once: @unchecked Sendable {  // `continuation` is guarded by `lock`
      private let lock = Sys.Mutex()
      private var continuation: CheckedContinuation<Swift.Result<Void, SandboxError>, Never>?
      init(_ continuation: CheckedContinuation<Swift.Result<Void, SandboxError>, Never>) {
        self.continuation = continuation
      }
      func resume(_ value: Swift.Result<Void, SandboxError>) {
        let taken = lock.withLock {
          defer { continuation = nil }
          return continuation
        }
        taken?.resume(returning: value)
      }
    }

    /// How a session's whole run ended, in words.
    static func describeEnd(_ result: SandboxResult) -> String {
      if let limit = result.limitHit { return "it hit the \(limit.rawValue) limit" }
      let tail = String(
        Sys.printable(Sys.lastLine(of: String(decoding: result.stderr.suffix(4096), as: UTF8.self))).prefix(200))
      let how =
        result.returnCode < 0 ? "killed by signal \(-result.returnCode)" : "exited with status \(result.returnCode)"
      return tail.isEmpty ? "the interpreter \(how)" : "the interpreter \(how) (\(tail))"
    }

    /// Caps the driver keeps to, which the host checks again: a reply stays below the frame cap.
    static let valueLimitBytes = 1 << 20
    static let imageLimitBytes = 16 << 20
    static let imageLimitCount = 32
    static let tracebackLimitLines = 200

    /// The Python that runs cells (the session's payload). It keeps the gate's channel (fd 3),
    /// says "R" when ready, then for each cell frame runs the code in one `__main__` namespace,
    /// the last expression evaluated as a REPL would show it, and answers with a "D" frame of
    /// fields (tag byte, 4-byte length, bytes): `S` ok|error, `v` the value's repr, `t` `m` the
    /// exception's type and message, `l` traceback lines, `i` PNG images. SIGINT raises
    /// KeyboardInterrupt only while a cell runs. matplotlib uses Agg; `plt.show()` and figures
    /// left open come back as images, and so does `display(x)` for PNG bytes, a figure or
    /// anything with `_repr_png_` (anything else is printed).
    static let driverSource = """
      import builtins, os, signal, sys

      def _driver():
          import ast, io, linecache, traceback, types
          channel = 3
          os.set_inheritable(channel, False)
          os.environ.setdefault("MPLBACKEND", "Agg")
          png = b"\\x89PNG\\r\\n\\x1a\\n"
          images = []
          # 0 waiting for a cell; 1 reading or preparing it; 2 running its code; 3 answering.
          # The host interrupts only after the "S" that starts 2; SIGINT raises only in 2, is
          # kept in 1 (the code then does not run), and is dropped in 0 and 3 (its cell is over).
          phase = [0]
          interrupted = [False]

          def read_exactly(count):
              chunks = []
              while count:
                  chunk = os.read(channel, min(count, 1 << 20))
                  if not chunk:
                      os._exit(0)  # the host closed the channel: the session is over
                  chunks.append(chunk)
                  count -= len(chunk)
              return b"".join(chunks)

          def send(kind, fields=()):
              body = kind + b"".join(tag + len(data).to_bytes(4, "big") + data for tag, data in fields)
              view = memoryview(len(body).to_bytes(4, "big") + body)
              while view:
                  view = view[os.write(channel, view):]

          def text(value, limit):
              data = value.encode("utf-8", "backslashreplace")
              return data if len(data) <= limit else data[:limit - 3].decode("utf-8", "ignore").encode() + b"..."

          def image(data):
              if len(images) >= \(imageLimitCount) or sum(map(len, images)) + len(data) > \(imageLimitBytes):
                  print("sandbox: an image was dropped: a cell returns at most \(imageLimitCount) images, \(imageLimitBytes >> 20) MiB", file=sys.stderr)
              else:
                  images.append(bytes(data))

          def figure_png(figure):
              buffer = io.BytesIO()
              figure.savefig(buffer, format="png")
              image(buffer.getvalue())

          def figures():
              plt = sys.modules.get("matplotlib.pyplot")
              if plt is None:
                  return
              try:
                  for number in plt.get_fignums():
                      figure_png(plt.figure(number))
                  plt.close("all")
              except Exception as error:
                  print(f"sandbox: a figure could not be rendered: {error!r}", file=sys.stderr)

          def display(*objects):
              for item in objects:
                  if isinstance(item, (bytes, bytearray)) and bytes(item[:8]) == png:
                      image(item)
                  elif hasattr(item, "savefig"):
                      figure_png(item)
                  elif hasattr(item, "_repr_png_") and item._repr_png_() is not None:
                      image(item._repr_png_())
                  else:
                      print(repr(item))

          class PyplotHook:
              def find_spec(self, name, path=None, target=None):
                  if name != "matplotlib.pyplot":
                      return None
                  import importlib.machinery
                  spec = importlib.machinery.PathFinder.find_spec(name, path)
                  if spec is not None and spec.loader is not None:
                      load = spec.loader.exec_module
                      def exec_module(module):
                          load(module)
                          module.show = lambda *args, **kwargs: figures()
                      spec.loader.exec_module = exec_module
                  return spec

          def interrupt(signum, frame):
              if phase[0] == 2:
                  raise KeyboardInterrupt
              if phase[0] == 1:
                  interrupted[0] = True

          def describe(error, parsing):
              kind = type(error)
              name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
              try:
                  message = str(error)
              except Exception:
                  message = "<unprintable>"
              try:
                  frames = [] if parsing else [f for f in traceback.extract_tb(error.__traceback__) if f.filename != __file__]
                  lines = ["Traceback (most recent call last):\\n"] if frames else []
                  lines += traceback.StackSummary.from_list(frames).format()
                  lines = "".join(lines + traceback.format_exception_only(kind, error)).splitlines()
              except Exception:
                  lines = [f"{name}: {message}"]
              fields = [(b"t", text(name, 4096)), (b"m", text(message, \(valueLimitBytes)))]
              return fields + [(b"l", text(line, 4096)) for line in lines[-\(tracebackLimitLines):]]

          sys.meta_path.insert(0, PyplotHook())
          builtins.display = display
          main = types.ModuleType("__main__")
          main.__dict__["__builtins__"] = builtins
          sys.modules["__main__"] = main
          count = 0
          signal.signal(signal.SIGINT, interrupt)
          send(b"R")
          while True:
              phase[0] = 0
              length = int.from_bytes(read_exactly(4), "big")
              phase[0] = 1
              interrupted[0] = False
              signal.signal(signal.SIGINT, interrupt)  # a cell may have replaced it
              frame = read_exactly(length)
              token, code = frame[:16], frame[16:].decode("utf-8", "replace")
              count += 1
              name = f"<cell {count}>"
              linecache.cache[name] = (len(code), None, code.splitlines(True), name)
              images.clear()
              fields = []
              parsing = True
              try:
                  try:
                      tree = ast.parse(code, name, "exec")
                      parsing = False
                      last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
                      send(b"S")  # the code starts: from now on the host may interrupt it
                      phase[0] = 2
                      if interrupted[0]:
                          raise KeyboardInterrupt
                      exec(compile(tree, name, "exec"), main.__dict__)
                      value = None if last is None else eval(compile(ast.Expression(last.value), name, "eval"), main.__dict__)
                  finally:
                      phase[0] = 3
                  fields.append((b"S", b"ok"))
                  if value is not None:
                      builtins._ = value
                      fields.append((b"v", text(repr(value), \(valueLimitBytes))))
              except BaseException as error:
                  phase[0] = 3
                  fields = [(b"S", b"error")] + describe(error, parsing)
              for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
                  try:
                      stream.flush()
                  except BaseException:
                      pass
              figures()
              send(b"D" + token, fields + [(b"i", data) for data in images])

      _driver()

      """

    /// A cell's result from what the host saw and the driver's reply, which is checked field by
    /// field and never trusted further; returns why the reply is malformed (the session then ends).
    static func makeCellResult(_ outcome: Lifecycle.SessionLink.CellOutcome, link: Lifecycle.SessionLink) -> (
      Swift.Result<SandboxCellResult, SandboxError>, String?
    ) {
      if outcome.neverStarted {
        return (.failure(outcome.ended.map { .sessionEnded(reason: $0) } ?? .runCancelled), nil)
      }
      var result = SandboxCellResult(
        stdout: outcome.stdout, stderr: outcome.stderr, duration: outcome.duration, timedOut: outcome.interrupted,
        outputTruncated: outcome.outputTruncated, cpuTime: outcome.cpuTime, sessionEnded: outcome.ended,
        number: outcome.number, memoryPeakBytes: outcome.memoryPeakBytes)
      var problem: String? = nil
      if let reply = outcome.reply {
        do throws(SandboxError) {
          try decodeReply(reply, into: &result)
        } catch {
          problem = "its reply is malformed: \(error.description)"
          result.sessionEnded = problem
        }
      }
      if let after = link.snapshotMountDirectory() {
        let changes = Changes.makeChangeList(
          before: link.lastSnapshot ?? Changes.Snapshot(directories: [:]), after: after, excluding: nil,
          limits: link.limits)
        link.lastSnapshot = after
        (result.changedPaths, result.deletedPaths, result.changesTruncated) =
          (changes.changed, changes.deleted, changes.truncated)
      }
      switch outcome.stoppedBy {
      case .timeout: result.timedOut = true
      case .disk: result.limitHit = .disk
      case .tmpfs: result.limitHit = .tmpfs
      default: break
      }
      if result.timedOut {
        result.limitHit = .timeout
      } else if outcome.oomKilled {
        result.limitHit = .memory  // the kernel's word
      } else if result.limitHit == nil && result.exception?.type == "MemoryError" {
        result.limitHit = .memory  // advisory: the payload's word
      }
      return (.success(result), problem)
    }

    /// Reads the driver's fields into `result`.
    /// - Throws: `SandboxError.invalidCell` naming what breaks the protocol.
    static func decodeReply(_ reply: [UInt8], into result: inout SandboxCellResult) throws(SandboxError) {
      var offset = 0
      var status: [UInt8]? = nil
      var type: String? = nil
      var message = ""
      var traceback: [String] = []
      var imageBytes = 0
      while offset < reply.count {
        guard reply.count - offset >= 5 else { throw .invalidCell(reason: "a field header is cut short") }
        let tag = reply[offset]
        let length = reply[(offset + 1)..<(offset + 5)].reduce(0) { $0 << 8 | Int($1) }
        offset += 5
        guard length <= reply.count - offset else { throw .invalidCell(reason: "a field runs past the frame") }
        let data = Array(reply[offset..<(offset + length)])
        offset += length
        let words = String(decoding: data, as: UTF8.self)
        switch tag {
        case UInt8(ascii: "S") where status == nil: status = data
        case UInt8(ascii: "v") where result.value == nil && length <= valueLimitBytes: result.value = words
        case UInt8(ascii: "t") where type == nil && length <= 4096: type = words
        case UInt8(ascii: "m") where length <= valueLimitBytes: message = words
        case UInt8(ascii: "l") where traceback.count < tracebackLimitLines && length <= 4096:
          traceback.append(words)
        case UInt8(ascii: "i") where result.images.count < imageLimitCount && imageBytes + length <= imageLimitBytes:
          imageBytes += length
          result.images.append(data)
        default: throw .invalidCell(reason: "a field (tag \(tag), \(length) bytes) the protocol does not allow there")
        }
      }
      switch status.map({ String(decoding: $0, as: UTF8.self) }) {
      case "ok"?: guard type == nil else { throw .invalidCell(reason: "an ok reply with an exception") }
      case "error"?:
        guard let type, result.value == nil else { throw .invalidCell(reason: "an error reply without its type") }
        result.exception = SandboxCellException(type: type, message: message, traceback: traceback)
      default: throw .invalidCell(reason: "a reply without a status")
      }
    }
  }
}

// MARK: - Warm pool

/// What a pool's run did, and where it ran.
public struct SandboxPoolRun: Sendable {
  /// The run, as `Sandbox.run` reports it; `duration` counts from the dispatch (a slot's start and
  /// preloads are the pool's, not the run's).
  public var result: SandboxResult
  /// The run got a pre-started sandbox, its preloads imported; false: no slot was ready, and it
  /// started cold (a fresh sandbox without preloads, as `Sandbox.run` starts one).
  public var warm: Bool
  /// The run's own mount dir (bound at /mnt), made by the pool for this run alone (with
  /// `Options.mountDirectories`), or nil. It is the caller's now: read it with `readOutput`;
  /// dropping the last reference removes it.
  public var mountDirectory: SandboxMountDirectory?
}

/// Sandboxes started ahead of demand: bwrap up, the interpreter started, `preload` imported, each
/// waiting for one payload. A slot serves exactly one run and is then thrown away, so isolation is
/// a cold run's: no state, process or file carries from one payload to the next. The pool refills
/// in the background; when no slot is ready, a run starts cold, with no error.
///
/// Bounds: `size` idle sandboxes (each one interpreter with its preloads: 9 MB resident bare,
/// 68 MB with pandas, measured), each holding one slot of `Sandbox.Admission` and one thread for
/// its whole life, and the same budgets as a run (the preloads count against them). `close()`,
/// deinit and the end of this process end every slot, with a run's lifecycle guarantees.
public final class SandboxPool: @unchecked Sendable {  // immutable; `core` locks itself
  /// A pool's shape.
  public struct Options: Sendable, Equatable {
    /// How many sandboxes wait ready (0: every run starts cold), at most `SandboxPool.largestSize`.
    public var size: Int
    /// Modules each slot imports before it is ready (dotted names: `numpy`, `matplotlib.pyplot`),
    /// under every layer and limit of the run; a payload finds them in `sys.modules`.
    public var preload: [String]
    /// Variables of every slot's interpreter, set when it starts (a run's own `environment`
    /// comes later: it cannot hold what only a process's start reads, see `Pool.readAtStart`).
    public var environment: [String: String]
    /// Each slot binds a fresh `SandboxMountDirectory` at /mnt, handed to the caller with the
    /// result; without it /mnt is the run's own tmpfs, gone with it.
    public var mountDirectories: Bool

    public init(
      size: Int = 2, preload: [String] = [], environment: [String: String] = [:], mountDirectories: Bool = false
    ) {
      self.size = size
      self.preload = preload
      self.environment = environment
      self.mountDirectories = mountDirectories
    }
  }

  /// The most slots one pool keeps.
  public static let largestSize = 64
  /// The options the pool was made with.
  public let options: Options
  let core: Sandbox.Pool.Core

  /// Checks the options and starts filling the pool (it returns at once; see `waitUntilReady`).
  /// - Throws: `SandboxError.invalidPool` for a size past the bounds or a preload that is not a
  ///   module name; `.invalidEnvironment` for a variable that cannot be passed.
  public init(sandbox: Sandbox, options: Options = Options()) throws(SandboxError) {
    if sandbox.config.requiresVerifiedHost { try SelfTestGate.requirePassed() }  // preloads run venv code
    try SandboxPool.check(options)
    _ = try Sandbox.Bwrap.makePayloadEnvironment(venvRoot: sandbox.venv.root, extra: options.environment)
    try Sandbox.Pool.Core.reserve(options.size)
    self.options = options
    core = Sandbox.Pool.Core(sandbox: sandbox, options: options)
    core.fill()
  }

  deinit { core.shutdown() }

  /// Refuses a size past the bounds or a preload that is not a module name.
  static func check(_ options: Options) throws(SandboxError) {
    guard (0...SandboxPool.largestSize).contains(options.size) else {
      throw .invalidPool(reason: "its size is \(options.size); it must be 0 to \(SandboxPool.largestSize)")
    }
    if let bad = options.preload.first(where: { !Sandbox.Pool.isModuleName($0) }) {
      throw .invalidPool(reason: "'\(Sandbox.Sys.printable(bad))' is not a module name to preload")
    }
  }

  /// A run's inputs, checked against the pool's limits (nothing runs when they fail).
  func makeRequest(
    _ payload: SandboxPayload, timeout: Duration?, stdin: [UInt8], environment: [String: String],
    arguments: [String], files: [String: [UInt8]]
  ) throws(SandboxError) -> Sandbox.Pool.Request {
    try Sandbox.Pool.Request(
      payload, timeout: timeout, stdin: stdin, environment: environment, arguments: arguments, files: files,
      fileSizeLimit: core.sandbox.config.limits.fileSizeBytes)
  }

  /// How many slots are ready now.
  public var readyCount: Int { core.readyCount }

  /// Waits until a slot is ready: returns at once for a size-0 pool.
  /// - Throws: why a slot could not start (a preload that fails to import, a setup error), or
  ///   `.invalidPool` once the pool is closed.
  public func waitUntilReady() async throws(SandboxError) {
    try await core.waitUntilReady()
  }

  /// Runs `payload` in a ready slot, or cold when none is ready (the result says which).
  ///
  /// As `Sandbox.run`, with what a pre-started sandbox can still take: `files` are written to
  /// /mnt before the payload starts (paths relative to it; they are not reported as changes),
  /// `stdin` is at most the frame cap with the code and files (32 MiB), and `environment` is set
  /// before the payload runs. Cancelling the Task kills the sandbox.
  /// - Throws: `SandboxError` for bad input (nothing runs), `.invalidPool` when the pool is
  ///   closed, or when the sandbox could not be set up.
  public func run(
    _ payload: SandboxPayload, timeout: Duration? = nil, stdin: [UInt8] = [], environment: [String: String] = [:],
    arguments: [String] = [], files: [String: [UInt8]] = [:]
  ) async throws(SandboxError) -> SandboxPoolRun {
    let request = try makeRequest(
      payload, timeout: timeout, stdin: stdin, environment: environment, arguments: arguments, files: files)
    return try await core.run(request, onOutput: nil)
  }

  /// The blocking `run`, for code that is not async.
  @available(*, noasync, message: "blocks its thread: use the async run from async code")
  public func run(
    _ payload: SandboxPayload, timeout: Duration? = nil, stdin: [UInt8] = [], environment: [String: String] = [:],
    arguments: [String] = [], files: [String: [UInt8]] = [:]
  ) throws(SandboxError) -> SandboxPoolRun {
    let request = try makeRequest(
      payload, timeout: timeout, stdin: stdin, environment: environment, arguments: arguments, files: files)
    let handoff = Sandbox.Sys.Handoff<Swift.Result<SandboxPoolRun, SandboxError>>()
    core.dispatch(request, onOutput: nil, control: Sandbox.Pool.Control()) { handoff.put($0) }
    return try handoff.take().get()
  }

  /// `run`, with the output delivered as it arrives (as `Sandbox.runStreaming`); ending the
  /// iteration early kills the sandbox.
  public func runStreaming(
    _ payload: SandboxPayload, timeout: Duration? = nil, stdin: [UInt8] = [], environment: [String: String] = [:],
    arguments: [String] = [], files: [String: [UInt8]] = [:]
  ) -> AsyncStream<SandboxEvent<SandboxPoolRun>> {
    Sandbox.Sys.eventStream { onOutput throws(SandboxError) in
      let request = try self.makeRequest(
        payload, timeout: timeout, stdin: stdin, environment: environment, arguments: arguments, files: files)
      return try await self.core.run(request, onOutput: onOutput)
    }
  }

  /// Ends every slot, idle or running (a running payload's result says `cancelled`), and returns
  /// once each is gone with its host work done; later runs throw `.invalidPool`. Safe to call twice.
  public func close() async {
    core.shutdown()
    await core.waitForSlots()
  }
}

extension Sandbox {
  /// A pool's parts: its slots, the driver that waits in each, and the dispatch.
  enum Pool {
    /// A preload name: dotted Python identifiers of ASCII letters, digits and `_`.
    static func isModuleName(_ name: String) -> Bool {
      let parts = name.split(separator: ".", omittingEmptySubsequences: false)
      return name.utf8.count <= 256
        && parts.allSatisfy { part in
          guard let first = part.utf8.first, !(first >= 0x30 && first <= 0x39) else { return false }
          return part.utf8.allSatisfy(Sys.isASCIIWordByte)
        }
    }

    /// Why a slot ended without running a payload: a preload that failed (the driver's status 3),
    /// or the sandbox's end before it was ready (or, `dispatched`, before the payload started).
    static func startFailure(_ outcome: Swift.Result<SandboxResult, SandboxError>, dispatched: Bool = false)
      -> SandboxError
    {
      switch outcome {
      case .failure(let error): return error
      case .success(let result)
      where result.returnCode == (dispatched ? inputsFailedStatus : preloadFailedStatus) && result.limitHit == nil:
        let line = Sys.printable(Sys.lastLine(of: String(decoding: result.stderr.suffix(4096), as: UTF8.self)))
        return .invalidPool(reason: String(line.prefix(300)))
      case .success(let result):
        let when = dispatched ? "before its payload started" : "before it was ready"
        return .sandboxSetupFailed(message: "a pool's sandbox ended \(when): \(Sessions.describeEnd(result))")
      }
    }

    /// The driver's exit status when a preload fails to import, and when a run's inputs cannot
    /// be put in place (before the payload, so the caller's error, not the payload's).
    static let preloadFailedStatus: Int32 = 3
    static let inputsFailedStatus: Int32 = 125

    /// The Python that waits in a slot (its payload): it imports `preload`, says "R", reads one
    /// frame (the run: fields of a tag byte, a 4-byte length and bytes: `c` the code, `p` its
    /// path, `a` arguments, `e` variables, `f` files as path NUL bytes, `i` stdin), puts the
    /// inputs in place, says "S", and once the host has closed the channel runs the payload as
    /// `python PATH` would: a fresh `__main__`, `sys.argv`, `sys.path[0]`, tracebacks without
    /// the driver's frame. It ends as Python's exit does (non-daemon threads joined, atexit
    /// handlers, the payload's `__main__` and the modules it imported cleared and collected,
    /// streams flushed), then leaves with `os._exit`: the teardown of the preloaded modules,
    /// which alone costs pandas 60 ms, is skipped.
    static func driverSource(preload: [String]) -> String {
      let names = preload.map { "\"\($0)\"" }.joined(separator: ", ")  // module names: no quote can occur
      return """
        import atexit, gc, os, sys

        def _sandbox_slot(preload):
            channel = 3
            os.set_inheritable(channel, False)

            def read_exactly(count):
                chunks = []
                while count:
                    chunk = os.read(channel, min(count, 1 << 20))
                    if not chunk:
                        os._exit(0)  # the host closed the channel: the slot is not wanted
                    chunks.append(chunk)
                    count -= len(chunk)
                return b"".join(chunks)

            def send(kind):
                os.write(channel, len(kind).to_bytes(4, "big") + kind)

            def write_all(fd, data):
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]

            for name in preload:
                try:
                    __import__(name)
                except BaseException as error:
                    os.write(2, f"the preload {name!r} failed: {type(error).__name__}: {error}\\n".encode())
                    os._exit(\(preloadFailedStatus))
            for stream in (sys.stdout, sys.stderr):  # what the preloads printed goes out now: the host drops it
                stream.flush()
            compile("pass", "<warm>", "exec")  # the compiler's first use costs 0.6 ms: not the payload's
            gc.freeze()  # the interpreter's and the preloads' objects: never scanned again
            send(b"R")
            frame = read_exactly(int.from_bytes(read_exactly(4), "big"))
            request = {"a": [], "e": [], "f": []}
            offset = 16  # a session's token: unused by a slot
            while offset < len(frame):
                tag = chr(frame[offset])
                length = int.from_bytes(frame[offset + 1:offset + 5], "big")
                data = frame[offset + 5:offset + 5 + length]
                offset += 5 + length
                if tag in ("a", "e", "f"):
                    request[tag].append(data)
                else:
                    request[tag] = data
            try:
                for entry in request["e"]:
                    name, _, value = entry.partition(b"=")
                    os.environb[name] = value
                    if name == b"TZ":
                        import time
                        time.tzset()
                for entry in request["f"]:
                    relative, _, content = entry.partition(b"\\0")
                    path = b"/mnt/" + relative
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
                    write_all(fd, content)
                    os.close(fd)
                if "c" in request:  # the payload's file, where /run/sandbox/main.py points
                    fd = os.open("\(Bwrap.Layout.warmCodePath)", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
                    write_all(fd, request["c"])
                    os.close(fd)
                if "i" in request:
                    fd = os.memfd_create("stdin", 0)
                    write_all(fd, request["i"])
                    os.lseek(fd, 0, 0)
                    os.dup2(fd, 0)
                    os.close(fd)
                path = request["p"].decode("utf-8", "surrogateescape")
                source = request["c"] if "c" in request else open(path, "rb").read()
            except BaseException as error:
                os.write(2, f"the run's inputs could not be put in place: {error!r}\\n".encode())
                os._exit(\(inputsFailedStatus))
            send(b"S")
            while os.read(channel, 4096):  # the host closes the channel: the payload's start
                pass
            os.close(channel)
            return path, source, [argument.decode("utf-8", "surrogateescape") for argument in request["a"]]

        def _sandbox_run(path, source, arguments):
            import builtins
            main = type(sys)("__main__")
            main.__file__ = path
            main.__cached__ = None
            main.__builtins__ = builtins
            sys.modules["__main__"] = main
            sys.argv[:] = [path] + arguments
            sys.path[0] = os.path.dirname(path)
            before = set(sys.modules)
            builtin_names, sys_names = set(vars(builtins)), set(vars(sys))
            # Ours, before the payload can replace them: its own os._exit = ... changes nothing here.
            import _io, _signal
            leave, write, kill, getpid = os._exit, os.write, os.kill, os.getpid
            collect, get_objects, run_exitfuncs = gc.collect, gc.get_objects, atexit._run_exitfuncs
            base, text = _io._IOBase, _io.TextIOWrapper
            status, interrupted = 0, False

            def step(action):  # payload code runs in each (threads, handlers, finalisers): nothing escapes
                try:
                    action()
                except BaseException:
                    pass

            try:
                exec(compile(source, path, "exec"), main.__dict__)
            except SystemExit as stop:
                code = stop.code
                if code is None:
                    status = 0
                elif isinstance(code, int):
                    status = code & 0xFF if -(1 << 63) <= code < (1 << 63) else 255  # C's long, as Python's exit
                else:
                    status = 1
                    step(lambda: print(code, file=sys.stderr))
            except BaseException as error:
                tail = error.__traceback__.tb_next if error.__traceback__ else None  # without our frame

                def report():
                    if sys.excepthook is not sys.__excepthook__:
                        sys.excepthook(type(error), error, tail)
                    else:
                        import traceback
                        traceback.print_exception(type(error), error, tail)

                step(report)
                status, interrupted = 1, isinstance(error, KeyboardInterrupt)
            threading = sys.modules.get("threading")
            if threading is not None:
                step(threading._shutdown)
            step(run_exitfuncs)
            # What the payload hung on builtins and sys first (its finalisers still find their
            # globals), then its `__main__` and its own modules (not the interpreter's or the
            # venv's), newest first: what they hold is finalised, flushed and closed, as at
            # Python's exit.
            for namespace, kept in ((vars(builtins), builtin_names), (vars(sys), sys_names)):
                for name in [name for name in list(namespace) if name not in kept]:
                    step(lambda: namespace.pop(name, None))
            step(main.__dict__.clear)
            prefixes = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix})
            for name in reversed([name for name in list(sys.modules) if name not in before]):
                module = sys.modules.get(name)
                where = getattr(module, "__file__", None)
                if isinstance(where, str) and not where.startswith(prefixes):
                    step(module.__dict__.clear)
            step(collect)
            # What a teardown would flush: every file object still open (text wrappers first, as
            # they write into their buffers), then C's stdio when C code other than the standard
            # library's is loaded (it may have printf'd).
            files = []
            step(lambda: files.extend(o for o in get_objects() if isinstance(o, base) and o is not sys.stdout and o is not sys.stderr))
            for item in [o for o in files if isinstance(o, text)] + [o for o in files if not isinstance(o, text)]:
                step(lambda: item.closed or item.flush())
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except BaseException as error:
                    if stream is sys.stdout:  # Python's exit: the message, then status 120
                        step(lambda: write(2, f"Exception ignored in: {stream!r}\\n{type(error).__name__}: {error}\\n".encode("utf-8", "backslashreplace")))
                        status = 120
            dynload = os.path.join(os.path.dirname(os.__file__), "lib-dynload")

            def flush_c():
                if "ctypes" in sys.modules or any(
                    isinstance(getattr(m, "__file__", None), str) and m.__file__.endswith(".so") and not m.__file__.startswith(dynload)
                    for m in list(sys.modules.values())
                ):
                    import ctypes
                    ctypes.CDLL(None).fflush(None)

            step(flush_c)
            if interrupted:  # as Python does: the process dies of SIGINT
                step(lambda: _signal.signal(_signal.SIGINT, _signal.SIG_DFL))
                step(lambda: kill(getpid(), _signal.SIGINT))
            leave(status)

        _sandbox_run(*_sandbox_slot((\(names)\(preload.count == 1 ? "," : ""))))

        """
    }

    /// A variable that only a process's start reads (the interpreter's: `PYTHON*`, its locale and
    /// UTF-8 mode; the C library's: the loader, malloc, tunables): a slot has started already.
    static func readAtStart(_ name: String) -> Bool {
      ["PYTHON", "LD_", "LC_", "MALLOC_"].contains { name.hasPrefix($0) }
        || ["LANG", "LANGUAGE", "GLIBC_TUNABLES"].contains(name)
    }

    /// One run's request, checked: nothing of it reaches a sandbox unless all of it is valid.
    struct Request {
      var frame: [UInt8]
      var timeout: Duration

      init(
        _ payload: SandboxPayload, timeout: Duration?, stdin: [UInt8], environment: [String: String],
        arguments: [String], files: [String: [UInt8]], fileSizeLimit: Int? = nil
      ) throws(SandboxError) {
        if let timeout { try Sandbox.checkTimeout(timeout) }
        self.timeout = timeout ?? Sandbox.longestTimeout
        var fields: [(UInt8, [UInt8])] = []
        switch payload {
        case .code(let source):
          fields += [(UInt8(ascii: "c"), Array(source.utf8)), (UInt8(ascii: "p"), Array(Bwrap.Layout.codePath.utf8))]
        case .script(let path):
          let relative = try Preflight.scriptRelativePath(path)
          guard files[relative] != nil else {
            throw .invalidScriptPath(
              path: path, reason: "a pool's run gets a fresh /mnt: pass the script in `files` as \"\(relative)\"")
          }
          fields.append((UInt8(ascii: "p"), Array(path.utf8)))
        }
        for argument in arguments {
          guard !argument.utf8.contains(0) else { throw .invalidArgument(argument) }
          fields.append((UInt8(ascii: "a"), Array(argument.utf8)))
        }
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) {
          guard Bwrap.isEnvironmentName(name), !value.utf8.contains(0) else { throw .invalidEnvironment(name: name) }
          guard !Pool.readAtStart(name) else {
            throw .invalidPool(
              reason: "\(name) is read when an interpreter starts, before a run: set it in the pool's environment")
          }
          fields.append((UInt8(ascii: "e"), Array("\(name)=\(value)".utf8)))
        }
        for (path, bytes) in files.sorted(by: { $0.key < $1.key }) {
          let parts = path.split(separator: "/", omittingEmptySubsequences: false)
          let shown = Sys.printable(String(path.prefix(200)))
          guard Preflight.isPlainRelativePath(path), !path.utf8.contains(0) else {
            throw .invalidPool(
              reason:
                "the input file '\(shown)' is not a plain path inside /mnt (no '..', '.', empty parts, NUL or leading '/')"
            )
          }
          guard parts.count <= 64, path.utf8.count <= 3000, parts.allSatisfy({ $0.utf8.count <= 255 }) else {
            throw .invalidPool(reason: "the input file '\(shown)' is too deep or too long (64 levels, 255-byte names)")
          }
          if let conflict = parts.indices.dropLast().lazy.map({ parts[...$0].joined(separator: "/") }).first(where: {
            files[$0] != nil
          }) {
            throw .invalidPool(
              reason: "the input file '\(shown)' needs '\(Sys.printable(conflict))' to be a directory, not a file")
          }
          if let largest = fileSizeLimit, bytes.count > largest {
            throw .invalidPool(reason: "the input file '\(shown)' is \(bytes.count) bytes, past the file-size limit")
          }
          fields.append((UInt8(ascii: "f"), Array(path.utf8) + [0] + bytes))
        }
        if !stdin.isEmpty { fields.append((UInt8(ascii: "i"), stdin)) }
        let size = fields.reduce(16) { $0 + 5 + $1.1.count }
        guard size <= Lifecycle.SessionLink.frameLimitBytes, fields.count <= 100_000 else {
          throw .invalidPool(
            reason:
              "its code, files and stdin come to \(size) bytes in \(fields.count) parts, past the \(Lifecycle.SessionLink.frameLimitBytes)-byte cap"
          )
        }
        frame = []
        frame.reserveCapacity(size - 16)
        for (tag, data) in fields {
          frame += [tag] + Sys.bigEndian(UInt32(data.count)) + data
        }
      }
    }

    /// A dispatch's cancellation: whichever comes first, the Task's cancel or a slot to kill.
    final class Control: @unchecked Sendable {  // `slot` and `cancelled` are guarded by `lock`
      private let lock = Sys.Mutex()
      private var slot: Slot? = nil
      private var cancelled = false

      /// Binds the dispatch to `slot`; false when it was cancelled first.
      func bind(_ slot: Slot) -> Bool {
        lock.withLock {
          self.slot = slot
          return !cancelled
        }
      }
      var isCancelled: Bool { lock.withLock { cancelled } }
      func cancel() {
        let slot = lock.withLock {
          cancelled = true
          return self.slot
        }
        slot?.cancellation.fire()
      }
    }

    /// The mount dirs of slots no run has taken yet: still empty, so a process that exits without
    /// `close()` removes them at its exit (`rmdir`, which removes nothing else). A run's own dir is
    /// the caller's (its `SandboxMountDirectory` removes it).
    enum IdleDirectories {
      private static let lock = Sys.Mutex()
      /// Guarded by `lock`.
      nonisolated(unsafe) private static var directories: [ObjectIdentifier: (path: String, parent: String)] = [:]
      nonisolated(unsafe) private static var armed = false  // guarded by `lock`

      static func add(_ directory: SandboxMountDirectory) {
        lock.withLock {
          if !armed { armed = atexit { Sandbox.Pool.IdleDirectories.removeAll() } == 0 }
          directories[ObjectIdentifier(directory)] = (directory.path, directory.parent)
        }
      }

      static func remove(_ directory: SandboxMountDirectory) {
        _ = lock.withLock { directories.removeValue(forKey: ObjectIdentifier(directory)) }
      }

      static func removeAll() {
        for (path, parent) in lock.withLock({ Array(directories.values) }) {
          rmdir(path)
          rmdir(parent)
        }
      }
    }

    /// How a slot's run ended, for the dispatch that used it.
    enum Ending {
      /// The run's code never reached the slot (it died first): the dispatch tries again, cold.
      case notSent
      case ran(Swift.Result<SandboxResult, SandboxError>, started: Bool)
    }

    /// One sandbox of the pool, from spawn until every process of it is gone (its own thread).
    final class Slot: @unchecked Sendable {  // `onEnd` is guarded by `lock`
      let link: Lifecycle.SessionLink
      let cancellation = Spawner.CancellationSignal()
      let mountDirectory: SandboxMountDirectory?
      /// Started ahead of demand, with the preloads (else for one cold run).
      let warm: Bool
      private let lock = Sys.Mutex()
      private var onEnd: ((Ending) -> Void)? = nil

      init(warm: Bool, mountDirectory: SandboxMountDirectory?) throws(SandboxError) {
        // DECISIONS 16: a slot is never reaped for being idle.
        link = try Lifecycle.SessionLink(lifetime: nil, idleTimeout: nil, warm: true)
        self.warm = warm
        self.mountDirectory = mountDirectory
        if let mountDirectory { IdleDirectories.add(mountDirectory) }
      }

      deinit { if let mountDirectory { IdleDirectories.remove(mountDirectory) } }

      /// Sends the run; `onEnd` is called once, when the slot is over.
      func dispatch(
        _ request: Request, onOutput: ((_ isStderr: Bool, _ bytes: [UInt8]) -> Void)?, onEnd: @escaping (Ending) -> Void
      ) {
        var cell = Lifecycle.SessionLink.Cell(id: 1, code: request.frame, timeout: request.timeout) { _ in nil }
        cell.onOutput = onOutput
        if let mountDirectory { IdleDirectories.remove(mountDirectory) }  // the run's now
        lock.withLock { self.onEnd = onEnd }
        if link.send(.cell(cell)) != nil { finish(.notSent) }
      }

      /// The slot is over for its dispatch (its thread is done, or the run could not be sent):
      /// `onEnd` hears of it once; before a dispatch there is nobody to tell.
      func finish(_ end: Ending) {
        let callback = lock.withLock {
          defer { onEnd = nil }
          return onEnd
        }
        callback?(end)
      }
    }

    /// The pool's state: ready slots, every slot alive, the failed starts in a row; thread-safe.
    final class Core: @unchecked Sendable {  // every mutable field is guarded by `lock`
      let sandbox: Sandbox
      let options: SandboxPool.Options
      /// What a slot runs: the driver with the preloads (warm), or without them (a cold start).
      let driver: SandboxPayload
      let coldDriver: SandboxPayload = .code(Pool.driverSource(preload: []))
      private let lock = Sys.Mutex()
      private var ready: [Slot] = []
      /// Warm slots alive: starting, ready or running (at most `size`).
      private var warmSlots = 0
      /// Every slot whose thread runs, idle or not (close ends them all).
      private var alive: [ObjectIdentifier: Slot] = [:]
      private var closed = false
      /// Slots that ended before they were ready, in a row; reset by a ready one.
      private var failures = 0
      private var lastFailure: SandboxError? = nil
      private var readyWaiters: [CheckedContinuation<Swift.Result<Void, SandboxError>, Never>] = []
      private var endWaiters: [CheckedContinuation<Void, Never>] = []

      /// The slots every open pool of this process may hold: together they must leave
      /// `Sandbox.Admission` at least one slot, or every other run would wait for ever.
      private static let reservations = Sys.Mutex()
      nonisolated(unsafe) private static var reserved = 0  // guarded by `reservations`

      static func reserve(_ size: Int) throws(SandboxError) {
        try reservations.withLock { () throws(SandboxError) in
          let admission = Sandbox.Admission.effectiveMaximum()
          guard reserved + size < admission else {
            throw .invalidPool(
              reason:
                "a pool of \(size) beside the \(reserved) slots of the pools already open would hold every one of Sandbox.Admission's \(admission) slots (a slot holds one for its life), and every other run would wait: close a pool, raise Sandbox.Admission.maximum (and RLIMIT_NOFILE), or make the pool smaller"
            )
          }
          reserved += size
        }
      }

      static func release(_ size: Int) { reservations.withLock { reserved -= size } }

      /// How many slots in a row may fail to start before `waitUntilReady` reports it.
      static let attempts = 3
      static func isHopeless(_ error: SandboxError, failures: Int) -> Bool {
        if case .invalidPool = error { return true }
        return failures >= attempts
      }

      init(sandbox: Sandbox, options: SandboxPool.Options) {
        self.sandbox = sandbox
        self.options = options
        driver = .code(Pool.driverSource(preload: options.preload))
      }

      var readyCount: Int { lock.withLock { ready.count } }

      /// Starts slots until `size` are ready or starting.
      func fill() {
        let wanted = lock.withLock { () -> Int in
          guard !closed else { return 0 }
          let count = max(0, options.size - warmSlots)
          warmSlots += count
          return count
        }
        for _ in 0..<wanted {
          startSlot(warm: true) { [self] slot in
            let keep = lock.withLock { () -> Bool in
              failures = 0
              lastFailure = nil
              guard !closed else { return false }
              ready.append(slot)
              return true
            }
            if !keep { slot.cancellation.fire() }
            resumeReadyWaiters(.success(()))
          } onFailure: { [self] error in
            let (delay, givingUp) = lock.withLock { () -> (Int, Bool) in
              failures += 1
              lastFailure = error
              return (min(5_000, 100 << min(failures, 6)), Core.isHopeless(error, failures: failures))
            }
            // A preload that fails fails again; anything else may be passing (a slow host): the
            // waiters hear of it only after `Core.attempts` starts in a row have failed.
            if givingUp { resumeReadyWaiters(.failure(error)) }
            _ = Sys.startThread(inline: false) { [self] in  // not a hot loop when slots cannot start
              usleep(useconds_t(delay * 1000))
              fill()
            }
          }
        }
      }

      /// A slot on a thread of its own: `onReady` when its driver said "R", `onFailure` when it
      /// ended (or could not start) before that.
      @discardableResult
      func startSlot(warm: Bool, onReady: @escaping (Slot) -> Void, onFailure: @escaping (SandboxError) -> Void)
        -> Slot?
      {
        let slot: Slot
        do throws(SandboxError) {
          let directory =
            try options.mountDirectories
            ? SandboxMountDirectory(prefix: "sandbox-pool-", owner: sandbox.config.user) : nil
          slot = try Slot(warm: warm, mountDirectory: directory)
        } catch {
          if warm { lock.withLock { warmSlots -= 1 } }
          onFailure(error)
          return nil
        }
        let payload = warm ? driver : coldDriver
        let closedAlready = lock.withLock { () -> Bool in
          alive[ObjectIdentifier(slot)] = slot
          return closed
        }
        if closedAlready { slot.cancellation.fire() }  // it starts only to end: shutdown missed it
        slot.link.onReady = { onReady(slot) }
        let sandbox = self.sandbox
        let environment = options.environment
        let started = Sys.startThread(inline: false) { [self] in
          let outcome: Swift.Result<SandboxResult, SandboxError>
          do throws(SandboxError) {
            outcome = .success(
              try sandbox.runOnce(
                payload, mountDirectory: slot.mountDirectory?.path, timeout: nil, stdin: [], environment: environment,
                cancellation: slot.cancellation, session: slot.link))
          } catch {
            outcome = .failure(error)
          }
          slot.link.onReady = {}  // it holds the slot: the cycle ends with the run
          let queued = slot.link.stopTakingRequests(reason: "the slot ended")
          slot.finish(
            queued.isEmpty && slot.link.cellsSent > 0 ? .ran(outcome, started: slot.link.cellRunning) : .notSent)
          slotEnded(slot)
          if !slot.link.ready { onFailure(Pool.startFailure(outcome)) }
        }
        if !started {
          slotEnded(slot)
          onFailure(.system(call: "pthread_create", path: nil, errno: EAGAIN))
          return nil
        }
        return slot
      }

      /// A slot's thread is done: a warm one that was ready is replaced (one that never was
      /// is, after a backoff, by `fill`'s failure path).
      private func slotEnded(_ slot: Slot) {
        let waiting = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
          alive[ObjectIdentifier(slot)] = nil
          ready.removeAll { $0 === slot }
          if slot.warm { warmSlots -= 1 }
          guard alive.isEmpty else { return [] }
          defer { endWaiters = [] }
          return endWaiters
        }
        for waiter in waiting { waiter.resume() }
        if slot.warm && slot.link.ready { fill() }
      }

      private func resumeReadyWaiters(_ value: Swift.Result<Void, SandboxError>) {
        let waiting = lock.withLock {
          defer { readyWaiters = [] }
          return readyWaiters
        }
        for waiter in waiting { waiter.resume(returning: value) }
      }

      func waitUntilReady() async throws(SandboxError) {
        let outcome: Swift.Result<Void, SandboxError> = await withCheckedContinuation { continuation in
          let now: Swift.Result<Void, SandboxError>? = lock.withLock {
            if closed { return .failure(.invalidPool(reason: "it is closed")) }
            if !ready.isEmpty || options.size == 0 { return .success(()) }
            if let lastFailure, Core.isHopeless(lastFailure, failures: failures) { return .failure(lastFailure) }
            readyWaiters.append(continuation)
            return nil
          }
          if let now { continuation.resume(returning: now) }
        }
        try outcome.get()
      }

      /// A ready slot, if any. Its replacement starts when it has ended (`slotEnded`): at most
      /// `size` slots live at once, and a run never shares the CPU with its own refill.
      private func take() -> Slot? {
        lock.withLock { ready.isEmpty ? nil : ready.removeFirst() }
      }

      /// The dispatch: a ready slot, else a cold one started for this run; `completion` is called once.
      func dispatch(
        _ request: Request, onOutput: ((_ isStderr: Bool, _ bytes: [UInt8]) -> Void)?, control: Control,
        completion: @escaping (Swift.Result<SandboxPoolRun, SandboxError>) -> Void
      ) {
        if lock.withLock({ closed }) { return completion(.failure(.invalidPool(reason: "it is closed"))) }
        if sandbox.config.requiresVerifiedHost {
          do throws(SandboxError) { try SelfTestGate.requirePassed() } catch { return completion(.failure(error)) }
        }
        let begun = ContinuousClock.now
        func use(_ slot: Slot) {
          guard control.bind(slot) else {
            slot.cancellation.fire()
            return completion(.failure(.runCancelled))
          }
          slot.dispatch(request, onOutput: onOutput) { [self] ending in
            switch ending {
            case .notSent where control.isCancelled: completion(.failure(.runCancelled))
            case .notSent: dispatch(request, onOutput: onOutput, control: control, completion: completion)  // once more
            case .ran(.failure(let error), _): completion(.failure(error))
            case .ran(.success(let result), let started):
              guard started || result.cancelled || result.timedOut else {
                return completion(.failure(Pool.startFailure(.success(result), dispatched: true)))
              }
              var result = result
              if !slot.warm { result.duration = ContinuousClock.now - begun }  // a cold run's start is its own
              completion(.success(SandboxPoolRun(result: result, warm: slot.warm, mountDirectory: slot.mountDirectory)))
            }
          }
        }
        if control.isCancelled { return completion(.failure(.runCancelled)) }
        if let slot = take() { return use(slot) }
        let cold = startSlot(warm: false, onReady: use) { [self] error in
          // A cold start that its Task or the pool's close() ended is that, not a setup failure.
          if control.isCancelled { return completion(.failure(.runCancelled)) }
          if lock.withLock({ closed }) { return completion(.failure(.invalidPool(reason: "it is closed"))) }
          completion(.failure(error))
        }
        if let cold, !control.bind(cold) { cold.cancellation.fire() }  // cancellable while it starts
      }

      func run(_ request: Request, onOutput: ((_ isStderr: Bool, _ bytes: [UInt8]) -> Void)?) async throws(SandboxError)
        -> SandboxPoolRun
      {
        if Task.isCancelled { throw .runCancelled }
        let control = Control()
        let outcome: Swift.Result<SandboxPoolRun, SandboxError> = await withTaskCancellationHandler {
          await withCheckedContinuation { continuation in
            dispatch(request, onOutput: onOutput, control: control) { continuation.resume(returning: $0) }
          }
        } onCancel: {
          control.cancel()
        }
        return try outcome.get()
      }

      /// Closed: no new runs; every slot is told to end (idle ones at once, running ones cancelled).
      func shutdown() {
        let slots = lock.withLock { () -> [Slot] in
          if !closed { Core.release(options.size) }
          closed = true
          ready = []
          return Array(alive.values)  // the ready ones among them
        }
        for slot in slots { slot.cancellation.fire() }
        resumeReadyWaiters(.failure(.invalidPool(reason: "it is closed")))
      }

      func waitForSlots() async {
        await withCheckedContinuation { continuation in
          let done = lock.withLock {
            if alive.isEmpty { return true }
            endWaiters.append(continuation)
            return false
          }
          if done { continuation.resume() }
        }
      }
    }
  }
}

// MARK: - System helpers

#if hasFeature(Extern)
  // glibc's _GNU_SOURCE functions, linked directly in the static build (see `Sandbox.Sys.GlibcExtras`).
  // Free functions: an `@_extern(c)` static member would be called with the wrong convention.
  @_extern(c, "syscall") private func sandboxLinkedSyscall(_ number: Int, _ a: Int, _ b: Int, _ c: Int, _ d: Int) -> Int
  @_extern(c, "prctl") private func sandboxLinkedPRCtl(_ option: Int32, _ a: UInt, _ b: UInt, _ c: UInt, _ d: UInt)
    -> Int32
  @_extern(c, "pipe2") private func sandboxLinkedPipe2(_ fds: UnsafeMutablePointer<Int32>?, _ flags: Int32) -> Int32
  @_extern(c, "posix_spawn_file_actions_addclosefrom_np")
  private func sandboxLinkedAddCloseFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>?, _ from: Int32)
    -> Int32
  @_extern(c, "prlimit")
  private func sandboxLinkedPRLimit(
    _ pid: pid_t, _ resource: Int32, _ new: UnsafePointer<rlimit>?, _ old: UnsafeMutablePointer<rlimit>?
  ) -> Int32
  @_extern(c, "getxattr")
  private func sandboxLinkedGetXAttr(
    _ path: UnsafePointer<CChar>?, _ name: UnsafePointer<CChar>?, _ value: UnsafeMutableRawPointer?, _ size: Int
  ) -> Int
#endif

extension Sandbox {
  /// Glibc calls Swift cannot make directly, errno handling, and small file and text helpers.
  enum Sys {
    /// `text` without ASCII white space at either end (over UTF-8; ASCII bounds are character bounds).
    static func trimmed(_ text: String) -> String {
      let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x0A || $0 == 0x09 || $0 == 0x0D }
      guard let first = text.utf8.firstIndex(where: { !isSpace($0) }),
        let last = text.utf8.lastIndex(where: { !isSpace($0) })
      else {
        return ""
      }
      return String(text[first...last])
    }

    /// `getenv(3)` as an optional String.
    static func environmentValue(_ name: String) -> String? {
      getenv(name).map { String(cString: $0) }
    }

    /// `RLIMIT_*` from `<bits/resource.h>` (imported by Swift as an enum; these are the raw values).
    enum ResourceLimit {
      static let cpu: Int32 = 0
      static let fileSize: Int32 = 1
      static let data: Int32 = 2
      static let core: Int32 = 4
      static let processes: Int32 = 6
      static let openFiles: Int32 = 7
      static let addressSpace: Int32 = 9
      static let stack: Int32 = 3
    }

    /// `TIOCSPTLCK` and `TIOCGPTPEER` from `<asm-generic/ioctls.h>` (x86_64 and aarch64).
    static let ioctlUnlockPTY: Int32 = 0x4004_5431

    static let ioctlOpenPTYPeer: Int32 = 0x5441

    /// `O_PATH` from `<bits/fcntl-linux.h>` (the same value on x86_64 and aarch64); Swift does not import it.
    static let openPathOnly: Int32 = 0o10000000

    /// Glibc functions declared only under `_GNU_SOURCE`, which Swift's Glibc module leaves out.
    ///
    /// A plain build looks them up once with `dlsym`, so a glibc without one gives a clear error at
    /// run time. The Makefile's fully static build (`-enable-experimental-feature Extern`) links
    /// them directly instead: a static executable has no dynamic symbol table for `dlsym` to read.
    /// Both give C function pointers, called with the C calling convention.
    enum GlibcExtras {
      typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>?, Int32) -> Int32
      typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32
      typealias PIDFDOpen = @convention(c) (pid_t, UInt32) -> Int32
      /// `syscall(2)` and `prctl(2)` are variadic, which Swift cannot call; these fixed-arity views
      /// pass integer arguments in the same registers on x86_64 and aarch64.
      typealias Syscall = @convention(c) (Int, Int, Int, Int, Int) -> Int
      typealias PRCtl = @convention(c) (Int32, UInt, UInt, UInt, UInt) -> Int32
      typealias PRLimit = @convention(c) (pid_t, Int32, UnsafePointer<rlimit>?, UnsafeMutablePointer<rlimit>?) -> Int32
      typealias GetXAttr =
        @convention(c) (UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafeMutableRawPointer?, Int)
        -> Int

      #if hasFeature(Extern)
        static let syscall: Syscall? = sandboxLinkedSyscall
        static let prctl: PRCtl? = sandboxLinkedPRCtl
        static let pipe2: Pipe2? = sandboxLinkedPipe2
        static let addCloseFrom: AddCloseFrom? = sandboxLinkedAddCloseFrom
        static let prlimit: PRLimit? = sandboxLinkedPRLimit
        static let getxattr: GetXAttr? = sandboxLinkedGetXAttr
        /// `pidfd_open(2)` by number (434 on every architecture): glibc < 2.36 has no wrapper.
        static let pidfdOpen: PIDFDOpen? = { pid, flags in
          Int32(truncatingIfNeeded: sandboxLinkedSyscall(434, Int(pid), Int(flags), 0, 0))
        }
      #else
        static let syscall: Syscall? = lookup("syscall")
        static let prctl: PRCtl? = lookup("prctl")
        static let pipe2: Pipe2? = lookup("pipe2")
        /// glibc ≥ 2.34.
        static let addCloseFrom: AddCloseFrom? = lookup("posix_spawn_file_actions_addclosefrom_np")
        /// `prlimit(2)`: sets another process's rlimits (here: the gate process of the sandbox).
        static let prlimit: PRLimit? = lookup("prlimit")
        /// `getxattr(2)`, from <sys/xattr.h>, which Swift's Glibc module does not import.
        static let getxattr: GetXAttr? = lookup("getxattr")
        /// glibc ≥ 2.36; without it the spawner notices a silent exit with a 5 ms tick.
        static let pidfdOpen: PIDFDOpen? = lookup("pidfd_open")

        private static func lookup<Function>(_ name: String) -> Function? {
          guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, name) else { return nil }
          return unsafeBitCast(symbol, to: Function.self)
        }
      #endif
    }

    /// The IPv4 prefixes this host's routing tables deliver locally or broadcast, from
    /// /proc/net/fib_trie ("|-- 10.0.0.0" then "/24 host LOCAL"), as "10.0.0.0/24".
    static func localIPv4Prefixes() -> [String] {
      var prefixes: Set<String> = []
      var address = ""
      for line in (Sys.readSmallFile("/proc/net/fib_trie", limit: 8 << 20) ?? "").split(separator: "\n") {
        let fields = line.split(separator: " ")
        if fields.first == "|--", fields.count == 2 {
          address = String(fields[1])
        } else if let length = fields.first, length.hasPrefix("/"),
          line.contains("LOCAL") || line.contains("BROADCAST"),
          !address.isEmpty
        {
          prefixes.insert("\(address)\(length)")
        }
      }
      return prefixes.sorted()
    }

    /// Every address of this host's interfaces (getifaddrs), as text, IPv4 and IPv6 apart.
    static func hostAddresses() -> (v4: [String], v6: [String]) {
      var list: UnsafeMutablePointer<ifaddrs>? = nil
      guard getifaddrs(&list) == 0 else { return ([], []) }
      defer { freeifaddrs(list) }
      var v4: Set<String> = []
      var v6: Set<String> = []
      var entry = list
      while let current = entry {
        defer { entry = current.pointee.ifa_next }
        guard let address = current.pointee.ifa_addr else { continue }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
          address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { inet in
            var raw = inet.pointee.sin_addr
            if inet_ntop(AF_INET, &raw, &text, socklen_t(text.count)) != nil { v4.insert(Sys.stringUpToNUL(text)) }
          }
        case AF_INET6:
          address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { inet6 in
            var raw = inet6.pointee.sin6_addr
            if inet_ntop(AF_INET6, &raw, &text, socklen_t(text.count)) != nil { v6.insert(Sys.stringUpToNUL(text)) }
          }
        default: break
        }
      }
      return (v4.sorted(), v6.sorted())
    }

    /// Runs `body` on a new thread and waits for it (a thread whose per-thread state — Landlock,
    /// no_new_privs — may change and which lives exactly as long as the run, as bwrap's
    /// --die-with-parent wants).
    static func onFreshThread<Value>(_ body: @escaping () -> Value) -> Value {
      var value: Value? = nil
      let work = { value = body() }
      if let thread = Sys.launchThread(work) { pthread_join(thread, nil) } else { work() }
      return value!  // set by the joined thread or by the fallback call above
    }

    /// Runs a system call again while it fails with EINTR (a signal handler ran): the one retry
    /// loop. The result and errno are the last call's.
    /// `body` in a Task, as a stream of events: each output chunk it reports, then its result or
    /// its error. Ending the iteration early cancels the Task (which kills its run).
    static func eventStream<Final: Sendable>(
      _ body:
        @escaping @Sendable (_ onOutput: @escaping (_ isStderr: Bool, _ bytes: [UInt8]) -> Void)
        async throws(SandboxError) -> Final
    ) -> AsyncStream<SandboxEvent<Final>> {
      AsyncStream { continuation in
        let task = Task {
          do throws(SandboxError) {
            let final = try await body { isStderr, bytes in
              continuation.yield(isStderr ? .stderr(bytes) : .stdout(bytes))
            }
            continuation.yield(.finished(final))
          } catch {
            continuation.yield(.failed(error))
          }
          continuation.finish()
        }
        continuation.onTermination = { reason in if case .cancelled = reason { task.cancel() } }
      }
    }

    /// `value` as 4 big-endian bytes: the length prefix of a channel frame and of its fields.
    static func bigEndian(_ value: UInt32) -> [UInt8] {
      [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
    }

    static func retryingInterrupts<Value: FixedWidthInteger & SignedInteger>(_ body: () -> Value) -> Value {
      while true {
        let result = body()
        if result != -1 || errno != EINTR { return result }
      }
    }

    /// One read(2) into the start of `buffer` (at most `max` bytes), retried on EINTR: the byte
    /// count, 0 at end of file, or -1 with errno. Every read of the file goes through it.
    static func readSome(_ fd: Int32, into buffer: inout [UInt8], max: Int = .max) -> Int {
      Sys.retryingInterrupts { buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, Swift.min($0.count, max)) } }
    }

    /// Runs a Glibc call, retrying on EINTR; -1 becomes `SandboxError.system` with errno.
    @discardableResult
    static func check(_ call: String, path: String? = nil, _ body: () -> Int32) throws(SandboxError) -> Int32 {
      let result = Sys.retryingInterrupts(body)
      if result == -1 { throw .system(call: call, path: path, errno: errno) }
      return result
    }

    /// posix_spawn and its helpers return an error number instead of setting errno.
    static func checkSpawn(_ call: String, path: String? = nil, _ body: () -> Int32) throws(SandboxError) {
      let code = body()
      if code != 0 { throw .system(call: call, path: path, errno: code) }
    }

    /// A close-on-exec pipe.
    static func makePipe() throws(SandboxError) -> (read: Int32, write: Int32) {
      guard let pipe2 = Sys.GlibcExtras.pipe2 else { throw .glibcTooOld(function: "pipe2") }
      var ends: [Int32] = [-1, -1]
      try Sys.check("pipe2") { pipe2(&ends, O_CLOEXEC) }
      return (ends[0], ends[1])
    }

    /// A close-on-exec stream socket pair: our writes use MSG_NOSIGNAL, so a reader that went
    /// away gives EPIPE, never SIGPIPE. One-way (the child only reads) unless `bothWays`.
    static func makeSocketPair(bothWays: Bool = false) throws(SandboxError) -> (parent: Int32, child: Int32) {
      var ends: [Int32] = [-1, -1]
      try Sys.check("socketpair") {
        socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends)
      }
      if !bothWays {
        shutdown(ends[0], Int32(SHUT_RD))
        shutdown(ends[1], Int32(SHUT_WR))
      }
      return (ends[0], ends[1])
    }

    /// Sends all of `bytes` on a socket without ever raising SIGPIPE; false on error.
    @discardableResult
    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
      var offset = 0
      while offset < bytes.count {
        let count = Sys.retryingInterrupts {
          // offset < count
          bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
        }
        if count <= 0 { return false }
        offset += count
      }
      return true
    }

    /// Reads `fd` to its end into `bytes`, keeping at most `limit` bytes (one more is read to tell);
    /// returns whether it stopped at the limit. The one blocking read loop (EINTR retried).
    /// - Throws: `SandboxError.system` on a read error.
    @discardableResult
    static func readAll(_ fd: Int32, into bytes: inout [UInt8], limit: Int) throws(SandboxError) -> Bool {
      var buffer = [UInt8](repeating: 0, count: 1 << 16)
      while bytes.count <= limit {
        let count = Sys.readSome(fd, into: &buffer, max: limit + 1 - bytes.count)
        if count < 0 { throw .system(call: "read", path: nil, errno: errno) }
        if count == 0 { return false }
        bytes += buffer[0..<count]
      }
      bytes.removeLast(bytes.count - limit)
      return true
    }

    /// Calls `body` with `name` as a NUL-terminated C string, without a heap allocation.
    static func withCName<Result>(_ name: [UInt8], _ body: (UnsafePointer<CChar>) -> Result) -> Result {
      withUnsafeTemporaryAllocation(of: CChar.self, capacity: name.count + 1) { buffer in
        for (index, byte) in name.enumerated() { buffer[index] = CChar(bitPattern: byte) }
        buffer[name.count] = 0
        return body(UnsafePointer(buffer.baseAddress!))  // capacity ≥ 1
      }
    }

    /// The text of `bytes` when they are valid UTF-8, else nil (never a replacement character).
    static func validUTF8(_ bytes: [UInt8]) -> String? {
      String(validating: bytes, as: UTF8.self)
    }

    /// The one lock: a pthread mutex and its condition variable at stable addresses (allocated:
    /// Swift does not promise that a stored property's address stays put, so `&storedMutex` must
    /// not be handed to pthreads).
    final class Mutex: @unchecked Sendable {
      private let raw = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
      private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
      init() {
        pthread_mutex_init(raw, nil)
        pthread_cond_init(condition, nil)
      }
      deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(raw)
        condition.deallocate()
        raw.deallocate()
      }
      func withLock<Value, Failure: Error>(_ body: () throws(Failure) -> Value) throws(Failure) -> Value {
        pthread_mutex_lock(raw)
        defer { pthread_mutex_unlock(raw) }
        return try body()
      }
      /// Inside `withLock` only: sleeps until `broadcast()` (or spuriously; callers loop on their predicate).
      func wait() { pthread_cond_wait(condition, raw) }
      /// Inside `withLock` only: like `wait()`, for at most `milliseconds` (pthread_cond_timedwait).
      func wait(milliseconds: Int) {
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        let nanoseconds = Int(deadline.tv_nsec) + milliseconds * 1_000_000
        deadline.tv_sec += nanoseconds / 1_000_000_000
        deadline.tv_nsec = nanoseconds % 1_000_000_000
        pthread_cond_timedwait(condition, raw, &deadline)
      }
      /// Inside `withLock` only: wakes every `wait()`.
      func broadcast() { pthread_cond_broadcast(condition) }
    }

    /// A Boolean shared by threads, and an action taken only while it holds.
    final class Flag: @unchecked Sendable {  // `value` is guarded by `mutex`
      private let mutex = Sys.Mutex()
      private var value = false
      func set(_ new: Bool) { mutex.withLock { value = new } }
      /// Runs `body` under the lock if the flag is set (so `set(false)` waits for it to finish).
      func ifSet(_ body: () -> Void) { mutex.withLock { if value { body() } } }
    }

    /// One value handed from one thread to another that blocks for it.
    final class Handoff<Value>: @unchecked Sendable {  // `value` is guarded by `mutex`
      private let mutex = Sys.Mutex()
      private var value: Value? = nil

      func put(_ new: Value) {
        mutex.withLock {
          value = new
          mutex.broadcast()
        }
      }

      /// Blocks until `put` has been called.
      func take() -> Value {
        mutex.withLock {
          while value == nil { mutex.wait() }
          return value!  // the loop ended: it is set
        }
      }
    }

    /// Calls `body` with a NULL-terminated C array of `strings`.
    static func withCStrings<Result>(
      _ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) throws(SandboxError) -> Result
    ) throws(SandboxError) -> Result {
      let pointers = strings.map { strdup($0) } + [nil]
      defer { for pointer in pointers { free(pointer) } }
      return try body(pointers)
    }

    static func millisecondsUntil(_ deadline: ContinuousClock.Instant) -> Int32 {
      let remaining = deadline - ContinuousClock.now
      if remaining <= .zero { return 0 }
      let (seconds, attoseconds) = remaining.components
      if seconds >= Int64(Int32.max / 1000) { return Int32.max }  // poll's longest wait, no overflow
      let milliseconds = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
      return Int32(clamping: milliseconds)
    }

    /// Online CPUs, read once (`sysconf` reads /sys on every call).
    static let onlineProcessors = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    /// `strerror(3)`: the message for an errno value.
    static func errnoText(_ code: Int32) -> String { String(cString: strerror(code)) }

    /// `realpath(3)`: the absolute path with every symlink and `..` resolved, or nil.
    static func resolvedPath(_ path: String) -> String? {
      guard let resolved = realpath(path, nil) else { return nil }
      defer { free(resolved) }
      return String(cString: resolved)
    }

    /// The symlinks met while resolving `path` component by component (each link's own path and
    /// its target, as readlink gives it), and the real path it ends at (nil when it does not exist
    /// or loops: at most 40 links, as the kernel allows).
    static func symlinkChain(_ path: String) -> (links: [(path: String, target: String)], real: String?) {
      var links: [(path: String, target: String)] = []
      var resolved = ""  // a real path so far ("" is /)
      var remaining = path.split(separator: "/").map(String.init)[...]
      while let component = remaining.popFirst() {
        if component == "." { continue }
        if component == ".." {
          resolved = resolved.isEmpty ? "" : Sys.parentDirectory(resolved) == "/" ? "" : Sys.parentDirectory(resolved)
          continue
        }
        let candidate = "\(resolved)/\(component)"
        var info = stat()
        guard lstat(candidate, &info) == 0 else { return (links, nil) }
        guard info.st_mode & S_IFMT == S_IFLNK else {
          resolved = candidate
          continue
        }
        guard links.count < 40, let target = Sys.readLink(candidate) else { return (links, nil) }
        links.append((candidate, target))
        if target.hasPrefix("/") { resolved = "" }
        remaining = (target.split(separator: "/").map(String.init) + remaining)[...]
      }
      return (links, resolved.isEmpty ? "/" : resolved)
    }

    /// The names in a directory (no "." or ".."), sorted; empty when it cannot be read.
    static func directoryNames(_ path: String) -> [String] {
      guard let directory = opendir(path) else { return [] }
      defer { closedir(directory) }
      var names: [String] = []
      while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
          String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name != "." && name != ".." { names.append(name) }
      }
      return names.sorted()
    }

    static func readLink(_ path: String) -> String? {
      var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
      let count = readlink(path, &buffer, buffer.count - 1)
      guard count >= 0 else { return nil }
      return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Reads a small host file (a sysctl, a /proc status, a profile) whole, at most `limit`
    /// bytes; nil when it cannot be read.
    static func readSmallFile(_ path: String, limit: Int = 1 << 20) -> String? {
      let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
      guard fd >= 0 else { return nil }
      defer { close(fd) }
      var bytes: [UInt8] = []
      do throws(SandboxError) { try Sys.readAll(fd, into: &bytes, limit: limit) } catch { return nil }
      return String(decoding: bytes, as: UTF8.self)
    }

    /// Reads `name` in `directory` only if both are this user's and writable by no one else,
    /// with no symlink followed at either step and only a regular file read, at most `limit` bytes.
    static func readOwnFile(directory: String, name: String, limit: Int) -> [UInt8]? {
      func owned(_ fd: Int32, _ type: mode_t) -> Bool {
        var info = stat()
        return fstat(fd, &info) == 0 && info.st_mode & S_IFMT == type && info.st_uid == geteuid()
          && info.st_mode & 0o022 == 0 && (type != S_IFREG || info.st_size <= limit)
      }
      let parent = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
      guard parent >= 0 else { return nil }
      defer { close(parent) }
      guard owned(parent, S_IFDIR), !name.contains("/") else { return nil }
      let fd = Sys.withCName(Array(name.utf8)) { openat(parent, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
      guard fd >= 0 else { return nil }
      defer { close(fd) }
      guard owned(fd, S_IFREG) else { return nil }
      var bytes: [UInt8] = []
      do throws(SandboxError) { try Sys.readAll(fd, into: &bytes, limit: limit) } catch { return nil }
      return bytes
    }

    /// Makes `path` and any missing parents (mkdir, `mode` for the new ones); true when it is then
    /// a directory of this user's that no one else may write to.
    static func makeDirectories(_ path: String, mode: mode_t) -> Bool {
      var built = ""
      for component in path.split(separator: "/") {
        built += "/\(component)"
        if mkdir(built, mode) != 0 && errno != EEXIST { return false }
      }
      var info = stat()
      return lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR && info.st_uid == geteuid()
        && info.st_mode & 0o022 == 0
    }

    /// Writes `bytes` to `path` through a new temporary file beside it, renamed over it (readers see
    /// the old file or the whole new one, never a part); false on any error.
    static func writeFileAtomically(_ path: String, _ bytes: [UInt8]) -> Bool {
      let temporary = "\(path).tmp-\(getpid())"
      let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
      guard fd >= 0 else { return false }
      let written = Sys.writeAll(fd, bytes)
      close(fd)
      guard written, rename(temporary, path) == 0 else {
        unlink(temporary)
        return false
      }
      return true
    }

    /// Writes all of `bytes` to `fd`, retrying short writes; false on error.
    @discardableResult
    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
      var offset = 0
      while offset < bytes.count {
        let count = Sys.retryingInterrupts {
          bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
        }  // offset < count
        if count <= 0 { return false }
        offset += count
      }
      return true
    }

    static func exists(_ path: String) -> Bool {
      var info = stat()
      return lstat(path, &info) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
      var info = stat()
      return stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
    }

    static func isFile(_ path: String) -> Bool {
      var info = stat()
      return stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
    }

    static func parentDirectory(_ path: String) -> String {
      guard let slash = path.lastIndex(of: "/") else { return "." }
      let parent = String(path[..<slash])
      return parent.isEmpty ? "/" : parent
    }

    /// `$TMPDIR` when set and non-empty, else /tmp (Python's `tempfile.gettempdir()` order, minus its fallbacks).
    static func temporaryDirectory() -> String {
      if let value = Sys.environmentValue("TMPDIR"), !value.isEmpty { return value }
      return "/tmp"
    }

    /// Finds an executable on PATH (then in /usr/bin, /bin, /usr/sbin, /sbin), as an absolute path.
    static func findExecutable(_ name: String) -> String? {
      let path = Sys.environmentValue("PATH") ?? ""
      for directory in path.split(separator: ":").map(String.init) + ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
      where directory.hasPrefix("/") {
        let candidate = "\(directory)/\(name)"
        if access(candidate, X_OK) == 0 && !isDirectory(candidate) { return candidate }
      }
      return nil
    }

    /// The last word of the first line `executable --version` prints.
    static func readVersion(of executable: String) throws(SandboxError) -> String {
      let outcome = try Spawner.runToCompletion(
        Spawner.Request(executable: executable, arguments: ["--version"], environment: [], timeout: .seconds(10)))
      let text = Sys.firstLine(of: outcome.stdout)
      return text.split(separator: " ").last.map(String.init) ?? text
    }

    /// "0.8.0" → [0, 8, 0]; nil when a part is not a number.
    static func parseVersion(_ text: String) -> [Int]? {
      let parts = text.split(separator: ".").map { Int($0) }
      guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else { return nil }
      return parts.compactMap { $0 }
    }

    static func firstLine(of bytes: [UInt8]) -> String {
      let line = bytes.prefix { $0 != UInt8(ascii: "\n") }
      return String(decoding: line, as: UTF8.self)
    }

    /// `printable` for the bytes of a path the payload named (invalid UTF-8 shown as U+FFFD).
    static func printable(_ bytes: [UInt8]) -> String { Sys.printable(String(decoding: bytes, as: UTF8.self)) }

    /// Makes control characters visible in messages (a newline in a name must not forge a line).
    static func printable(_ text: String) -> String {
      var result = ""
      for scalar in text.unicodeScalars {
        if scalar.value < 0x20 || scalar.value == 0x7f {
          result += "\\u{\(String(scalar.value, radix: 16))}"
        } else {
          result.unicodeScalars.append(scalar)
        }
      }
      return result
    }

    /// [A-Za-z0-9_]
    static func isASCIIWordByte(_ byte: UInt8) -> Bool {
      (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
        || byte == UInt8(ascii: "_")
    }

    /// Starts a detached thread running `body`; when no thread can be had, runs `body` here
    /// (`inline: true`) or not at all. Returns whether a thread started.
    @discardableResult
    static func startThread(inline: Bool = true, _ body: @escaping () -> Void) -> Bool {
      if let thread = Sys.launchThread(body) {
        pthread_detach(thread)
        return true
      }
      if inline { body() }  // rather than lose the work
      return false
    }

    /// The work a new thread runs (a C thread entry point cannot capture context).
    final class ThreadWork {
      let body: () -> Void
      init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// `pthread_create` for a closure; nil when no thread could be created.
    static func launchThread(_ body: @escaping () -> Void) -> pthread_t? {
      let context = Unmanaged.passRetained(Sys.ThreadWork(body)).toOpaque()
      var thread = pthread_t()
      let result = pthread_create(
        &thread, nil,
        { raw in
          guard let raw else { return nil }
          Unmanaged<Sys.ThreadWork>.fromOpaque(raw).takeRetainedValue().body()
          return nil
        }, context)
      guard result == 0 else {
        Unmanaged<Sys.ThreadWork>.fromOpaque(context).release()
        return nil
      }
      return thread
    }

    /// The name in a `readdir` entry: its exact bytes.
    static func entryBytes(_ entry: UnsafeMutablePointer<dirent>) -> [UInt8] {
      withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix(while: { $0 != 0 })) }
    }

    /// The name in a `readdir` entry as text (invalid UTF-8 becomes U+FFFD): for host files only.
    static func entryName(_ entry: UnsafeMutablePointer<dirent>) -> String {
      String(decoding: Sys.entryBytes(entry), as: UTF8.self)
    }

    /// Standard base64 (RFC 4648, with padding).
    static func base64(_ bytes: [UInt8]) -> String {
      var out: [UInt8] = []
      Sys.appendBase64(bytes, to: &out)
      return String(decoding: out, as: UTF8.self)
    }

    /// Appends the base64 of `bytes` (RFC 4648, padded) to `out`.
    static func appendBase64(_ bytes: [UInt8], to out: inout [UInt8]) {
      let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
      out.reserveCapacity(out.count + (bytes.count + 2) / 3 * 4)
      var index = 0
      while index < bytes.count {
        let chunk = bytes[index..<min(index + 3, bytes.count)]
        let value = chunk.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (16 - 8 * UInt32($1.offset)) }
        for position in 0..<4 {
          out.append(
            position <= chunk.count ? alphabet[Int(value >> (18 - 6 * UInt32(position)) & 0x3f)] : UInt8(ascii: "="))
        }
        index += 3
      }
    }

    /// The bytes of standard base64 (RFC 4648, padded; white space not allowed); nil when malformed.
    static func decodeBase64(_ text: String) -> [UInt8]? {
      let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
      var values = [UInt8: UInt32]()
      for (index, byte) in alphabet.enumerated() { values[byte] = UInt32(index) }
      let bytes = Array(text.utf8)
      guard bytes.count % 4 == 0 else { return nil }
      var out: [UInt8] = []
      out.reserveCapacity(bytes.count / 4 * 3)
      var index = 0
      while index < bytes.count {
        let quad = bytes[index..<(index + 4)]
        let padding = quad.reversed().prefix { $0 == UInt8(ascii: "=") }.count
        guard padding <= 2, index + 4 == bytes.count || padding == 0 else { return nil }
        var value: UInt32 = 0
        for byte in quad.dropLast(padding) {
          guard let digit = values[byte] else { return nil }
          value = value << 6 | digit
        }
        value <<= UInt32(6 * padding)
        out += [UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)].prefix(3 - padding)
        index += 4
      }
      return out
    }

    /// `mkdtemp(3)` in the temp dir.
    static func makeTemporaryDirectory(prefix: String) throws(SandboxError) -> String {
      var template = Array("\(Sys.temporaryDirectory())/\(prefix)XXXXXX".utf8CString)
      guard mkdtemp(&template) != nil else {
        throw .system(call: "mkdtemp", path: Sys.temporaryDirectory(), errno: errno)
      }
      return Sys.stringUpToNUL(template)
    }

    /// The text of a NUL-terminated C buffer.
    static func stringUpToNUL(_ buffer: [CChar]) -> String {
      String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func lastLine(of text: String) -> String {
      String(text.split(separator: "\n").last ?? "")
    }

    /// Bytes used and available (to unprivileged users) on the filesystem holding `fd` (`fstatvfs`).
    /// Bytes and inodes of a filesystem (`fstatvfs`).
    struct FilesystemUsage {
      var used: Int64
      var available: Int64
      var inodes: Int64
      var inodesFree: Int64
      var inodesUsed: Int64 { inodes - inodesFree }
    }

    static func filesystemUsage(_ fd: Int32) -> FilesystemUsage? {
      var info = statvfs()
      guard fstatvfs(fd, &info) == 0 else { return nil }
      let unit = Int64(info.f_frsize)
      return FilesystemUsage(
        used: (Int64(info.f_blocks) - Int64(info.f_bfree)) * unit, available: Int64(info.f_bavail) * unit,
        inodes: Int64(info.f_files), inodesFree: Int64(info.f_favail))
    }
  }
}

// MARK: - Self-tests: suite

/// One isolation property, checked by a Python probe that runs inside the real sandbox.
///
/// The probe prints a verdict word on its last line; the runner compares that word with
/// `expect` (an exit status alone proves nothing). A probe that prints `SKIP reason` is
/// reported as skipped with that reason. `{NAME}` placeholders are filled from the host.
public struct SelfTest: Sendable {
  /// Which network mode a test's expectation belongs to.
  /// `enabled`: the host's namespace; `isolated`: the run's own, through pasta (`--isolated-network`).
  public enum NetworkMode: Sendable { case any, enabled, disabled, isolated }
  /// The layer that provides the property (shown in verbose output).
  public typealias Layer = SandboxLayer

  public var name: String
  public var python: String
  public var expect: String
  public var network: NetworkMode
  public var layer: Layer
  /// Returns why the test cannot apply on this host, or nil to run it.
  public var skipReason: (@Sendable (SelfTestContext) -> String?)?
  /// Checks the host side after the probe ran; returns a failure message or nil.
  public var hostCheck: (@Sendable (SelfTestContext, _ mountDirectory: String) -> String?)?
  /// Set when a layer that would provide the property is not built yet: a mismatch is then
  /// reported as a known gap (never as a pass), and a match as a pass.
  public var knownGap: String?

  /// Whether the test belongs to a run with this network mode (the runner runs only those).
  public func applies(networkEnabled: Bool) -> Bool { applies(networkEnabled: networkEnabled, isolated: false) }

  /// Whether the test belongs to a run with this network mode (`isolated`: `--isolated-network`).
  public func applies(networkEnabled: Bool, isolated: Bool) -> Bool {
    switch network {
    case .any: true
    case .enabled: networkEnabled && !isolated
    case .disabled: !networkEnabled
    case .isolated: networkEnabled && isolated
    }
  }

  /// Creates a test; see the type's documentation for the probe's contract.
  public init(
    _ name: String, layer: Layer, network: NetworkMode = .any, expect: String, python: String,
    knownGap: String? = nil,
    skipReason: (@Sendable (SelfTestContext) -> String?)? = nil,
    hostCheck: (@Sendable (SelfTestContext, String) -> String?)? = nil
  ) {
    self.knownGap = knownGap
    self.name = name
    self.layer = layer
    self.network = network
    self.expect = expect
    self.python = python
    self.skipReason = skipReason
    self.hostCheck = hostCheck
  }
}

/// Host facts the probes compare against, filled into `{NAME}` placeholders.
public struct SelfTestContext: Sendable {
  public var config: SandboxConfig
  public var venvRoot: String
  public var basePrefix: String
  public var hostHostname: String
  public var hostPID: Int32
  public var hostIPCNamespace: String
  public var callerDirectory: String
  public var callerHome: String
  /// A file the runner creates in the host's temp dir, which must stay invisible.
  public var hostMarker: String
  /// A TCP port the runner listens on at the host's 127.0.0.1.
  public var hostPort: Int
  /// The name (without the leading NUL) of an abstract unix socket the runner listens on.
  public var hostAbstractSocket: String = ""
  /// What of the base interpreter is bound or linked (`BaseInterpreter`): nothing else of its prefix shows.
  public var basePaths: [String] = []

  var placeholders: [(String, String)] {
    [
      ("{VENV}", venvRoot), ("{BASE_PREFIX}", basePrefix), ("{HOST_HOSTNAME}", hostHostname),
      ("{HOST_PID}", String(hostPID)), ("{HOST_IPC_NS}", hostIPCNamespace), ("{CWD}", callerDirectory),
      ("{HOME}", callerHome), ("{MARKER}", hostMarker), ("{HOST_PORT}", String(hostPort)),
      ("{SECCOMP_DENIED}", seccompDeniedTable), ("{MEMORY_LIMIT}", String(config.limits.memoryBytes ?? 0)),
      ("{OPEN_FILES}", String(config.limits.openFiles)), ("{PROFILE}", profileName),
      ("{HOST_ABSTRACT}", hostAbstractSocket), ("{ETC_NAMES}", Self.pythonSet(etcNames)),
      ("{DEV_NAMES}", Self.pythonSet(Layout.deviceNodes.map(\.name) + Layout.deviceOthers)),
      ("{MASKED_PROC}", Self.pythonSet(Layout.maskedProcFiles)), ("{BASE_PATHS}", Self.pythonSet(basePaths)),
    ]
  }

  private typealias Layout = Sandbox.Bwrap.Layout

  /// The names /etc shows by design: the first component below /etc of each exposed or generated path.
  var etcNames: [String] {
    (Layout.exposedEtc.map(\.path) + Layout.generatedEtc.map(\.path)).map {
      String($0.dropFirst("/etc/".count).prefix { $0 != "/" })
    }
  }

  static func pythonSet(_ items: [String]) -> String {
    "{" + Set(items).sorted().map { "\"\($0)\"" }.joined(separator: ", ") + "}"
  }

  var profileName: String {
    if case .profile(let name) = config.appArmor { return name }
    return ""
  }

  /// The native architecture's denied calls as a Python dict: name → (number, errno).
  var seccompDeniedTable: String {
    guard let architecture = Sandbox.Seccomp.Filter.Architecture.native else { return "{}" }
    let entries = Sandbox.Seccomp.Filter.deniedCalls.compactMap { rule in
      rule.number(architecture).map { "\"\(rule.name)\": (\($0), \(rule.errno))" }
    }
    return "{" + entries.joined(separator: ", ") + "}"
  }

  /// Whether `path` is something the sandbox shows by design (system dirs, the venv, /tmp, /mnt).
  func isExposedByDesign(_ path: String) -> Bool {
    let exposed =
      Sandbox.Bwrap.Layout.systemDirectories + basePaths + [venvRoot, "/tmp", "/mnt", "/proc", "/dev", "/etc", "/run"]
    return path == "/" || exposed.contains { !$0.isEmpty && (path == $0 || path.hasPrefix("\($0)/")) }
  }
}

/// The base suite: the properties every host must show before anyone calls `run`.
public let baseSuite: [SelfTest] = [
  SelfTest(
    "the interpreter is the venv's", layer: .control, expect: "OK",
    python: """
      import sys
      print("OK" if sys.prefix == "{VENV}" else "WRONG " + sys.prefix)
      """),
  SelfTest(
    "the venv's packages import (pip)", layer: .control, expect: "OK",
    python: """
      import importlib.util
      if importlib.util.find_spec("pip") is None:
          print("SKIP the venv has no pip to import")
      else:
          import pip
          print("OK" if pip.__file__.startswith("{VENV}/") else "WRONG " + pip.__file__)
      """),
  SelfTest(
    "/mnt is writable and the write reaches the host", layer: .mounts, expect: "OK",
    python: """
      with open("/mnt/probe.txt", "w") as f:
          f.write("written in the sandbox\\n")
      print("OK")
      """,
    hostCheck: { _, directory in
      Sandbox.Sys.readSmallFile("\(directory)/probe.txt") == "written in the sandbox\n"
        ? nil : "the host does not see /mnt/probe.txt"
    }),
  SelfTest(
    "/tmp is writable (control)", layer: .control, expect: "OK",
    python: """
      open("/tmp/probe", "w").write("x")
      print("OK" if open("/tmp/probe").read() == "x" else "WRONG")
      """),
  SelfTest(
    "/tmp is private: the host's temp files are invisible", layer: .mounts, expect: "HIDDEN",
    python: """
      import os
      print("VISIBLE" if os.path.exists("{MARKER}") else "HIDDEN")
      """),
  SelfTest(
    "host home directories and /root are invisible (beyond the venv and base interpreter)",
    layer: .mounts, expect: "HIDDEN", python: Sandbox.Probes.leakWalk(tops: #"("/home", "/root", "/opt", "{HOME}")"#)),
  SelfTest(
    "the caller's working directory is invisible (beyond the venv and base interpreter)",
    layer: .mounts, expect: "HIDDEN", python: Sandbox.Probes.leakWalk(tops: #"("{CWD}",)"#),
    skipReason: { context in
      context.isExposedByDesign(context.callerDirectory)
        ? "the working directory \(context.callerDirectory) lies inside a directory the sandbox shows by design" : nil
    }),
  SelfTest(
    "/etc holds only the documented files", layer: .mounts, expect: "MINIMAL",
    python: """
      import os
      extra = sorted(set(os.listdir("/etc")) - {ETC_NAMES})
      print("EXTRA " + " ".join(extra) if extra else "MINIMAL")
      """),
  SelfTest(
    "/etc/shadow is unreadable", layer: .mounts, expect: "BLOCKED",
    python: """
      try:
          open("/etc/shadow").read()
          print("READ")
      except OSError as e:
          print("BLOCKED", e.errno)
      """),
  SelfTest(
    "system dirs, /etc and / are read-only", layer: .mounts, expect: "BLOCKED",
    python: Sandbox.Probes.writeProbe(
      directories: #"("/", "/usr", "/usr/bin", "/bin", "/lib", "/lib64", "/sbin", "/etc", "/run", "/proc", "/dev")"#,
      control: #"os.listdir("/usr/bin")"#)),
  SelfTest(
    "the venv (and its base interpreter) is read-only", layer: .mounts, expect: "BLOCKED",
    python: Sandbox.Probes.writeProbe(
      directories: #"("{VENV}", "{VENV}/bin", os.path.dirname(os.__file__), "{BASE_PREFIX}")"#,
      control: #"os.listdir("{VENV}/bin")"#)),
  SelfTest(
    "/proc shows only the sandbox's processes", layer: .namespaces, expect: "PRIVATE",
    python: """
      import os
      pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
      print("PRIVATE" if {HOST_PID} not in pids and len(pids) <= 4 else "SHARED " + str(pids[:10]))
      """),
  SelfTest(
    "/proc/sys and /proc/sysrq-trigger are not writable", layer: .mounts, expect: "BLOCKED",
    python: """
      import os
      writable = []
      for path in ("/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches", "/proc/sysrq-trigger"):
          try:
              os.close(os.open(path, os.O_WRONLY))  # opening writes nothing
              writable.append(path)
          except OSError:
              pass
      print("WRITABLE " + " ".join(writable) if writable else "BLOCKED")
      """),
  SelfTest(
    "kernel state in /proc (keys, timers, kcore) is masked", layer: .mounts, expect: "MASKED",
    python: """
      leaks = []
      # The masked list, and a fixed core of it that must never leave that list.
      for path in set({MASKED_PROC}) | {"/proc/keys", "/proc/key-users", "/proc/timer_list", "/proc/kcore", "/proc/kallsyms"}:
          try:
              with open(path, "rb") as f:
                  if f.read(1):
                      leaks.append(path)
          except OSError:
              pass
      print("LEAKED " + " ".join(leaks) if leaks else "MASKED")
      """),
  SelfTest(
    "/dev holds only the minimal nodes (no block devices, mem, kvm, kmsg)", layer: .mounts,
    expect: "MINIMAL",
    python: """
      import os, stat
      allowed = {DEV_NAMES}
      names = set(os.listdir("/dev"))
      bad = sorted(names - allowed)
      bad += [n for n in names if stat.S_ISBLK(os.lstat("/dev/" + n).st_mode)]
      bad += [p for p in ("/dev/mem", "/dev/kvm", "/dev/kmsg", "/dev/port") if os.path.exists(p)]
      print("EXTRA " + " ".join(bad) if bad else "MINIMAL")
      """),
  SelfTest(
    "/dev/null and /dev/urandom work (control)", layer: .control, expect: "OK",
    python: """
      open("/dev/null", "w").write("x")
      print("OK" if len(open("/dev/urandom", "rb").read(16)) == 16 else "WRONG")
      """),
  SelfTest(
    "a payload cannot make set-id files (chmod, fchmod, fchmodat, open, mknod; openat2 is ENOSYS)",
    layer: .seccomp, expect: "REFUSED",
    python: """
      import ctypes, errno, os, stat
      libc = ctypes.CDLL(None, use_errno=True)
      libc.syscall.restype = ctypes.c_long
      os.chdir("/tmp")
      open("probe", "w").close()
      fd = os.open("probe", os.O_RDONLY)
      attempts = {
          "chmod": lambda: os.chmod("probe", 0o4755),
          "fchmod": lambda: os.fchmod(fd, 0o2755),
          "fchmodat": lambda: os.chmod("probe", 0o6755, dir_fd=os.open(".", os.O_RDONLY)),
          "open": lambda: os.close(os.open("created", os.O_WRONLY | os.O_CREAT, 0o4755)),
          "mknod": lambda: os.mknod("node", 0o4644 | stat.S_IFREG),
      }
      wrong = []
      for name, attempt in attempts.items():
          try:
              attempt()
              wrong.append(name)
          except OSError as e:
              if e.errno != errno.EPERM:
                  wrong.append("%s errno %d" % (name, e.errno))
      how = ctypes.c_uint64 * 3  # struct open_how: flags, mode, resolve
      ctypes.set_errno(0)
      if libc.syscall(437, -100, b"viaopenat2", ctypes.byref(how(os.O_WRONLY | os.O_CREAT, 0o4755, 0)), 24) != -1 or ctypes.get_errno() != errno.ENOSYS:
          wrong.append("openat2 errno %d" % ctypes.get_errno())
      setid = [n for n in os.listdir(".") if os.lstat(n).st_mode & 0o6000]
      print("MADE " + " ".join(wrong + setid) if wrong or setid else "REFUSED")
      """,
    skipReason: { context in context.config.seccompEnabled ? nil : "the seccomp layer is relaxed (--no-seccomp)" }),
  SelfTest(
    "the payload holds no capabilities", layer: .namespaces, expect: "NONE",
    python: """
      caps = {}
      for line in open("/proc/self/status"):
          key, _, value = line.partition(":")
          if key.startswith("Cap"):
              caps[key] = int(value, 16)
      held = [k for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb") if caps.get(k, 1)]
      print("HELD " + " ".join(held) if held else "NONE")
      """),
  SelfTest(
    "no_new_privs is set", layer: .namespaces, expect: "SET",
    python: """
      flags = [l for l in open("/proc/self/status") if l.startswith("NoNewPrivs:")]
      print("SET" if flags and flags[0].split()[1] == "1" else "UNSET")
      """),
  SelfTest(
    "mount() is refused", layer: .namespaces, expect: "BLOCKED",
    python: """
      import ctypes, errno
      libc = ctypes.CDLL(None, use_errno=True)
      result = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)
      err = ctypes.get_errno()
      # EPERM: the filter's errno, and the kernel's without CAP_SYS_ADMIN; any other is a different failure.
      print("MOUNTED" if result == 0 else "BLOCKED" if err == errno.EPERM else "UNEXPECTED errno %d" % err)
      """),
  SelfTest(
    "every mount is nosuid (setuid binaries give nothing)", layer: .mounts, expect: "NOSUID",
    python: """
      bad = []
      for line in open("/proc/self/mountinfo"):
          fields = line.split()
          if "nosuid" not in fields[5].split(","):
              bad.append(fields[4])
      print("SUID " + " ".join(bad) if bad else "NOSUID")
      """),
  SelfTest(
    "the hostname is the sandbox's own", layer: .namespaces, expect: "PRIVATE",
    python: """
      import socket
      name = socket.gethostname()
      print("PRIVATE" if name != "{HOST_HOSTNAME}" and name == "sandbox" else "SHARED " + name)
      """),
  SelfTest(
    "the IPC namespace is private", layer: .namespaces, expect: "PRIVATE",
    python: """
      import os
      print("PRIVATE" if os.readlink("/proc/self/ns/ipc") != "{HOST_IPC_NS}" else "SHARED")
      """),
  SelfTest(
    "unix sockets work (control)", layer: .control, expect: "OK",
    python: """
      import socket
      a, b = socket.socketpair()
      a.sendall(b"ping")
      print("OK" if b.recv(4) == b"ping" else "WRONG")
      """),
  SelfTest(
    "loopback TCP inside the sandbox works, network on or off (control)", layer: .control, expect: "OK",
    python: """
      import socket
      server = socket.socket()
      server.bind(("127.0.0.1", 0))
      server.listen(1)
      client = socket.create_connection(server.getsockname(), timeout=5)
      peer, _ = server.accept()
      client.sendall(b"ping")
      print("OK" if peer.recv(4) == b"ping" else "WRONG")
      """),
  SelfTest(
    "localhost resolves through the generated /etc/hosts", layer: .mounts, expect: "OK",
    python: """
      import socket
      print("OK" if socket.gethostbyname("localhost") == "127.0.0.1" else "WRONG")
      """),
  SelfTest(
    "network off: the payload's own HTTP server on 127.0.0.1 and ::1 answers its own client (control)",
    layer: .control, network: .disabled, expect: "OK",
    python: """
      import http.server, socket, threading, urllib.request
      class Quiet(http.server.BaseHTTPRequestHandler):
          def do_GET(self):
              self.send_response(200); self.end_headers(); self.wfile.write(b"inside")
          def log_message(self, *args): pass
      class Server6(http.server.HTTPServer):
          address_family = socket.AF_INET6
      bodies = []
      for server in (http.server.HTTPServer(("127.0.0.1", 0), Quiet), Server6(("::1", 0), Quiet)):
          threading.Thread(target=server.handle_request, daemon=True).start()
          host = "127.0.0.1" if server.address_family == socket.AF_INET else "[::1]"
          opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
          bodies.append(opener.open(f"http://{host}:{server.server_address[1]}/", timeout=5).read())
      print("OK" if bodies == [b"inside", b"inside"] else "WRONG " + repr(bodies))
      """),
  SelfTest(
    "network off: only the loopback interface exists", layer: .namespaces, network: .disabled,
    expect: "LO_ONLY",
    python: """
      import socket
      names = [name for _, name in socket.if_nameindex()]
      print("LO_ONLY" if names == ["lo"] else "INTERFACES " + " ".join(names))
      """),
  SelfTest(
    "network off: a TCP listener on the host's 127.0.0.1 is unreachable", layer: .namespaces,
    network: .disabled, expect: "BLOCKED",
    python: Sandbox.Probes.connectProbe(#"("127.0.0.1", {HOST_PORT})"#)),
  SelfTest(
    "network off: outbound TCP is refused", layer: .namespaces, network: .disabled, expect: "BLOCKED",
    python: Sandbox.Probes.connectProbe(#"("1.1.1.1", 53)"#)),
  SelfTest(
    "network off: DNS resolution fails", layer: .namespaces, network: .disabled, expect: "BLOCKED",
    python: """
      import socket
      try:
          socket.getaddrinfo("example.com", 80)
          print("RESOLVED")
      except OSError:
          print("BLOCKED")
      """),
  SelfTest(
    "network on: the host network is shared (host 127.0.0.1 is reachable, as documented)",
    layer: .namespaces, network: .enabled, expect: "REACHED",
    python: Sandbox.Probes.connectProbe(#"("127.0.0.1", {HOST_PORT})"#)),
  SelfTest(
    "network off: the host's abstract unix sockets are unreachable (another network namespace)",
    layer: .namespaces, network: .disabled, expect: "BLOCKED", python: Sandbox.Probes.abstractSocketProbe),
  SelfTest(
    "network on: the host's abstract unix sockets are unreachable (Landlock's scope)",
    layer: .landlockScope, network: .enabled, expect: "BLOCKED", python: Sandbox.Probes.abstractSocketProbe,
    knownGap: Sandbox.Landlock.scopesAbstractSockets
      ? nil
      : "Landlock ABI \(Sandbox.Landlock.abi) < 6 cannot scope abstract sockets: with the network on they stay reachable (documented)"
  ),
  SelfTest(
    "isolated network: the host's 127.0.0.1 listener is unreachable (the sandbox's lo is its own)",
    layer: .isolatedNetwork, network: .isolated, expect: "BLOCKED",
    python: Sandbox.Probes.connectProbe(#"("127.0.0.1", {HOST_PORT})"#)),
  SelfTest(
    "isolated network: the host's abstract unix sockets are unreachable (another network namespace)",
    layer: .isolatedNetwork, network: .isolated, expect: "BLOCKED", python: Sandbox.Probes.abstractSocketProbe),
  SelfTest(
    "isolated network: /proc/net shows none of the host's sockets", layer: .isolatedNetwork, network: .isolated,
    expect: "HIDDEN",
    python: """
      port = "%04X" % {HOST_PORT}
      lines = open("/proc/net/tcp").read().splitlines()[1:]
      print("VISIBLE" if any(l.split()[1].endswith(":" + port) for l in lines) else "HIDDEN")
      """),
  SelfTest(
    "isolated network: link-local, metadata and host addresses are prohibited (a UDP connect, which sends nothing)",
    layer: .isolatedNetwork, network: .isolated, expect: "PROHIBITED",
    python: """
      import errno, socket
      results = []
      for family, address in ((socket.AF_INET, "169.254.169.254"), (socket.AF_INET, "169.254.1.1"),
                              (socket.AF_INET6, "fd00:ec2::254"), (socket.AF_INET6, "fe80::1%2")):
          s = socket.socket(family, socket.SOCK_DGRAM)
          try:
              s.connect((address, 80))
              results.append(address + " routable")
          except OSError as e:
              if e.errno not in (errno.EACCES, errno.ENETUNREACH, errno.EINVAL):
                  results.append(address + " " + str(e.errno))
      print("PROHIBITED" if not results else "ROUTABLE " + ", ".join(results))
      """),
  SelfTest(
    "isolated network: pasta's interface is up with a default route (control)", layer: .control,
    network: .isolated, expect: "UP",
    python: """
      import socket
      names = [name for _, name in socket.if_nameindex()]
      routes = [l.split() for l in open("/proc/net/route").read().splitlines()[1:]]
      print("UP" if len(names) >= 2 and any(r[1] == "00000000" for r in routes) else "DOWN " + repr(names))
      """),
  SelfTest(
    "network on: name resolution uses the generated resolv.conf", layer: .mounts, network: .enabled,
    expect: "GENERATED",
    python: """
      servers = [l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")]
      print("GENERATED" if servers == ["8.8.8.8", "8.8.4.4", "1.1.1.1"] else "OTHER " + " ".join(servers))
      """),
  SelfTest(
    "the environment holds only the allowlisted variables", layer: .environment, expect: "CLEAN",
    python: """
      import os
      extra = sorted(set(os.environ) - {"PATH", "HOME", "LANG", "TMPDIR", "PWD"})
      try:
          init = open("/proc/1/environ", "rb").read()
      except OSError:
          init = b""
      if init:
          extra.append("/proc/1/environ:" + init.split(b"\\0")[0].decode(errors="replace"))
      print("LEAKED " + " ".join(extra) if extra else "CLEAN")
      """),
  SelfTest(
    "no descriptors beyond 0-2 are inherited", layer: .environment, expect: "CLEAN",
    python: """
      import os
      leaked = []
      for fd in range(3, 1024):
          try:
              os.fstat(fd)
              leaked.append(str(fd))
          except OSError:
              pass
      print("LEAKED " + " ".join(leaked) if leaked else "CLEAN")
      """),
  SelfTest(
    "subprocesses run (control)", layer: .control, expect: "OK",
    python: """
      import subprocess
      out = subprocess.run(["/bin/sh", "-c", "echo ok"], capture_output=True, text=True).stdout
      print("OK" if out == "ok\\n" else "WRONG " + repr(out))
      """),
  SelfTest(
    "AppArmor: the payload runs under the configured profile in enforce mode", layer: .appArmor, expect: "ENFORCED",
    python: """
      label = open("/proc/self/attr/current").read().strip()
      print("ENFORCED" if label == "{PROFILE} (enforce)" else "UNCONFINED " + label)
      """,
    skipReason: Sandbox.Probes.appArmorOff),
  SelfTest(
    "AppArmor: another process's environment is unreadable (namespaces alone allow it)", layer: .appArmor,
    expect: "BLOCKED",
    python: """
      try:
          open("/proc/1/environ", "rb").read()
          print("READ")
      except PermissionError:
          print("BLOCKED")
      """,
    skipReason: Sandbox.Probes.appArmorOff),
  SelfTest(
    "AppArmor: /usr/sbin tools cannot be run (namespaces alone allow it)", layer: .appArmor, expect: "BLOCKED",
    python: """
      import subprocess
      try:
          subprocess.run(["/usr/sbin/nologin"], capture_output=True)
          print("RAN")
      except PermissionError:
          print("BLOCKED")
      """,
    skipReason: Sandbox.Probes.appArmorOff),
]

extension Sandbox {
  /// Probe builders the suites share.
  enum Probes {
    /// A probe that walks `tops` and reports anything visible other than the bound venv and base
    /// interpreter and the empty directories leading to them.
    static func leakWalk(tops: String) -> String {
      """
      import os
      keep = ["{VENV}"] + sorted({BASE_PATHS})  # the base interpreter's binds and links, not its prefix
      def allowed(path):
          return any(k == path or k.startswith(path + "/") for k in keep)
      leaks = []
      shown = ("/tmp", "/mnt", "/usr", "/proc", "/dev", "/etc", "/run")  # visible by design
      for top in \(tops):
          if not top.startswith("/") or top == "/" or any(top == k or top.startswith(k + "/") for k in keep + list(shown)):
              continue
          if os.path.lexists(top) and not allowed(top):
              leaks.append(top)
              continue
          for root, dirs, files in os.walk(top):
              for name in files + dirs:
                  path = os.path.join(root, name)
                  if not allowed(path):
                      leaks.append(path)
              dirs[:] = [d for d in dirs if os.path.join(root, d) not in keep and allowed(os.path.join(root, d))]
      print("LEAKED " + " ".join(sorted(set(leaks))[:5]) if leaks else "HIDDEN")
      """
    }

    /// Connects to the host's abstract unix socket `{HOST_ABSTRACT}`: BLOCKED only with the errno
    /// the layer gives (ECONNREFUSED: another network namespace has no such name; EPERM: Landlock's scope).
    static let abstractSocketProbe = """
      import errno, socket
      s = socket.socket(socket.AF_UNIX)
      try:
          s.connect("\\0{HOST_ABSTRACT}")
          print("REACHED")
      except OSError as e:
          print("BLOCKED" if e.errno in (errno.ECONNREFUSED, errno.EPERM) else "UNEXPECTED errno %d" % e.errno)
      """

    /// A probe that opens a TCP connection to `address` (a Python tuple): REACHED or BLOCKED errno.
    static func connectProbe(_ address: String) -> String {
      """
      import socket
      try:
          socket.create_connection(\(address), timeout=3)
          print("REACHED")
      except OSError as e:
          print("BLOCKED", e.errno)
      """
    }

    /// Skips an AppArmor probe when that layer is off.
    static let appArmorOff: @Sendable (SelfTestContext) -> String? = { context in
      context.config.appArmor == .disabled ? "the AppArmor layer is off (--no-apparmor)" : nil
    }

    /// A probe that tries to create a file in each of `directories` (a Python tuple) and prints
    /// BLOCKED when none accepts one. `control` must be truthy first, so that a missing tree
    /// cannot pass as a read-only one.
    static func writeProbe(directories: String, control: String) -> String {
      """
      import os
      if not (\(control)):
          print("MISSING control failed: \(control.replacing("\"", with: "'"))")
          raise SystemExit
      writable = []
      for d in \(directories):
          if not d or not os.path.isdir(d):
              continue
          probe = os.path.join(d, ".sandbox-write-probe")
          try:
              os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
              os.unlink(probe)
              writable.append(d)
          except OSError:
              pass
      print("WRITABLE " + " ".join(writable) if writable else "BLOCKED")
      """
    }
  }
}

// MARK: - Self-tests: runner

/// The verdict on one self-test.
public struct SelfTestOutcome: Sendable {
  public enum Verdict: Sendable, Equatable {
    case passed
    case failed(String)
    case skipped(String)
    case knownGap(String)
  }
  public var test: SelfTest
  public var verdict: Verdict
}

/// Runs `tests` that apply to the sandbox's network mode, each in a fresh run and mount dir.
///
/// - Throws: `SandboxError` only when the host cannot run a sandbox at all; a probe that
///   misbehaves is a failed test.
public func runSelfTests(_ tests: [SelfTest], in sandbox: Sandbox) throws(SandboxError) -> [SelfTestOutcome] {
  let context = try Sandbox.SelfTests.makeContext(for: sandbox)
  defer { unlink(context.hostMarker) }
  let listener = try Sandbox.SelfTests.openLoopbackListener()
  defer { close(listener.fd) }
  var withPort = context
  withPort.hostPort = listener.port
  let abstract = try Sandbox.SelfTests.openAbstractListener(name: "sandbox-selftest-\(getpid())")
  defer { close(abstract) }
  withPort.hostAbstractSocket = "sandbox-selftest-\(getpid())"
  var outcomes: [SelfTestOutcome] = []
  for test in tests
  where test.applies(networkEnabled: sandbox.config.networkEnabled, isolated: sandbox.config.isolatedNetwork) {
    if let reason = test.skipReason?(withPort) {
      outcomes.append(SelfTestOutcome(test: test, verdict: .skipped(reason)))
      continue
    }
    outcomes.append(
      SelfTestOutcome(test: test, verdict: try Sandbox.SelfTests.runSelfTest(test, in: sandbox, context: withPort)))
  }
  return outcomes
}

/// Remembers whether the base suite passed on this host, for callers that gate `run` on it.
///
/// Following openedx codejail-service's startup check: call `verify(_:)` once at startup,
/// then `requirePassed()` before each run (or set `SandboxConfig.requiresVerifiedHost`, and
/// every `run` of that sandbox checks it).
public enum SelfTestGate {
  private static let state = GateState()

  /// Runs the base suite once and records the verdict; returns the failed tests' names.
  @discardableResult
  public static func verify(_ sandbox: Sandbox) throws(SandboxError) -> [String] {
    let outcomes = try runSelfTests(baseSuite, in: sandbox)
    let failures = outcomes.compactMap { outcome -> String? in
      if case .failed(let why) = outcome.verdict { return "\(outcome.test.name): \(why)" }
      return nil
    }
    state.set(failures.isEmpty ? .passed : .failed(failures.first ?? ""))
    return failures
  }

  /// Throws unless `verify(_:)` has passed in this process.
  public static func requirePassed() throws(SandboxError) {
    switch state.get() {
    case .passed: return
    case .unverified: throw .selfTestGateClosed(reason: "the self-test suite has not been run on this host")
    case .failed(let first): throw .selfTestGateClosed(reason: "the self-test suite failed on this host (\(first))")
    }
  }

  enum Status: Sendable {
    case unverified
    case passed
    case failed(String)
  }

  final class GateState: @unchecked Sendable {
    private let lock = Sandbox.Sys.Mutex()
    private var status = Status.unverified
    func get() -> Status { lock.withLock { status } }
    func set(_ value: Status) { lock.withLock { status = value } }
  }
}

extension Sandbox {
  /// Runs self-tests and keeps the gate's verdict.
  enum SelfTests {
    static func runSelfTest(_ test: SelfTest, in sandbox: Sandbox, context: SelfTestContext) throws(SandboxError)
      -> SelfTestOutcome.Verdict
    {
      var source = test.python
      for (placeholder, value) in context.placeholders { source = source.replacing(placeholder, with: value) }
      let directory = try Sys.makeTemporaryDirectory(prefix: "sandbox-selftest-")
      defer { Changes.removeTree(directory) }
      // The internal entry point: the suite must run before a gated sandbox may.
      let result = try sandbox.runOnce(
        .code(source), mountDirectory: directory, timeout: .seconds(60), stdin: [], environment: [:], cancellation: nil)
      let lines = result.stdoutText.split(separator: "\n").filter { !Sys.trimmed(String($0)).isEmpty }
      let verdictLine = lines.last.map(String.init) ?? ""
      let word = verdictLine.split(separator: " ").first.map(String.init) ?? ""
      if word == "SKIP" { return .skipped(String(verdictLine.dropFirst(5))) }
      guard word == test.expect else {
        let shown = verdictLine.isEmpty ? "no verdict" : verdictLine
        let detail =
          result.timedOut
          ? " (timed out)" : result.stderr.isEmpty ? "" : " [stderr: \(Sys.lastLine(of: result.stderrText))]"
        if let gap = test.knownGap { return .knownGap("\(gap); got \(shown)") }
        return .failed("expected \(test.expect), got \(shown)\(detail)")
      }
      if let problem = test.hostCheck?(context, directory) { return .failed(problem) }
      return .passed
    }

    static func makeContext(for sandbox: Sandbox) throws(SandboxError) -> SelfTestContext {
      var name = [CChar](repeating: 0, count: 256)
      gethostname(&name, name.count - 1)
      var directory = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
      let cwd = getcwd(&directory, directory.count).map { String(cString: $0) } ?? "/"
      let marker = "\(Sys.temporaryDirectory())/sandbox-selftest-marker-\(getpid())"
      let fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
      guard fd >= 0 else { throw .system(call: "open", path: marker, errno: errno) }
      close(fd)
      return SelfTestContext(
        config: sandbox.config, venvRoot: sandbox.venv.root, basePrefix: sandbox.venv.basePrefix ?? "",
        hostHostname: Sys.stringUpToNUL(name), hostPID: getpid(),
        hostIPCNamespace: Sys.readLink("/proc/self/ns/ipc") ?? "", callerDirectory: cwd,
        callerHome: Sys.environmentValue("HOME") ?? "", hostMarker: marker, hostPort: 0,
        basePaths: (sandbox.venv.base?.binds ?? []) + (sandbox.venv.base?.links.map(\.path) ?? [])
          + sandbox.venv.extraDirectories)
    }

    /// A TCP socket listening on the host's 127.0.0.1 (never accepted from: the backlog answers).
    static func openLoopbackListener() throws(SandboxError) -> (fd: Int32, port: Int) {
      let fd = try Sys.check("socket") {
        socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
      }
      var address = sockaddr_in()
      address.sin_family = sa_family_t(AF_INET)
      address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
      var length = socklen_t(MemoryLayout<sockaddr_in>.size)
      let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
          bind(fd, raw, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, raw, &length) == 0
        }
      }
      guard bound else {
        let code = errno
        close(fd)
        throw .system(call: "bind(127.0.0.1)", path: nil, errno: code)
      }
      return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// A unix socket listening on the abstract name `name` (in this network namespace).
    static func openAbstractListener(name: String) throws(SandboxError) -> Int32 {
      let fd = try Sys.check("socket(AF_UNIX)") {
        socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
      }
      var address = sockaddr_un()
      address.sun_family = sa_family_t(AF_UNIX)
      let bytes = Array(name.utf8.prefix(100))
      withUnsafeMutableBytes(of: &address.sun_path) { path in
        for (index, byte) in bytes.enumerated() { path[index + 1] = byte }  // path[0] = 0: abstract
      }
      let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count)
      let bound = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 16) == 0 }
      }
      guard bound else {
        let code = errno
        close(fd)
        throw .system(call: "bind(abstract unix socket)", path: nil, errno: code)
      }
      return fd
    }

  }
}

// MARK: - Extension point

extension Sandbox.ExtraTestsProvider {
  static var extendedSuite: [SelfTest]? { nil }
}

extension Sandbox {
  /// Lets the optional companion file add the extended suite, detected at compile time.
  ///
  /// `sandbox_extra_tests.swift` declares `extension Sandbox.ExtraTests { static var extendedSuite: … }`;
  /// a type's own member is a better witness than this protocol extension's default, so with
  /// the companion compiled in every call path sees its suite, and without it `nil`.
  protocol ExtraTestsProvider {
    static var extendedSuite: [SelfTest]? { get }
  }

  enum ExtraTests: ExtraTestsProvider {}

  static func extendedSuite<Provider: ExtraTestsProvider>(from provider: Provider.Type) -> [SelfTest]? {
    provider.extendedSuite
  }
}

// MARK: - Command line

extension Sandbox {
  /// The command line: one option table, parsing, the JSON, and the commands. The only code that prints.
  enum CLI {
    /// The two commands: `sandbox` (checks the host, runs the self-tests) and `sandbox run`.
    enum Command: Equatable { case selfTest, run, session, serve }

    /// What one invocation does: a command, or a mode one flag of the table selects.
    enum Mode: Equatable {
      case selfTest, run, session, serve
      case interactive  // --interactive: a sandboxed REPL on the terminal
      case printProfile  // --print-apparmor-profile: the profile this venv needs
      case printArgv  // run --print-bwrap-argv: the exact bwrap command line
      case help

      /// The flag that selects a mode (nil for the two commands).
      var flag: String? {
        switch self {
        case .selfTest, .run, .session, .serve: nil
        case .interactive: "--interactive"
        case .printProfile: "--print-apparmor-profile"
        case .printArgv: "--print-bwrap-argv"
        case .help: "--help"
        }
      }
    }

    /// Parsed command-line flags.
    struct Options: Equatable {
      var mode = Mode.selfTest
      var venv: String?
      var profile: String?
      var noAppArmor = false
      var network: Bool?
      var verbose = false
      var extraTests = false
      var ignoreProfileDiffs = false
      var code: String?
      var script: String?
      var mountDirectory: String?
      var timeout: Duration?
      var environment: [String: String] = [:]
      var json = false
      /// Files to read from the mount dir into the JSON (`--output`), relative to it.
      var outputs: [String] = []
      var noSeccomp = false
      var noCgroup = false
      var requireCgroup = false
      var cgroupParent: String?
      var user: String?
      var readOnlyDirectories: [String] = []
      var isolatedNetwork = false
      var limits = SandboxLimits()
      /// `sandbox session`: how long without a cell, and how long in all, before the session ends.
      var idleTimeout: Duration?
      var lifetime: Duration?
      /// `--input-dir`, `--arg`, `--stdin-file`, `--b64`.
      var inputDirectory: String?
      var arguments: [String] = []
      var stdinFile: String?
      var alwaysBase64 = false
      /// `--stream`: JSON lines of output events, then the result object.
      var stream = false
      /// `sandbox serve`.
      var socketPath: String?
      var maxConcurrent: Int?
      var noSelfTest = false
      var poolSize = 0
      var preload: [String] = []
    }

    /// One row of the option table: parsing, `--help`, value-taking and the command check all read it.
    struct Option: Sendable {
      enum Group: String, CaseIterable {
        case configuration = "configuration (every command):"
        case selfTest = "sandbox (self-tests):"
        case run = "sandbox run:"
        case session = "sandbox session (also takes --mnt-dir, --env, and --timeout as each cell's default):"
        case serve = "sandbox serve (JSON-lines requests; see the README's protocol):"
        case limits = "limits (every command; 0 switches off a limit whose minimum allows it):"
      }
      var names: [String]
      /// The value's placeholder in `--help`; nil for a switch.
      var value: String?
      var group: Group
      var repeatable = false
      var help: String
      var apply: @Sendable (inout Options, String) throws(SandboxError) -> Void

      var commands: [Command] {
        switch group {
        case .configuration, .limits: [.selfTest, .run, .session, .serve]
        case .selfTest: [.selfTest]
        case .run: Option.sharedWithSession.contains(names[0]) ? [.run, .session] : [.run]
        case .session: [.session]
        case .serve: [.serve]
        }
      }

      /// The options of `sandbox run` that `sandbox session` takes too.
      static let sharedWithSession: Set<String> = ["--mnt-dir", "--env", "--timeout"]

      static func flag(
        _ names: String..., group: Group, _ help: String,
        _ apply: @escaping @Sendable (inout Options) throws(SandboxError) -> Void
      ) -> Option {
        Option(names: names, value: nil, group: group, help: help) { (options, _) throws(SandboxError) in
          try apply(&options)
        }
      }

      static func value(
        _ name: String, _ value: String, group: Group, repeatable: Bool = false, _ help: String,
        _ apply: @escaping @Sendable (inout Options, String) throws(SandboxError) -> Void
      ) -> Option {
        Option(names: [name], value: value, group: group, repeatable: repeatable, help: help, apply: apply)
      }

      /// A limit that 0 switches off: N `unit`s of a `SandboxLimits` field. Its help shows the default.
      static func limit(
        _ name: String, _ help: String, _ field: WritableKeyPath<SandboxLimits, Int?> & Sendable, unit: Int = 1
      ) -> Option {
        let initial = SandboxLimits()[keyPath: field].map { "default \($0 / unit)" } ?? "default off"
        return Option(names: [name], value: "N", group: .limits, help: "\(help) (\(initial))") {
          (options, text) throws(SandboxError) in
          let number = try Option.count(name, text, minimum: 0)
          options.limits[keyPath: field] = number == 0 ? nil : number * unit
        }
      }

      /// A limit that cannot be switched off: at least `minimum` (or 0 for `zero`, e.g. "no cap").
      static func limit(
        _ name: String, _ help: String, _ field: WritableKeyPath<SandboxLimits, Int> & Sendable, unit: Int = 1,
        minimum: Int, zero: Int? = nil
      ) -> Option {
        let initial = "default \(SandboxLimits()[keyPath: field] / unit)"
        return Option(names: [name], value: "N", group: .limits, help: "\(help) (\(initial))") {
          (options, text) throws(SandboxError) in
          let number = try Option.count(name, text, minimum: zero == nil ? minimum : 0)
          options.limits[keyPath: field] = number == 0 && zero != nil ? zero! : number * unit
        }
      }

      static func count(_ name: String, _ text: String, minimum: Int) throws(SandboxError) -> Int {
        guard let number = Int(text), number >= 0, number <= 1 << 40 else {
          throw .usage("\(name) takes a whole number ≥ 0, got '\(Sys.printable(text))'")
        }
        guard number >= minimum else { throw .usage("\(name) needs at least \(minimum)") }
        return number
      }
    }

    /// Every option, in `--help`'s order. A mode flag's row says which mode it selects.
    static let optionTable: [Option] = [
      .value("--venv", "PATH", group: .configuration, "the venv whose interpreter runs the code (read-only)") {
        $0.venv = $1
      },
      .value("--apparmor-profile-name", "NAME", group: .configuration, "the enforce-mode profile confining every run") {
        $0.profile = $1
      },
      .value("--ro-dir", "DIR", group: .configuration, repeatable: true, "a host directory bound read-only (checked)") {
        $0.readOnlyDirectories.append($1)
      },
      .value("--input-dir", "DIR", group: .configuration, "a directory below the temp dir, bound read-only at /input") {
        $0.inputDirectory = $1
      },
      .flag("--no-apparmor", group: .configuration, "run without the AppArmor layer (says so); the others stay") {
        $0.noAppArmor = true
      },
      .flag("--enable-network", group: .configuration, "share the host's network (the default)") {
        options throws(SandboxError) in
        try CLI.setNetwork(&options, true)
      },
      .flag("--isolated-network", group: .configuration, "network on in a namespace of its own, through pasta") {
        options throws(SandboxError) in
        try CLI.setNetwork(&options, true)
        options.isolatedNetwork = true
      },
      .flag("--disable-network", group: .configuration, "a network namespace with loopback only") {
        options throws(SandboxError) in
        try CLI.setNetwork(&options, false)
      },
      .flag("--no-seccomp", group: .configuration, "an allow-all seccomp filter (for benchmarks; weaker)") {
        $0.noSeccomp = true
      },
      .flag("--ignore-profile-diffs", group: .configuration, "use a loaded profile that differs from the generated one")
      {
        $0.ignoreProfileDiffs = true
      },
      .value("--cgroup-parent", "DIR", group: .configuration, "the delegated cgroup v2 dir runs' cgroups go in") {
        $0.cgroupParent = $1
      },
      .flag("--require-cgroup", group: .configuration, "refuse to run without the cgroup layer") {
        $0.requireCgroup = true
      },
      .flag("--no-cgroup", group: .configuration, "no cgroup of the run's own, even where one can be made") {
        $0.noCgroup = true
      },
      .value("--user", "NAME|UID", group: .configuration, "root only: run bwrap and the payload as this account") {
        $0.user = $1
      },
      .flag("--verbose", group: .selfTest, "print every test, not only failures and skips") { $0.verbose = true },
      .flag("--extra-tests", group: .selfTest, "add the extended suite (sandbox_extra_tests.swift)") {
        $0.extraTests = true
      },
      .flag("--interactive", group: .selfTest, "a sandboxed Python REPL on this terminal") {
        options throws(SandboxError) in
        try CLI.select(.interactive, in: &options)
      },
      .flag("--print-apparmor-profile", group: .selfTest, "print the profile this venv needs (any kernel)") {
        options throws(SandboxError) in
        try CLI.select(.printProfile, in: &options)
      },
      .value("--code", "CODE", group: .run, "the Python code (without --code or --script: stdin)") { $0.code = $1 },
      .value("--script", "/mnt/REL.py", group: .run, "a script inside the mount dir") { $0.script = $1 },
      .value("--arg", "VALUE", group: .run, repeatable: true, "an argument for the payload (sys.argv[1:])") {
        $0.arguments.append($1)
      },
      .value(
        "--stdin-file", "PATH", group: .run, "the payload's stdin (else stdin with --code or --script, unless a tty)"
      ) {
        $0.stdinFile = $1
      },
      .value("--mnt-dir", "DIR", group: .run, "a directory below the temp dir, bound read-write at /mnt") {
        $0.mountDirectory = $1
      },
      .value("--timeout", "SECONDS", group: .run, "wall-clock limit (> 0); 124 when it strikes") {
        options, text throws(SandboxError) in
        options.timeout = try CLI.parseTimeout(text)
      },
      .value("--env", "NAME=VALUE", group: .run, repeatable: true, "an extra environment variable") {
        options, pair throws(SandboxError) in
        guard let equals = pair.firstIndex(of: "=") else {
          throw .usage("--env takes NAME=VALUE, got '\(Sys.printable(pair))'")
        }
        let name = String(pair[..<equals])
        guard Bwrap.isEnvironmentName(name) else { throw SandboxError.invalidEnvironment(name: name) }
        options.environment[name] = String(pair[pair.index(after: equals)...])
      },
      .flag("--json", group: .run, "print one JSON object (schema 3) instead of the streams") { $0.json = true },
      .flag("--b64", group: .run, "with --json: stdout_b64 and stderr_b64 always, not only for non-UTF-8") {
        $0.alwaysBase64 = true
      },
      .flag("--stream", group: .run, "JSON lines: each output chunk as it comes, then the --json object") {
        $0.stream = true
        $0.json = true
      },
      .value(
        "--output", "REL", group: .run, repeatable: true, "with --json and --mnt-dir: return this file of the mount dir"
      ) {
        $0.outputs.append($1)
      },
      .flag("--print-bwrap-argv", group: .run, "print this run's bwrap command line and run nothing") {
        options throws(SandboxError) in
        try CLI.select(.printArgv, in: &options)
      },
      .value(
        "--idle-timeout", "SECONDS", group: .session, "end the session after this long without a cell (default 600)"
      ) {
        options, text throws(SandboxError) in
        options.idleTimeout = try CLI.parseTimeout(text)
      },
      .value("--lifetime", "SECONDS", group: .session, "end the session this long after it opened (default 3600)") {
        options, text throws(SandboxError) in
        options.lifetime = try CLI.parseTimeout(text)
      },
      .value("--socket", "PATH", group: .serve, "serve on this Unix socket (its dir: 0700, yours) instead of stdin") {
        $0.socketPath = $1
      },
      .value("--max-concurrent", "N", group: .serve, "runs and sessions at once; 4N more wait, then refused") {
        options, text throws(SandboxError) in
        options.maxConcurrent = try Option.count("--max-concurrent", text, minimum: 1)
      },
      .flag("--no-self-test", group: .serve, "start without the base self-test suite passing first (the gate)") {
        $0.noSelfTest = true
      },
      .value(
        "--pool", "N", group: .serve, "keep N sandboxes started for runs without mnt_dir (on top of --max-concurrent)"
      ) {
        options, text throws(SandboxError) in
        options.poolSize = try Option.count("--pool", text, minimum: 1)
      },
      .value(
        "--preload", "MODULE", group: .serve, repeatable: true,
        "with --pool: import this module in each waiting sandbox"
      ) {
        $0.preload.append($1)
      },
      .limit("--cpu-seconds", "CPU seconds per process (RLIMIT_CPU)", \.cpuSeconds),
      .limit("--memory-mb", "MiB of memory (cgroup: the run's; else heap per process)", \.memoryBytes, unit: 1 << 20),
      .limit("--max-file-mb", "largest written file in MiB (RLIMIT_FSIZE)", \.fileSizeBytes, unit: 1 << 20),
      .limit("--max-processes", "tasks of the run, pid 1 included (pids.max or RLIMIT_NPROC)", \.maxProcesses),
      .limit("--max-open-files", "descriptors per process, at least 16", \.openFiles, minimum: 16),
      .limit("--tmpfs-mb", "MiB of each writable tmpfs, at least 1", \.tmpfsBytes, unit: 1 << 20, minimum: 1),
      .limit("--tmpfs-inodes", "inodes each writable tmpfs may hold, at least 100", \.tmpfsInodes, minimum: 100),
      .limit("--max-mnt-mb", "MiB the mount dir's filesystem may grow", \.mountDirectoryBytes, unit: 1 << 20),
      .limit("--max-mnt-inodes", "inodes the mount dir's filesystem may gain", \.mountDirectoryInodes),
      .limit("--address-space-mb", "address space per process in MiB (RLIMIT_AS)", \.addressSpaceBytes, unit: 1 << 20),
      .limit("--max-output-bytes", "bytes kept per output stream", \.outputLimitBytes, minimum: 1, zero: .max),
      .value("--cpus", "N", group: .limits, "CPUs' worth of time, e.g. 1.5 (cgroup cpu.max) (default off)") {
        options, text throws(SandboxError) in
        guard let cpus = Double(text), cpus.isFinite, cpus >= 0, cpus <= 4096 else {
          throw .usage("--cpus takes a number of CPUs ≥ 0 (such as 0.5 or 2), got '\(Sys.printable(text))'")
        }
        guard cpus == 0 || cpus >= 0.01 else { throw .usage("--cpus needs at least 0.01") }
        options.limits.cpus = cpus == 0 ? nil : cpus
      },
      .flag("-h", "--help", group: .configuration, "this text") { $0.mode = .help },
    ]

    static func setNetwork(_ options: inout Options, _ enabled: Bool) throws(SandboxError) {
      if options.network != nil {
        throw .usage("--enable-network, --isolated-network and --disable-network contradict each other")
      }
      options.network = enabled
    }

    /// A mode flag: one per command line (`--help` overrides them all).
    static func select(_ mode: Mode, in options: inout Options) throws(SandboxError) {
      switch options.mode {
      case .selfTest, .run: options.mode = mode
      case .help: break
      case let other: throw .usage("\(mode.flag ?? "") and \(other.flag ?? "") contradict each other")
      }
    }

    /// `--help`, generated from the option table (the file's header shows the same text).
    static var usageText: String {
      var lines = [
        "usage: sandbox [OPTION]...        check this host, then run the self-test suite",
        "       sandbox run [OPTION]...    run Python code in a fresh sandbox",
        "       sandbox session [OPTION]... one interpreter kept between cells: JSON lines in and out",
        "       sandbox serve [OPTION]...  a JSON-lines server: runs, sessions, cancel, health",
      ]
      for group in Option.Group.allCases {
        lines.append("")
        lines.append(group.rawValue)
        for option in optionTable where option.group == group {
          let name = option.names.joined(separator: ", ") + (option.value.map { " \($0)" } ?? "")
          let padded = name + String(repeating: " ", count: max(1, 30 - name.count))
          lines.append("  " + padded + option.help + (option.repeatable ? " (repeatable)" : ""))
        }
      }
      lines += [
        "",
        "The venv and profile come from \(SandboxConfig.venvVariable) and \(SandboxConfig.profileVariable)",
        "unless --venv and --apparmor-profile-name are passed together (--venv alone counts with",
        "--no-apparmor).",
        "",
        "exit status: self-tests \(ExitCode.success) all passed, \(ExitCode.failed) a test failed; run: the payload's own,",
        "\(ExitCode.timedOut) timed out, 128+N killed by signal N; run --json: \(ExitCode.success) whenever the payload ran",
        "(its status is in the JSON), \(ExitCode.failed) internal failure; all: \(ExitCode.usage) usage or configuration error,",
        "\(ExitCode.cannotRun) the sandbox could not be set up.",
      ]
      return lines.joined(separator: "\n")
    }

    /// Parses argv (without the program name) through the option table.
    /// - Throws: `SandboxError.usage` for unknown, repeated, malformed or contradictory flags.
    static func parse(_ arguments: [String]) throws(SandboxError) -> Options {
      var options = Options()
      var rest = arguments[...]
      let commands: [String: (Command, Mode)] = [
        "run": (.run, .run), "session": (.session, .session), "serve": (.serve, .serve),
      ]
      let (command, mode) = rest.first.flatMap { commands[$0] } ?? (.selfTest, .selfTest)
      if command != .selfTest {
        options.mode = mode
        rest = rest.dropFirst()
      }
      var seen: Set<String> = []
      while let argument = rest.popFirst() {
        var flag = argument
        var inlineValue: String? = nil
        if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
          flag = String(argument[..<equals])
          inlineValue = String(argument[argument.index(after: equals)...])
        }
        guard let option = optionTable.first(where: { $0.names.contains(flag) }) else {
          if ["run", "session", "serve"].contains(argument) {
            throw .usage("'\(argument)' is a subcommand and comes first: sandbox \(argument) [OPTION]...")
          }
          throw .usage("unknown argument '\(Sys.printable(argument))'")
        }
        guard option.repeatable || seen.insert(option.names[0]).inserted else { throw .usage("\(flag) is given twice") }
        guard option.commands.contains(command) else {
          let owner =
            option.commands.contains(.run)
            ? "'sandbox run'"
            : option.commands.contains(.session)
              ? "'sandbox session'"
              : option.commands.contains(.serve) ? "'sandbox serve'" : "the self-test mode (no subcommand)"
          throw .usage("\(flag) belongs to \(owner)")
        }
        if option.value == nil {
          guard inlineValue == nil else { throw .usage("\(flag) takes no value") }
          try option.apply(&options, "")
        } else {
          guard let value = inlineValue ?? rest.popFirst() else { throw .usage("\(flag) needs a value") }
          try option.apply(&options, value)
        }
      }
      if options.code != nil && options.script != nil { throw .usage("--code and --script contradict each other") }
      if options.alwaysBase64 && !options.json { throw .usage("--b64 adds fields to the JSON: it needs --json") }
      if options.stdinFile != nil && options.code == nil && options.script == nil {
        throw .usage("--stdin-file is the payload's stdin, but without --code or --script stdin is the code")
      }
      if !options.outputs.isEmpty && (!options.json || options.mountDirectory == nil) {
        throw .usage("--output returns files of the mount dir in the JSON: it needs --json and --mnt-dir")
      }
      if options.noAppArmor && options.profile != nil {
        throw .usage("--apparmor-profile-name and --no-apparmor contradict each other")
      }
      if let script = options.script {
        // before anything runs
        do { _ = try Preflight.scriptRelativePath(script) } catch { throw .usage(error.description) }
      }
      return options
    }

    static func parseTimeout(_ text: String) throws(SandboxError) -> Duration {
      guard let seconds = Double(text), seconds.isFinite, seconds > 0, seconds <= 1e7 else {
        throw .invalidTimeout(text)
      }
      return .nanoseconds(Int64(seconds * 1e9))
    }

    /// Resolves flags and environment into a configuration, following the original's rules.
    static func makeConfig(_ options: CLI.Options, warn: (String) -> Void) throws(SandboxError) -> SandboxConfig {
      var config: SandboxConfig
      if options.noAppArmor {
        let venv = options.venv ?? Sys.environmentValue(SandboxConfig.venvVariable)
        guard let venv, !venv.isEmpty else {
          throw .missingSetting(variable: SandboxConfig.venvVariable, flag: "--venv PATH")
        }
        config = SandboxConfig(venvPath: venv, appArmor: .disabled)
      } else if let venv = options.venv, let profile = options.profile {
        config = SandboxConfig(venvPath: venv, appArmor: .profile(profile))
      } else {
        let environmentComplete = [SandboxConfig.venvVariable, SandboxConfig.profileVariable].allSatisfy {
          !(Sys.environmentValue($0) ?? "").isEmpty
        }
        if options.venv != nil && !environmentComplete {
          // The original's rule would fall back to the environment, which has nothing: name what
          // the command line lacks instead.
          throw .missingSetting(variable: SandboxConfig.profileVariable, flag: "--apparmor-profile-name NAME")
        }
        if options.profile != nil && !environmentComplete {
          throw .missingSetting(variable: SandboxConfig.venvVariable, flag: "--venv PATH")
        }
        if options.venv != nil || options.profile != nil {
          warn(
            "--venv and --apparmor-profile-name only count together; ignoring the one given and using \(SandboxConfig.venvVariable) and \(SandboxConfig.profileVariable)"
          )
        }
        config = try SandboxConfig.fromEnvironment()
      }
      if let network = options.network { config.networkEnabled = network }
      config.limits = options.limits
      config.seccompEnabled = !options.noSeccomp
      config.ignoreProfileDiffs = options.ignoreProfileDiffs
      config.cgroupEnabled = !options.noCgroup
      config.cgroupParent = options.cgroupParent
      config.requireCgroup = options.requireCgroup
      config.user = options.user
      config.readOnlyDirectories = options.readOnlyDirectories
      config.isolatedNetwork = options.isolatedNetwork
      config.inputDirectory = options.inputDirectory
      if options.noCgroup && (options.requireCgroup || options.cgroupParent != nil) {
        throw .usage("--no-cgroup contradicts --require-cgroup and --cgroup-parent")
      }
      return config
    }

    /// The version of the JSON `sandbox run --json` prints (`schema`): raised whenever fields are
    /// added; fields are never renamed or removed. 1: this layout (before it, the object had no
    /// `schema` and no `*_b64`, `changes_truncated`, `cleanup_incomplete` or `outputs`); 2 adds
    /// `memory_peak_bytes` and `cpu_seconds` (the cgroup's accounting, null without it).
    /// 3 adds the error object: a run that fails before its payload ran prints
    /// `{"schema": 3, "error": {"kind", "message", "hint", "exit_status"}}` instead of a result.
    static let jsonSchema = 3

    /// The error object `sandbox run --json` prints on stdout when there is no result: `kind` is
    /// the `SandboxError` case in snake_case (stable, for programs), `message` and `hint` are for
    /// people, `exit_status` is the process's own.
    static func makeErrorJSONBytes(_ error: SandboxError, exitStatus: Int32, id: CLI.JSONValue? = nil) -> [UInt8] {
      var json = CLI.JSONWriter()
      json.raw("{\"schema\": \(CLI.jsonSchema), ")
      if let id {  // `sandbox session`: the request's id, when it had one
        json.raw("\"id\": ")
        json.value(id)
        json.raw(", ")
      }
      json.error(error)
      json.raw(", \"exit_status\": \(exitStatus)}}\n")
      return json.bytes
    }

    /// The case name of `error` in snake_case (`missingSetting` → `missing_setting`), from the
    /// enum itself, so that a new case gets its kind without a table to keep in step.
    static func errorKind(_ error: SandboxError) -> String {
      let name: String
      if let label = Mirror(reflecting: error).children.first?.label {
        name = label
      } else {
        switch error {
        case .bwrapNotFound: name = "bwrapNotFound"
        case .setprivNotFound: name = "setprivNotFound"
        default: name = "runCancelled"  // the only other case without associated values
        }
      }
      var kind = ""
      for character in name {
        if character.isUppercase { kind += "_" + character.lowercased() } else { kind.append(character) }
      }
      return kind
    }

    /// One file of `--output`, as the JSON carries it.
    struct OutputReport {
      var path: String
      var file: SandboxOutputFile?
      var error: String?
    }

    /// Renders a result as the single JSON object `sandbox run --json` prints.
    ///
    /// Text fields hold valid UTF-8 for people; where the bytes are not valid UTF-8, they appear
    /// exactly, base64-encoded, in a parallel field: `stdout_b64` and `stderr_b64` (present only
    /// then), `b64` instead of `text` for an output file. A changed or deleted name that is valid
    /// UTF-8 appears in `changed_files`/`deleted_files`; one that is not, only in
    /// `changed_files_b64`/`deleted_files_b64`: every entry exactly once, in one of the two.
    static func makeJSON(_ result: SandboxResult, outputs: [CLI.OutputReport] = []) -> String {
      String(decoding: makeJSONBytes(result, outputs: outputs), as: UTF8.self)
    }

    /// `makeJSON`'s bytes, written once into one buffer: the host holds about the JSON's own size
    /// (up to 6 bytes per byte printed, for control characters) and no copies of it.
    static func makeJSONBytes(_ result: SandboxResult, outputs: [CLI.OutputReport] = [], alwaysBase64: Bool = false)
      -> [UInt8]
    {
      var json = CLI.JSONWriter()
      json.reserve(result.stdout.count + result.stderr.count)
      let (seconds, attoseconds) = result.duration.components
      let duration = Double(seconds) + Double(attoseconds) / 1e18
      json.raw("{\"schema\": \(CLI.jsonSchema), \"returncode\": \(result.returnCode), ")
      json.stream(result.stdout, "stdout", alwaysBase64: alwaysBase64)
      json.raw(", ")
      json.stream(result.stderr, "stderr", alwaysBase64: alwaysBase64)
      json.raw(", ")
      json.names(result.changedPaths, "changed_files")
      json.raw(", ")
      json.names(result.deletedPaths, "deleted_files")
      json.raw(", \"timed_out\": \(result.timedOut), \"output_truncated\": \(result.outputTruncated), ")
      json.raw("\"duration_seconds\": \(duration), \"limit_hit\": ")
      json.stringOrNull(result.limitHit?.rawValue)
      json.raw(", \"layers\": ")
      json.list(result.layers)
      json.raw(", \"changes_truncated\": \(result.changesTruncated), \"cleanup_incomplete\": ")
      json.stringOrNull(result.cleanupIncomplete)
      json.raw(", \"memory_peak_bytes\": \(result.memoryPeakBytes.map { "\($0)" } ?? "null"), \"cpu_seconds\": ")
      json.raw(
        result.cpuTime.map { "\(Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18)" } ?? "null")
      if !outputs.isEmpty {
        json.raw(", \"outputs\": [")
        for (index, output) in outputs.enumerated() {
          json.raw(index == 0 ? "{\"path\": " : ", {\"path\": ")
          json.string(output.path)
          if let file = output.file {
            json.raw(", \"size\": \(file.size), \"truncated\": \(file.truncated), ")
            if let text = Sys.validUTF8(file.bytes) {
              json.raw("\"text\": ")
              json.string(text)
            } else {
              json.raw("\"b64\": ")
              json.base64(file.bytes)
            }
          } else {
            json.raw(", \"error\": ")
            json.string(output.error ?? "unreadable")
          }
          json.raw("}")
        }
        json.raw("]")
      }
      json.raw("}")
      return json.bytes
    }

    /// The bytes of a JSON document, appended in place.
    struct JSONWriter {
      private(set) var bytes: [UInt8] = []

      mutating func reserve(_ count: Int) { bytes.reserveCapacity(count + count / 4 + 4096) }
      mutating func raw(_ text: String) { bytes.append(contentsOf: text.utf8) }

      /// A JSON string: quotes, backslashes and control characters (and DEL) escaped.
      mutating func string(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        for scalar in text.unicodeScalars { append(scalar) }
        bytes.append(UInt8(ascii: "\""))
      }

      /// A JSON string of UTF-8 bytes, each invalid sequence replaced by U+FFFD (as
      /// `String(decoding:as:)` does), decoded in place rather than copied into a String first.
      mutating func string(decoding data: [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        var iterator = data.makeIterator()
        var decoder = UTF8()
        decoding: while true {
          switch decoder.decode(&iterator) {
          case .scalarValue(let scalar): append(scalar)
          case .error: append("\u{FFFD}")
          case .emptyInput: break decoding
          }
        }
        bytes.append(UInt8(ascii: "\""))
      }

      private mutating func append(_ scalar: Unicode.Scalar) {
        switch scalar {
        case "\"": raw("\\\"")
        case "\\": raw("\\\\")
        case "\n": raw("\\n")
        case "\r": raw("\\r")
        case "\t": raw("\\t")
        case _ where scalar.value < 0x20 || scalar.value == 0x7f:
          let hex = Array("0123456789abcdef".utf8)
          bytes += [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")]
          bytes += [hex[Int(scalar.value >> 4)], hex[Int(scalar.value & 0xf)]]
        default: bytes.append(contentsOf: UTF8.encode(scalar)!)  // a scalar always encodes
        }
      }

      mutating func stringOrNull(_ text: String?) {
        if let text { string(text) } else { raw("null") }
      }

      /// `"error": {"kind", "message", "hint"` of an error object, left open for more fields.
      mutating func error(_ error: SandboxError) {
        raw("\"error\": {\"kind\": ")
        string(CLI.errorKind(error))
        raw(", \"message\": ")
        string(error.description)
        raw(", \"hint\": ")
        stringOrNull(error.hint)
      }

      /// A request's echoed `id`: a string or a number, else null.
      mutating func value(_ value: CLI.JSONValue?) {
        switch value {
        case .string(let text)?: string(text)
        case .number(let number)? where number == number.rounded() && abs(number) < 1e15: raw("\(Int64(number))")
        case .number(let number)?: raw("\(number)")
        default: raw("null")
        }
      }

      mutating func base64(_ data: [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        Sys.appendBase64(data, to: &bytes)
        bytes.append(UInt8(ascii: "\""))
      }

      mutating func list(_ items: [String]) {
        raw("[")
        for (index, item) in items.enumerated() {
          if index > 0 { raw(", ") }
          string(item)
        }
        raw("]")
      }

      /// A stream: its text (invalid UTF-8 replaced) and, when it is not valid UTF-8 (or always,
      /// on request), its exact bytes.
      mutating func stream(_ data: [UInt8], _ key: String, alwaysBase64: Bool = false) {
        raw("\"\(key)\": ")
        string(decoding: data)
        if alwaysBase64 || Sys.validUTF8(data) == nil {
          raw(", \"\(key)_b64\": ")
          base64(data)
        }
      }

      /// Names: the valid UTF-8 ones as text under `key`, the others as base64 under `key_b64`.
      mutating func names(_ paths: [[UInt8]], _ key: String) {
        raw("\"\(key)\": ")
        list(paths.compactMap(Sys.validUTF8))
        raw(", \"\(key)_b64\": [")
        for (index, path) in paths.filter({ Sys.validUTF8($0) == nil }).enumerated() {
          if index > 0 { raw(", ") }
          base64(path)
        }
        raw("]")
      }
    }

    /// A JSON value as `JSONReader` parses it (requests on stdin: the caller's, bounded, never trusted).
    enum JSONValue: Equatable {
      case null
      case bool(Bool)
      case number(Double)
      case string(String)
      case array([JSONValue])
      case object([String: JSONValue])
    }

    /// A strict JSON parser (RFC 8259) for one document, with a depth cap; no Foundation.
    struct JSONReader {
      private let bytes: [UInt8]
      private var index = 0
      private var values = 0
      static let depthLimit = 32
      /// Values in one document (a request needs a few dozen): bounds the memory a line may cost,
      /// which is otherwise many times its size in parsed values.
      static let valueLimit = 100_000

      /// Parses `bytes` as one JSON document.
      /// - Throws: `SandboxError.invalidCell` saying what is wrong and where.
      static func parse(_ bytes: [UInt8]) throws(SandboxError) -> JSONValue {
        var reader = JSONReader(bytes: bytes)
        let value = try reader.value(depth: 0)
        reader.skipSpace()
        guard reader.index == bytes.count else { throw reader.failure("text after the JSON value") }
        return value
      }

      private init(bytes: [UInt8]) { self.bytes = bytes }

      private func failure(_ what: String) -> SandboxError {
        .invalidCell(reason: "malformed JSON at byte \(index): \(what)")
      }

      private mutating func skipSpace() {
        while index < bytes.count && [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
      }

      private mutating func expect(_ word: String) throws(SandboxError) {
        let expected = Array(word.utf8)
        guard bytes.count - index >= expected.count, Array(bytes[index..<(index + expected.count)]) == expected else {
          throw failure("expected \(word)")
        }
        index += expected.count
      }

      private mutating func value(depth: Int) throws(SandboxError) -> JSONValue {
        guard depth < JSONReader.depthLimit else { throw failure("nested deeper than \(JSONReader.depthLimit)") }
        values += 1
        guard values <= JSONReader.valueLimit else { throw failure("more than \(JSONReader.valueLimit) values") }
        skipSpace()
        guard index < bytes.count else { throw failure("unexpected end") }
        switch bytes[index] {
        case UInt8(ascii: "{"):
          index += 1
          var members: [String: JSONValue] = [:]
          skipSpace()
          if index < bytes.count && bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(members)
          }
          while true {
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw failure("expected a key") }
            let key = try string()
            guard members[key] == nil else { throw failure("the key '\(Sys.printable(key))' appears twice") }
            skipSpace()
            try expect(":")
            members[key] = try value(depth: depth + 1)
            skipSpace()
            guard index < bytes.count else { throw failure("unexpected end") }
            index += 1
            if bytes[index - 1] == UInt8(ascii: "}") { return .object(members) }
            guard bytes[index - 1] == UInt8(ascii: ",") else { throw failure("expected , or }") }
          }
        case UInt8(ascii: "["):
          index += 1
          var items: [JSONValue] = []
          skipSpace()
          if index < bytes.count && bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(items)
          }
          while true {
            items.append(try value(depth: depth + 1))
            skipSpace()
            guard index < bytes.count else { throw failure("unexpected end") }
            index += 1
            if bytes[index - 1] == UInt8(ascii: "]") { return .array(items) }
            guard bytes[index - 1] == UInt8(ascii: ",") else { throw failure("expected , or ]") }
          }
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"):
          try expect("true")
          return .bool(true)
        case UInt8(ascii: "f"):
          try expect("false")
          return .bool(false)
        case UInt8(ascii: "n"):
          try expect("null")
          return .null
        default: return .number(try number())
        }
      }

      /// RFC 8259's number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, finite.
      private mutating func number() throws(SandboxError) -> Double {
        let start = index
        func digits() -> Int {
          let first = index
          while index < bytes.count && bytes[index] >= 0x30 && bytes[index] <= 0x39 { index += 1 }
          return index - first
        }
        if index < bytes.count && bytes[index] == UInt8(ascii: "-") { index += 1 }
        let integerStart = index
        let integerDigits = digits()
        guard integerDigits > 0, integerDigits == 1 || bytes[integerStart] != 0x30 else {
          throw failure("not a JSON value")
        }
        if index < bytes.count && bytes[index] == UInt8(ascii: ".") {
          index += 1
          guard digits() > 0 else { throw failure("not a JSON value") }
        }
        if index < bytes.count && (bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E")) {
          index += 1
          if index < bytes.count && (bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-")) {
            index += 1
          }
          guard digits() > 0 else { throw failure("not a JSON value") }
        }
        guard let number = Double(String(decoding: bytes[start..<index], as: UTF8.self)), number.isFinite else {
          throw failure("a number out of range")
        }
        return number
      }

      private mutating func string() throws(SandboxError) -> String {
        index += 1  // the opening quote
        var scalars = String.UnicodeScalarView()
        var pendingHigh: UInt32? = nil
        while true {
          guard index < bytes.count else { throw failure("an unterminated string") }
          let byte = bytes[index]
          if byte == UInt8(ascii: "\"") {
            index += 1
            guard pendingHigh == nil else { throw failure("a lone surrogate escape") }
            return String(scalars)
          }
          guard byte >= 0x20 else { throw failure("a control character in a string") }
          if byte != UInt8(ascii: "\\") {
            // a run of plain bytes, which must be valid UTF-8
            let start = index
            while index < bytes.count && bytes[index] != UInt8(ascii: "\"") && bytes[index] != UInt8(ascii: "\\")
              && bytes[index] >= 0x20
            {
              index += 1
            }
            guard pendingHigh == nil, let text = Sys.validUTF8(Array(bytes[start..<index])) else {
              throw failure("a string that is not valid UTF-8")
            }
            scalars.append(contentsOf: text.unicodeScalars)
            continue
          }
          guard index + 1 < bytes.count else { throw failure("an unterminated escape") }
          let escape = bytes[index + 1]
          index += 2
          let simple: [UInt8: Unicode.Scalar] = [
            UInt8(ascii: "\""): "\"", UInt8(ascii: "\\"): "\\", UInt8(ascii: "/"): "/", UInt8(ascii: "b"): "\u{8}",
            UInt8(ascii: "f"): "\u{c}", UInt8(ascii: "n"): "\n", UInt8(ascii: "r"): "\r", UInt8(ascii: "t"): "\t",
          ]
          if let scalar = simple[escape] {
            guard pendingHigh == nil else { throw failure("a lone surrogate escape") }
            scalars.append(scalar)
            continue
          }
          let hex = Array("0123456789abcdefABCDEF".utf8)
          guard escape == UInt8(ascii: "u"), bytes.count - index >= 4,
            bytes[index..<(index + 4)].allSatisfy(hex.contains),
            let code = UInt32(String(decoding: bytes[index..<(index + 4)], as: UTF8.self), radix: 16)
          else { throw failure("an unknown escape") }
          index += 4
          switch (pendingHigh, code) {
          case (nil, 0xD800...0xDBFF): pendingHigh = code
          case (let high?, 0xDC00...0xDFFF):
            pendingHigh = nil
            // a pair gives 0x10000...0x10FFFF: always a scalar
            scalars.append(Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00))!)
          case (nil, _):
            guard let scalar = Unicode.Scalar(code) else { throw failure("a lone surrogate escape") }
            scalars.append(scalar)
          default: throw failure("a lone surrogate escape")
          }
        }
      }
    }

    /// One cell request of `sandbox session`: `{"code": "…"}`, with `"timeout"` (seconds, > 0)
    /// and `"id"` (a string or number, echoed in the reply) optional; nothing else.
    struct CellRequest {
      var code: String
      var timeout: Duration?
      var id: JSONValue?

      /// - Throws: `SandboxError.invalidCell` naming the field at fault.
      init(line: [UInt8]) throws(SandboxError) {
        guard case .object(let fields) = try JSONReader.parse(line) else {
          throw .invalidCell(reason: "a request is a JSON object such as {\"code\": \"1 + 1\"}")
        }
        if let unknown = fields.keys.sorted().first(where: { !["code", "timeout", "id"].contains($0) }) {
          throw .invalidCell(reason: "unknown field '\(Sys.printable(unknown))' (the fields are code, timeout and id)")
        }
        guard case .string(let code)? = fields["code"] else { throw .invalidCell(reason: "\"code\" must be a string") }
        self.code = code
        switch fields["timeout"] {
        case nil, .null?: timeout = nil
        case .number(let seconds)? where seconds > 0 && seconds <= 1e7: timeout = .nanoseconds(Int64(seconds * 1e9))
        default: throw .invalidCell(reason: "\"timeout\" must be a number of seconds > 0")
        }
        switch fields["id"] {
        case nil: id = nil
        case .string?, .number?: id = fields["id"]
        default: throw .invalidCell(reason: "\"id\" must be a string or a number")
        }
      }
    }

    /// The longest request line `sandbox session` and `sandbox serve` read (a cell's code at its cap, escaped).
    static let requestLineLimitBytes = 2 * Lifecycle.SessionLink.frameLimitBytes

    /// Request lines from a descriptor, for `sandbox session` and `sandbox serve`: each line is
    /// scanned once (only new bytes are searched), blank lines are skipped, and a line past
    /// `requestLineLimitBytes` is reported once and dropped up to its end, never held.
    struct LineReader {
      static let tooLongReason = "a request line longer than \(CLI.requestLineLimitBytes) bytes"
      let fd: Int32
      private var pending: [UInt8] = []
      private var buffer = [UInt8](repeating: 0, count: 1 << 16)
      private var discarding = false

      init(fd: Int32) { self.fd = fd }

      /// One read: every complete line goes to `line` (which returns false to stop); false at the
      /// end of input or once `line` stopped. `waiting` runs as soon as the read returns.
      mutating func read(line: ([UInt8]) -> Bool, tooLong: () -> Void, waiting: () -> Void = {}) -> Bool {
        let count = Sys.readSome(fd, into: &buffer)
        waiting()
        if count <= 0 { return false }
        var start = 0
        while let newline = buffer[start..<count].firstIndex(of: UInt8(ascii: "\n")) {
          defer { start = newline + 1 }
          if discarding {
            discarding = false
            continue
          }
          let text = pending + buffer[start..<newline]
          pending = []
          if text.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
          if !line(text) { return false }
        }
        if !discarding { pending += buffer[start..<count] }
        if pending.count > CLI.requestLineLimitBytes {
          tooLong()
          pending = []
          discarding = true
        }
        return true
      }
    }

    /// One output event of `run --stream`: `{"event": "stdout"|"stderr", "data": …}` plus
    /// `data_b64` when the chunk is not valid UTF-8 (a chunk may end inside a character).
    static func makeEventJSONBytes(isStderr: Bool, _ bytes: [UInt8]) -> [UInt8] {
      var json = CLI.JSONWriter()
      json.reserve(bytes.count)
      json.raw("{\"event\": \"\(isStderr ? "stderr" : "stdout")\", ")
      json.stream(bytes, "data")
      json.raw("}\n")
      return json.bytes
    }

    /// One cell's result as `sandbox session` prints it: one line, schema 3 (see the README).
    static func makeCellJSONBytes(_ result: SandboxCellResult, cell: Int, id: JSONValue?) -> [UInt8] {
      var json = CLI.JSONWriter()
      json.reserve(result.stdout.count + result.stderr.count + result.images.reduce(0) { $0 + $1.count * 4 / 3 })
      json.raw("{\"schema\": \(CLI.jsonSchema), \"cell\": \(cell), \"id\": ")
      json.value(id)
      json.raw(", ")
      json.stream(result.stdout, "stdout")
      json.raw(", ")
      json.stream(result.stderr, "stderr")
      json.raw(", \"value\": ")
      json.stringOrNull(result.value)
      json.raw(", \"exception\": ")
      if let exception = result.exception {
        json.raw("{\"type\": ")
        json.string(exception.type)
        json.raw(", \"message\": ")
        json.string(exception.message)
        json.raw(", \"traceback\": ")
        json.list(exception.traceback)
        json.raw("}")
      } else {
        json.raw("null")
      }
      json.raw(", \"images\": [")
      for (index, image) in result.images.enumerated() {
        json.raw(index == 0 ? "{\"type\": \"image/png\", \"b64\": " : ", {\"type\": \"image/png\", \"b64\": ")
        json.base64(image)
        json.raw("}")
      }
      json.raw("], ")
      json.names(result.changedPaths, "changed_files")
      json.raw(", ")
      json.names(result.deletedPaths, "deleted_files")
      json.raw(", \"changes_truncated\": \(result.changesTruncated), \"timed_out\": \(result.timedOut), ")
      json.raw(
        "\"output_truncated\": \(result.outputTruncated), \"duration_seconds\": \(CLI.seconds(result.duration)), ")
      json.raw("\"limit_hit\": ")
      json.stringOrNull(result.limitHit?.rawValue)
      json.raw(", \"cpu_seconds\": \(result.cpuTime.map { "\(CLI.seconds($0))" } ?? "null"), ")
      json.raw("\"memory_peak_bytes\": \(result.memoryPeakBytes.map { "\($0)" } ?? "null"), \"session_ended\": ")
      json.stringOrNull(result.sessionEnded)
      json.raw("}\n")
      return json.bytes
    }

    static func seconds(_ duration: Duration) -> Double {
      Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// Runs `body` on the cooperative pool and blocks this (the command line's) thread until it is done.
    static func blocking<Value: Sendable>(_ body: @escaping @Sendable () async -> Value) -> Value {
      let handoff = Sys.Handoff<Value>()
      Task { handoff.put(await body()) }
      return handoff.take()
    }

    /// `sandbox session`: one session, cells from stdin (one JSON object per line), one JSON
    /// result per cell on stdout. Ends at end of input (the session is closed) or when the session
    /// ends by itself (its last result says why).
    static func runSessionCommand(_ options: CLI.Options) throws(SandboxError) -> Int32 {
      let sandbox = try CLI.makeSandbox(options)
      let sessionOptions = SandboxSession.Options(
        cellTimeout: options.timeout ?? .seconds(60), idleTimeout: options.idleTimeout ?? .seconds(600),
        lifetime: options.lifetime ?? .seconds(3600))
      let opened: Swift.Result<SandboxSession, SandboxError> = CLI.blocking {
        do throws(SandboxError) {
          return .success(
            try await sandbox.openSession(
              mountDirectory: options.mountDirectory, environment: options.environment, options: sessionOptions))
        } catch {
          return .failure(error)
        }
      }
      let session = try opened.get()
      // A session that ends by itself (idle, lifetime) while this thread waits for input says so
      // at once, not at the next line: the watcher reports it and exits while `waitingForInput` holds.
      let waitingForInput = Sys.Flag()
      _ = Sys.startThread(inline: false) {
        let end = CLI.blocking { await session.state.waitForEnd() }
        waitingForInput.ifSet {
          Sys.writeAll(1, CLI.makeErrorJSONBytes(.sessionEnded(reason: session.endReason ?? "it ended"), exitStatus: 0))
          CLI.reportSessionEnd(session, end)
          exit(0)
        }
      }
      var lines = CLI.LineReader(fd: 0)
      while session.endReason == nil {
        waitingForInput.set(true)
        let more = lines.read(
          line: { CLI.serveCell($0, session: session) },
          tooLong: {
            Sys.writeAll(1, CLI.makeErrorJSONBytes(.invalidCell(reason: CLI.LineReader.tooLongReason), exitStatus: 2))
          }, waiting: { waitingForInput.set(false) })
        if !more { break }
      }
      let end = CLI.blocking { await session.close() }
      CLI.reportSessionEnd(session, end)
      return 0
    }

    /// The notes on stderr once a session is over: why it ended (unless it was closed), and an
    /// incomplete clean-up of its mount dir.
    static func reportSessionEnd(_ session: SandboxSession, _ end: SandboxResult?) {
      if let reason = session.endReason, !reason.hasPrefix("it was closed") {
        CLI.printError("note: the session ended: \(reason)")
      }
      if let problem = end?.cleanupIncomplete {
        CLI.printError(
          "warning: the host's clean-up of the mount dir is incomplete (\(problem)); it is closed (mode 000): remove it, never read it by path"
        )
      }
    }

    /// One request line: its result (or an error object) on stdout. False once the session is over.
    static func serveCell(_ line: [UInt8], session: SandboxSession) -> Bool {
      let request: CLI.CellRequest
      do throws(SandboxError) {
        request = try CLI.CellRequest(line: line)
      } catch {
        Sys.writeAll(1, CLI.makeErrorJSONBytes(error, exitStatus: ExitCode.usage))
        return true
      }
      let outcome: Swift.Result<SandboxCellResult, SandboxError> = CLI.blocking {
        do throws(SandboxError) {
          return .success(try await session.execute(request.code, timeout: request.timeout))
        } catch {
          return .failure(error)
        }
      }
      switch outcome {
      case .success(let result):
        Sys.writeAll(1, CLI.makeCellJSONBytes(result, cell: result.number, id: request.id))
        return result.sessionEnded == nil
      case .failure(let error):
        Sys.writeAll(1, CLI.makeErrorJSONBytes(error, exitStatus: error.exitCode, id: request.id))
        if case .sessionEnded = error { return false }
        return true
      }
    }

    /// `sandbox serve`: JSON lines on stdin and stdout, or on a Unix socket, for any language.
    ///
    /// Protocol 1 (the README's "sandbox serve" section is the contract): every request is one
    /// object with an `id` (a string or number, unique among the connection's requests in
    /// flight) and an `op`; every line back carries that `id` and `"protocol": 1`. Requests run
    /// concurrently; their events and results interleave, one whole line at a time.
    final class Server: @unchecked Sendable {  // mutable state is guarded by `lock`
      static let protocolVersion = 1
      /// How many work requests may wait for a slot beyond `maxConcurrent` before new ones are refused.
      static let queueFactor = 4
      /// How long in-flight requests get to finish after SIGTERM before the process exits.
      static let shutdownGrace: Duration = .seconds(10)

      let sandbox: Sandbox
      let maxConcurrent: Int
      let gate: String
      /// `--pool`: the sandboxes kept started for runs without a mount dir.
      let pool: SandboxPool?
      private let lock = Sys.Mutex()
      /// A request in flight: its op, the session it names (exec, close), and its task.
      struct InFlight {
        var op: String
        var session: String?
        var task: Task<Void, Never>
      }
      private var tasks: [String: InFlight] = [:]  // "connection/id" → the request
      private var sessions: [String: SandboxSession] = [:]  // "connection/name" → session
      private var work = 0  // run and session.open requests in flight (or waiting for a slot)
      private var nextSession = 0
      private var stopping = false
      private var connections = 0
      /// Socket clients at once (each holds a descriptor and two threads); more are told to retry.
      static let connectionLimit = 128

      func admitConnection() -> Bool {
        lock.withLock {
          guard connections < Server.connectionLimit else { return false }
          connections += 1
          return true
        }
      }

      func connectionClosed() { lock.withLock { connections -= 1 } }

      init(sandbox: Sandbox, maxConcurrent: Int, gate: String, pool: SandboxPool? = nil) {
        self.sandbox = sandbox
        self.maxConcurrent = maxConcurrent
        self.gate = gate
        self.pool = pool
      }

      /// One client: lines in on `input`, lines out on `output` through a writer thread, so a
      /// slow client never holds a request's thread. A client whose unsent replies pass
      /// `queueLimitBytes` (it does not read) is dropped: its socket is shut down, which wakes both
      /// the writer (blocked in `write`) and the reader. A socket's descriptor is closed only once
      /// both threads are done with it, so its number is never reused under one of them.
      final class Connection: @unchecked Sendable {  // `queue`, `queued`, `open`, `users` are guarded by `mutex`
        static let queueLimitBytes = 64 << 20
        let name: String
        let input: Int32
        let output: Int32
        /// A socket (fd ≥ 3, input and output the same): shut down to drop, closed by the last user.
        let isSocket: Bool
        private let mutex = Sys.Mutex()
        private var queue: [[UInt8]] = []
        private var queued = 0
        private var writing = false
        private var users = 2  // the reader (`serve`) and the writer thread
        private(set) var open = true

        init(name: String, input: Int32, output: Int32) {
          self.name = name
          self.input = input
          self.output = output
          isSocket = input == output && input > 2
          if !Sys.startThread(inline: false, { [self] in drain() }) { release() }
        }

        /// Queues one line; false once the client is gone. A line is always taken while less
        /// than `queueLimitBytes` waits (one reply may be larger: a run's output, escaped).
        @discardableResult
        func send(_ line: [UInt8]) -> Bool {
          let dropped: Bool = mutex.withLock {
            guard open else { return false }
            guard queued <= Connection.queueLimitBytes else {
              open = false  // a client that does not read: dropped, its requests cancelled
              mutex.broadcast()
              return true
            }
            queue.append(line)
            queued += line.count
            mutex.broadcast()
            return false
          }
          if dropped { hangUp() }
          return !dropped && isOpen
        }

        var isOpen: Bool { mutex.withLock { open } }

        /// Waits (at most 10 s) until every queued line is written.
        func flush() {
          for _ in 0..<1000 where mutex.withLock({ open && !queue.isEmpty || writing }) { usleep(10_000) }
        }

        /// No more lines either way; a socket is shut down at once (blocked reads and writes return).
        func close() {
          mutex.withLock {
            open = false
            mutex.broadcast()
          }
          hangUp()
        }

        private func hangUp() {
          if isSocket { Glibc.shutdown(input, Int32(SHUT_RDWR)) }
        }

        /// The reader and the writer each call this once; the last one closes a socket.
        func release() {
          let last = mutex.withLock {
            users -= 1
            return users == 0
          }
          if last && isSocket { Glibc.close(input) }
        }

        private func drain() {
          while true {
            let next: [UInt8]? = mutex.withLock {
              while open && queue.isEmpty { mutex.wait() }
              guard open, !queue.isEmpty else { return nil }
              queued -= queue[0].count
              writing = true
              return queue.removeFirst()
            }
            guard let next else { break }
            let written = Sys.writeAll(output, next)
            mutex.withLock { writing = false }
            if !written { close() }
          }
          release()
        }
      }

      /// Reads `connection`'s lines until it ends, dispatching each. At the end of stdin the
      /// requests in flight finish (a pipe of requests gets every answer); a socket client that
      /// goes away has its requests cancelled. Its sessions are closed either way.
      func serve(_ connection: Connection, finishingInFlight: Bool = false) {
        var lines = CLI.LineReader(fd: connection.input)
        while connection.isOpen && !isStopping {
          let more = lines.read(
            line: { line in
              handle(line, on: connection)
              return true
            },
            tooLong: { reply(connection, id: nil, error: .invalidRequest(CLI.LineReader.tooLongReason)) })
          if !more { break }
        }
        finish(connection, cancelling: !(finishingInFlight && connection.isOpen))
      }

      var isStopping: Bool { lock.withLock { stopping } }

      /// The connection is over: its requests finish (or are cancelled), then its sessions close.
      ///
      /// After the end of input no request can name a session any more, so each session closes
      /// as soon as the requests on it are over (all at once: a run waiting for the slot a
      /// session holds is never stuck behind it), and a `session.open` still waiting is cancelled.
      func finish(_ connection: Connection, cancelling: Bool) {
        let prefix = connection.name + "/"
        let own = lock.withLock { tasks.filter { $0.key.hasPrefix(prefix) }.map(\.value) }
        for request in own where cancelling || request.op == "session.open" { request.task.cancel() }
        let owned = lock.withLock { sessions.filter { $0.key.hasPrefix(prefix) } }
        CLI.blocking {
          await withTaskGroup(of: Void.self) { group in
            for (key, session) in owned {
              let name = String(key.dropFirst(prefix.count))
              group.addTask {
                for request in own where request.session == name { await request.task.value }
                await session.close()
              }
            }
          }
        }
        for request in own { CLI.blocking { await request.task.value } }
        // Sessions that a cancelled open registered after all, then every one of this connection's.
        let left = lock.withLock {
          defer { sessions = sessions.filter { !$0.key.hasPrefix(prefix) } }
          return sessions.filter { $0.key.hasPrefix(prefix) }.map(\.value)
        }
        for session in left { _ = CLI.blocking { await session.close() } }
        connection.flush()  // every answer written before the connection closes (close drops the queue)
        connection.close()
      }

      /// SIGTERM: no new requests; in-flight ones are cancelled and sessions closed, within the grace.
      func shutdown() {
        let (running, open) = lock.withLock {
          stopping = true
          return (tasks.values.map(\.task), Array(sessions.values))
        }
        for task in running { task.cancel() }
        let done = Sys.Flag()
        _ = Sys.startThread(inline: false) {
          CLI.blocking {
            for session in open { await session.close() }
            for task in running { await task.value }
            await self.pool?.close()
          }
          done.set(true)
        }
        let deadline = ContinuousClock.now + Server.shutdownGrace
        var finished = false
        while !finished && ContinuousClock.now < deadline {
          usleep(20_000)
          done.ifSet { finished = true }
        }
      }

      private func reply(_ connection: Connection, id: JSONValue?, error: SandboxError) {
        var json = CLI.JSONWriter()
        json.raw("{\"id\": ")
        json.value(id)
        json.raw(", \"protocol\": \(Server.protocolVersion), ")
        json.error(error)
        json.raw("}}\n")
        connection.send(json.bytes)
      }

      /// A result line: `{"id", "protocol", "result": BODY}` around bytes already JSON.
      private func reply(_ connection: Connection, id: JSONValue?, result body: [UInt8]) {
        var json = CLI.JSONWriter()
        json.reserve(body.count)
        json.raw("{\"id\": ")
        json.value(id)
        json.raw(", \"protocol\": \(Server.protocolVersion), \"result\": ")
        var line = json.bytes
        line += body.last == UInt8(ascii: "\n") ? body.dropLast() : body[...]
        line += Array("}\n".utf8)
        connection.send(line)
      }

      private func event(_ connection: Connection, id: JSONValue?, isStderr: Bool, _ bytes: [UInt8]) {
        var json = CLI.JSONWriter()
        json.raw("{\"id\": ")
        json.value(id)
        json.raw(", \"protocol\": \(Server.protocolVersion), ")
        let inner = CLI.makeEventJSONBytes(isStderr: isStderr, bytes)
        connection.send(json.bytes + inner.dropFirst())
      }

      /// One request: checked, then answered at once (health, cancel, errors) or by a task.
      func handle(_ line: [UInt8], on connection: Connection) {
        let fields: [String: JSONValue]
        do throws(SandboxError) {
          guard case .object(let object) = try JSONReader.parse(line) else {
            throw .invalidCell(reason: "a request is a JSON object with \"id\" and \"op\"")
          }
          fields = object
        } catch {
          return reply(connection, id: nil, error: Server.invalid(error))
        }
        let id = fields["id"]
        guard let key = Server.key(id) else {
          return reply(
            connection, id: nil, error: .invalidRequest("\"id\" must be a string or an integer of at most 15 digits"))
        }
        guard case .string(let op)? = fields["op"] else {
          return reply(connection, id: id, error: .invalidCell(reason: "\"op\" must be a string"))
        }
        let taskKey = "\(connection.name)/\(key)"
        do throws(SandboxError) {
          guard !isStopping else { throw .sessionEnded(reason: "the server is shutting down") }
          switch op {
          case "health":
            try Server.allow(fields, [])
            reply(connection, id: id, result: healthBytes())
          case "cancel":
            try Server.allow(fields, ["target"])
            guard let target = Server.key(fields["target"]) else {
              throw .invalidCell(reason: "\"target\" must be the id of a request in flight")
            }
            let task = lock.withLock { tasks["\(connection.name)/\(target)"]?.task }
            task?.cancel()
            reply(connection, id: id, result: Array("{\"cancelled\": \(task != nil)}".utf8))
          case "run", "session.open", "session.exec", "session.close":
            let body = try makeWork(op, fields, connection: connection, id: id)
            try lock.withLock { () throws(SandboxError) in
              guard tasks[taskKey] == nil else {
                throw .invalidCell(reason: "the id \(Sys.printable(key)) is in use by a request in flight")
              }
              let heavy = op == "run" || op == "session.open"
              if heavy && work >= maxConcurrent * (1 + Server.queueFactor) {
                throw .tooManyRuns(maximum: maxConcurrent * (1 + Server.queueFactor))
              }
              if heavy { work += 1 }
              let session: String? = if case .string(let name)? = fields["session"] { name } else { nil }
              let task = Task {
                await body()
                self.lock.withLock {
                  if heavy { self.work -= 1 }
                  _ = self.tasks.removeValue(forKey: taskKey)
                }
              }
              tasks[taskKey] = InFlight(op: op, session: session, task: task)
            }
          default:
            throw .invalidCell(
              reason:
                "unknown op '\(Sys.printable(op))' (health, run, session.open, session.exec, session.close, cancel)")
          }
        } catch {
          reply(connection, id: id, error: Server.invalid(error))
        }
      }

      /// The task body of a run or session request, from its checked fields.
      private func makeWork(_ op: String, _ fields: [String: JSONValue], connection: Connection, id: JSONValue?)
        throws(SandboxError) -> @Sendable () async -> Void
      {
        let sandbox = self.sandbox
        switch op {
        case "run":
          try Server.allow(
            fields, ["code", "timeout", "env", "mnt_dir", "stdin", "stdin_b64", "args", "stream", "b64", "outputs"])
          let code = try Server.string(fields, "code")
          let timeout = try Server.seconds(fields, "timeout")
          let environment = try Server.strings(fields, "env")
          let mountDirectory = try Server.optionalString(fields, "mnt_dir")
          let arguments = try Server.list(fields, "args")
          let outputs = try Server.list(fields, "outputs")
          if !outputs.isEmpty && mountDirectory == nil { throw .invalidCell(reason: "\"outputs\" needs \"mnt_dir\"") }
          var input = Array((try Server.optionalString(fields, "stdin") ?? "").utf8)
          if let encoded = try Server.optionalString(fields, "stdin_b64") {
            guard let decoded = Sys.decodeBase64(encoded) else {
              throw .invalidCell(reason: "\"stdin_b64\" is not base64")
            }
            input = decoded
          }
          let stdin = input
          let stream = try Server.flag(fields, "stream")
          let base64 = try Server.flag(fields, "b64")
          // Without a mount dir of the caller's, a run takes a pool's slot (or starts cold in it);
          // one with a variable only an interpreter's start reads starts cold, as without --pool.
          let pool = mountDirectory == nil && !environment.keys.contains(where: Pool.readAtStart) ? self.pool : nil
          let warmRequest = try pool?.makeRequest(
            .code(code), timeout: timeout, stdin: stdin, environment: environment, arguments: arguments, files: [:])
          return { [self] in
            do throws(SandboxError) {
              let onOutput: ((Bool, [UInt8]) -> Void)? =
                stream ? { self.event(connection, id: id, isStderr: $0, $1) } : nil
              let result: SandboxResult
              var warm = false
              if let pool, let warmRequest {
                let run = try await pool.core.run(warmRequest, onOutput: onOutput)
                (result, warm) = (run.result, run.warm)
              } else {
                result = try await sandbox.run(
                  .code(code), mountDirectory: mountDirectory, timeout: timeout, stdin: stdin, environment: environment,
                  arguments: arguments, onOutput: onOutput)
              }
              let files = outputs.map {
                CLI.readOutputReport($0, mountDirectory: mountDirectory ?? "", sandbox: sandbox)
              }
              var bytes = CLI.makeJSONBytes(result, outputs: files, alwaysBase64: base64)
              bytes.insert(contentsOf: Array(", \"warm\": \(warm)".utf8), at: bytes.count - 1)  // before its "}"
              self.reply(connection, id: id, result: bytes)
            } catch {
              self.reply(connection, id: id, error: error)
            }
          }
        case "session.open":
          try Server.allow(fields, ["env", "mnt_dir", "cell_timeout", "idle_timeout", "lifetime"])
          let environment = try Server.strings(fields, "env")
          let mountDirectory = try Server.optionalString(fields, "mnt_dir")
          let options = SandboxSession.Options(
            cellTimeout: try Server.seconds(fields, "cell_timeout") ?? .seconds(60),
            idleTimeout: try Server.seconds(fields, "idle_timeout") ?? .seconds(600),
            lifetime: try Server.seconds(fields, "lifetime") ?? .seconds(3600))
          return { [self] in
            do throws(SandboxError) {
              let session = try await sandbox.openSession(
                mountDirectory: mountDirectory, environment: environment, options: options)
              let name = self.lock.withLock { () -> String in
                self.nextSession += 1
                return "s\(self.nextSession)"
              }
              let kept = self.lock.withLock { () -> Bool in
                guard !self.stopping && connection.isOpen else { return false }
                self.sessions["\(connection.name)/\(name)"] = session
                return true
              }
              guard kept else {
                await session.close()
                return self.reply(
                  connection, id: id, error: .sessionEnded(reason: "the client or the server went away"))
              }
              var json = CLI.JSONWriter()
              json.raw("{\"session\": ")
              json.string(name)
              json.raw("}")
              self.reply(connection, id: id, result: json.bytes)
            } catch {
              self.reply(connection, id: id, error: error)
            }
          }
        default:  // session.exec, session.close
          try Server.allow(fields, op == "session.exec" ? ["session", "code", "timeout", "stream"] : ["session"])
          let name = try Server.string(fields, "session")
          let key = "\(connection.name)/\(name)"
          guard let session = lock.withLock({ sessions[key] }) else {
            throw .invalidCell(reason: "no open session '\(Sys.printable(name))' on this connection")
          }
          if op == "session.close" {
            return { [self] in
              let end = await session.close()
              _ = self.lock.withLock { self.sessions.removeValue(forKey: key) }
              self.reply(connection, id: id, result: end.map { CLI.makeJSONBytes($0) } ?? Array("null".utf8))
            }
          }
          let code = try Server.string(fields, "code")
          let timeout = try Server.seconds(fields, "timeout")
          let stream = try Server.flag(fields, "stream")
          return { [self] in
            do throws(SandboxError) {
              let result = try await session.submit(
                code, timeout: timeout, id: session.state.nextCellID(),
                onOutput: stream ? { self.event(connection, id: id, isStderr: $0, $1) } : nil)
              self.reply(connection, id: id, result: CLI.makeCellJSONBytes(result, cell: result.number, id: id))
            } catch {
              self.reply(connection, id: id, error: error)
            }
          }
        }
      }

      private func healthBytes() -> [UInt8] {
        var json = CLI.JSONWriter()
        json.raw("{\"protocol\": \(Server.protocolVersion), \"schema\": \(CLI.jsonSchema), \"gate\": ")
        json.string(gate)
        json.raw(", \"bwrap\": ")
        json.stringOrNull(sandbox.host.bwrapVersion)
        json.raw(", \"layers\": ")
        json.list(sandbox.activeLayers.map(\.rawValue))
        let (inFlight, open) = lock.withLock { (tasks.count, sessions.count) }
        json.raw(
          ", \"max_concurrent\": \(maxConcurrent), \"queue_depth\": \(maxConcurrent * Server.queueFactor), \"in_flight\": \(inFlight), \"sessions\": \(open), \"pool\": "
        )
        if let pool {
          json.raw("{\"size\": \(pool.options.size), \"ready\": \(pool.readyCount), \"preload\": ")
          json.list(pool.options.preload)
          json.raw("}}")
        } else {
          json.raw("null}")
        }
        return json.bytes
      }

      // Field readers: a wrong type is the request's error, named.
      static func invalid(_ error: SandboxError) -> SandboxError {
        if case .invalidCell(let reason) = error { return .invalidRequest(reason) }
        return error
      }
      /// A request id's key: a string, or an integer of at most 15 digits (exact in a double, so
      /// that every client library reads it back unchanged).
      static func key(_ id: JSONValue?) -> String? {
        switch id {
        case .string(let text)?: return "s:" + text
        case .number(let number)? where number == number.rounded() && abs(number) < 1e15: return "n:\(Int64(number))"
        default: return nil
        }
      }
      static func allow(_ fields: [String: JSONValue], _ names: [String]) throws(SandboxError) {
        if let extra = fields.keys.sorted().first(where: { !(["id", "op"] + names).contains($0) }) {
          throw .invalidCell(reason: "unknown field '\(Sys.printable(extra))' for this op")
        }
      }
      static func string(_ fields: [String: JSONValue], _ name: String) throws(SandboxError) -> String {
        guard case .string(let text)? = fields[name] else { throw .invalidCell(reason: "\"\(name)\" must be a string") }
        return text
      }
      static func optionalString(_ fields: [String: JSONValue], _ name: String) throws(SandboxError) -> String? {
        if fields[name] == nil || fields[name] == .null { return nil }
        return try string(fields, name)
      }
      static func seconds(_ fields: [String: JSONValue], _ name: String) throws(SandboxError) -> Duration? {
        switch fields[name] {
        case nil, .null?: return nil
        case .number(let seconds)? where seconds > 0 && seconds <= 1e7: return .nanoseconds(Int64(seconds * 1e9))
        default: throw .invalidCell(reason: "\"\(name)\" must be a number of seconds > 0 (at most 1e7)")
        }
      }
      static func flag(_ fields: [String: JSONValue], _ name: String) throws(SandboxError) -> Bool {
        switch fields[name] {
        case nil, .null?: return false
        case .bool(let value)?: return value
        default: throw .invalidCell(reason: "\"\(name)\" must be true or false")
        }
      }
      static func list(_ fields: [String: JSONValue], _ name: String) throws(SandboxError) -> [String] {
        switch fields[name] {
        case nil, .null?: return []
        case .array(let items)?:
          return try items.map { (item) throws(SandboxError) -> String in
            guard case .string(let text) = item else {
              throw .invalidCell(reason: "\"\(name)\" must be a list of strings")
            }
            return text
          }
        default: throw .invalidCell(reason: "\"\(name)\" must be a list of strings")
        }
      }
      static func strings(_ fields: [String: JSONValue], _ name: String) throws(SandboxError) -> [String: String] {
        switch fields[name] {
        case nil, .null?: return [:]
        case .object(let members)?:
          var result: [String: String] = [:]
          for (key, value) in members {
            guard case .string(let text) = value else {
              throw .invalidCell(reason: "\"\(name)\" values must be strings")
            }
            result[key] = text
          }
          return result
        default: throw .invalidCell(reason: "\"\(name)\" must be an object of strings")
        }
      }
    }

    /// `--pool N`: the pool, once its first sandbox is ready (a preload that fails stops here).
    static func startPool(_ sandbox: Sandbox, _ options: CLI.Options) throws(SandboxError) -> SandboxPool? {
      guard options.poolSize > 0 else { return nil }
      let pool = try SandboxPool(
        sandbox: sandbox, options: SandboxPool.Options(size: options.poolSize, preload: options.preload))
      let ready = Sys.Handoff<Swift.Result<Void, SandboxError>>()
      Task {
        do throws(SandboxError) {
          try await pool.waitUntilReady()
          ready.put(.success(()))
        } catch {
          ready.put(.failure(error))
        }
      }
      try ready.take().get()
      return pool
    }

    /// `sandbox serve`: the startup gate, then requests from stdin or `--socket` until end of
    /// input or SIGTERM.
    static func runServeCommand(_ options: CLI.Options) throws(SandboxError) -> Int32 {
      // SIGTERM and SIGINT go to one waiting thread (blocked here, before any thread exists, so
      // every thread inherits the mask); children get an empty mask from the spawner.
      var stopSignals = sigset_t()
      sigemptyset(&stopSignals)
      sigaddset(&stopSignals, SIGTERM)
      sigaddset(&stopSignals, SIGINT)
      pthread_sigmask(SIG_BLOCK, &stopSignals, nil)
      signal(SIGPIPE, SIG_IGN)  // a client gone: EPIPE on its descriptor, not the server's death
      if !options.preload.isEmpty && options.poolSize == 0 {
        throw .usage("--preload needs --pool N: the modules are imported in the pool's sandboxes")
      }
      try SandboxPool.check(SandboxPool.Options(size: options.poolSize, preload: options.preload))  // before the gate
      let sandbox = try CLI.makeSandbox(options)
      var gate = "skipped (--no-self-test)"
      if !options.noSelfTest {
        let failures = try SelfTestGate.verify(sandbox)
        guard failures.isEmpty else {
          for failure in failures { CLI.printError("self-test failed: \(failure)") }
          throw .selfTestGateClosed(reason: "\(failures.count) base self-tests failed on this host")
        }
        gate = "passed"
      }
      let maxConcurrent = options.maxConcurrent ?? Admission.effectiveMaximum()
      Admission.maximum = maxConcurrent + options.poolSize  // the pool's sandboxes hold slots of their own
      Admission.policy = .wait
      let pool = try CLI.startPool(sandbox, options)
      let server = Server(sandbox: sandbox, maxConcurrent: maxConcurrent, gate: gate, pool: pool)
      let listener = try options.socketPath.map { (path) throws(SandboxError) in try CLI.listen(at: path) }
      defer { if listener != nil, let path = options.socketPath { unlink(path) } }  // an error's way out too
      CLI.printError(
        "note: serving protocol \(Server.protocolVersion) on \(options.socketPath ?? "stdin and stdout"); self-test gate: \(gate)"
      )
      _ = Sys.startThread(inline: false) {
        var caught: Int32 = 0
        sigwait(&stopSignals, &caught)
        CLI.printError("note: signal \(caught): finishing the requests in flight (at most \(Server.shutdownGrace))")
        server.shutdown()
        if let path = options.socketPath { unlink(path) }
        exit(0)
      }
      guard let listener else {
        let stdio = Server.Connection(name: "stdio", input: 0, output: 1)
        server.serve(stdio, finishingInFlight: true)
        CLI.blocking { await pool?.close() }  // every slot gone before the process is
        stdio.flush()
        return 0
      }
      var clients = 0
      while !server.isStopping {
        let fd = accept(listener, nil, nil)
        guard fd >= 0 else {
          if [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(errno) {
            usleep(100_000)  // out of descriptors or memory for now: the clients we have go on
            continue
          }
          if errno == EINTR || errno == ECONNABORTED || errno == EAGAIN { continue }
          throw .system(call: "accept", path: options.socketPath, errno: errno)
        }
        // Only this account's processes may use the server: the kernel's word (SO_PEERCRED).
        var credentials: [UInt32] = [0, 0, 0]  // struct ucred { pid, uid, gid } (a _GNU_SOURCE type)
        var size = socklen_t(12)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) == 0, size == 12, credentials[1] == geteuid()
        else {
          Sys.writeAll(
            fd,
            Array(
              "{\"id\": null, \"protocol\": 1, \"error\": {\"kind\": \"forbidden\", \"message\": \"only uid \(geteuid()) may use this server\", \"hint\": null}}\n"
                .utf8))
          close(fd)
          continue
        }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)  // spawns close every descriptor above the child's anyway
        clients += 1
        guard server.admitConnection() else {
          Sys.writeAll(
            fd,
            Array(
              "{\"id\": null, \"protocol\": 1, \"error\": {\"kind\": \"too_many_connections\", \"message\": \"\(Server.connectionLimit) clients are connected already\", \"hint\": \"retry later\"}}\n"
                .utf8))
          close(fd)
          continue
        }
        let connection = Server.Connection(name: "c\(clients)", input: fd, output: fd)
        if !Sys.startThread(
          inline: false,
          {
            server.serve(connection)
            connection.release()
            server.connectionClosed()
          })
        {
          connection.close()
          connection.release()
          server.connectionClosed()
        }
      }
      return 0
    }

    /// A listening Unix socket at `path`, inside a directory only this account can enter (made
    /// 0700 when missing): binding first and restricting the socket after would race.
    /// - Throws: `SandboxError.usage` for a directory others can enter or a path that exists.
    static func listen(at path: String) throws(SandboxError) -> Int32 {
      let directory = Sys.parentDirectory(path)
      if !Sys.isDirectory(directory) {
        try Sys.check("mkdir", path: directory) { mkdir(directory, 0o700) }
      }
      var info = stat()
      guard lstat(directory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR, info.st_uid == geteuid(),
        info.st_mode & 0o077 == 0
      else {
        throw .usage(
          "--socket: \(directory) must be a directory of uid \(geteuid()) that nobody else can enter (mkdir -m 700 \(directory))"
        )
      }
      guard access(path, F_OK) != 0 else { throw .usage("--socket: \(path) exists: remove it, or name another path") }
      var address = sockaddr_un()
      address.sun_family = sa_family_t(AF_UNIX)
      let bytes = Array(path.utf8)
      guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
        throw .usage("--socket: the path is longer than a Unix socket address allows (107 bytes)")
      }
      withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (index, byte) in bytes.enumerated() { raw[index] = byte }
      }
      let fd = try Sys.check("socket") {
        socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
      }
      let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
      }
      guard bound == 0, Glibc.listen(fd, 64) == 0 else {
        let code = errno
        close(fd)
        throw .system(call: "bind", path: path, errno: code)
      }
      return fd
    }

    /// One `--output` file (or serve's `outputs`) read through the safe reader.
    static func readOutputReport(_ path: String, mountDirectory: String, sandbox: Sandbox) -> CLI.OutputReport {
      do throws(SandboxError) {
        let file = try Sandbox.readOutput(
          mountDirectory: mountDirectory, path: path, limit: sandbox.config.limits.outputLimitBytes)
        return CLI.OutputReport(path: path, file: file)
      } catch {
        return CLI.OutputReport(path: path, error: error.description)
      }
    }

    /// Reads all of standard input (the code, when neither --code nor --script is given).
    static func readStandardInput() throws(SandboxError) -> [UInt8] {
      var bytes: [UInt8] = []
      try Sys.readAll(0, into: &bytes, limit: .max - 1)
      return bytes
    }

    static func printError(_ line: String) {
      Sys.writeAll(2, Array("sandbox: \(line)\n".utf8))
    }

    static func printOut(_ line: String, terminator: String = "\n") {
      Sys.writeAll(1, Array("\(line)\(terminator)".utf8))
    }

    /// Runs the command line and returns the exit status. The only place that prints.
    static func runCommandLine(_ arguments: [String]) -> Int32 {
      do throws(SandboxError) {
        let options = try CLI.parse(arguments)
        switch options.mode {
        case .help:
          CLI.printOut(CLI.usageText)
          return 0
        case .run: return try CLI.runPayloadCommand(options)
        case .session: return try CLI.runSessionCommand(options)
        case .serve: return try CLI.runServeCommand(options)
        case .printArgv: return try CLI.printArgvCommand(options)
        case .selfTest: return try CLI.runSelfTestCommand(options)
        case .interactive: return try CLI.runInteractiveCommand(options)
        case .printProfile: return try CLI.printProfileCommand(options)
        }
      } catch {
        let json = (arguments.first == "run" && arguments.contains("--json")) || arguments.first == "session"
        if case .appArmorProfileNotInstalled(let name, let profile, _) = error {
          // with --json, stdout holds the JSON alone
          CLI.printAppArmorInstructions(name: name, profile: profile, profileFD: json ? 2 : 1)
        }
        CLI.printError("error: \(error.description)")
        if let hint = error.hint { CLI.printError("hint: \(hint)") }
        let status = error.exitCode == ExitCode.usage ? ExitCode.usage : json ? ExitCode.failed : error.exitCode
        if json { Sys.writeAll(1, CLI.makeErrorJSONBytes(error, exitStatus: status)) }  // machine callers read stdout
        return status
      }
    }

    /// Prints the generated profile (stdout) and the exact commands that install and load it.
    static func printAppArmorInstructions(name: String, profile: String, profileFD: Int32 = 1) {
      Sys.writeAll(profileFD, Array("\(profile)\n".utf8))
      var saved = "\(Sys.temporaryDirectory())/sandbox-apparmor-\(name)"
      if let directory = try? Sys.makeTemporaryDirectory(prefix: "sandbox-apparmor-") {
        let path = "\(directory)/\(name)"
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd >= 0 {
          Sys.writeAll(fd, Array(profile.utf8))
          close(fd)
          chmod(directory, 0o755)
          saved = path
        }
      }
      CLI.printError("the profile above is saved as \(saved); install and load it with:")
      // unprefixed: copy-paste
      Sys.writeAll(2, Array("  sudo cp \(saved) \(AppArmorProfile.Paths.profileDirectory)/\(name)\n".utf8))
      Sys.writeAll(2, Array("  sudo apparmor_parser -r \(AppArmorProfile.Paths.profileDirectory)/\(name)\n".utf8))
    }

    /// The AppArmor situation on this host and what it means, for the self-test header.
    static func makeAppArmorReport(_ config: SandboxConfig, host: Preflight.HostFacts) -> [String] {
      var lines: [String] = []
      if let reason = host.appArmorAbsenceReason {
        lines.append("AppArmor: not available: \(reason)")
      } else {
        let support = AppArmorProfile.Support.current
        lines.append(
          "AppArmor: enabled; parser \(support.parserVersion ?? "not installed"); kernel mediates user namespaces: \(support.kernelMediatesUserns ? "yes (profiles use abi 4.0 and 'userns,')" : "no (abi 3.0)")"
        )
      }
      for knob in ["apparmor_restrict_unprivileged_userns", "apparmor_restrict_unprivileged_unconfined"] {
        if let value = Sys.readSmallFile("/proc/sys/kernel/\(knob)") {
          lines.append("kernel.\(knob) = \(Sys.trimmed(value))")
        }
      }
      switch config.appArmor {
      case .disabled:
        lines.append("AppArmor layer: OFF (--no-apparmor): bwrap and the payload run unconfined by AppArmor")
      case .profile(let name):
        let state = AppArmorProfile.State.read(name)
        lines.append(
          "profile \(name): \(state == .enforce ? "loaded, enforce mode: bwrap's setup and the payload are confined" : "\(state)")"
        )
      }
      return lines
    }

    static func makeSandbox(_ options: CLI.Options) throws(SandboxError) -> Sandbox {
      let config = try CLI.makeConfig(options) { CLI.printError("warning: \($0)") }
      // A one-shot run skips spawning `bwrap --version` (about 1 ms); see Sandbox.init(config:host:).
      let host =
        options.mode == .run || options.mode == .printArgv
        ? try Preflight.HostFacts.probe(checkingVersion: false) : try Preflight.HostFacts.current.get()
      let sandbox = try Sandbox(config: config, host: host)
      for warning in sandbox.warnings { CLI.printError("warning: \(warning)") }
      if config.appArmor == .disabled {
        CLI.printError(
          "note: the AppArmor layer is OFF (--no-apparmor); the other layers (namespaces, mounts, seccomp, limits) still apply"
        )
      }
      return sandbox
    }

    /// The payload of `sandbox run`: --script, --code, or else all of stdin.
    static func readPayload(_ options: CLI.Options) throws(SandboxError) -> SandboxPayload {
      if let script = options.script { return .script(sandboxPath: script) }
      if let code = options.code { return .code(code) }
      return .code(String(decoding: try CLI.readStandardInput(), as: UTF8.self))
    }

    /// `run --print-bwrap-argv` (for benchmarks): the exact command line of this run, one argument per line.
    static func printArgvCommand(_ options: CLI.Options) throws(SandboxError) -> Int32 {
      let sandbox = try CLI.makeSandbox(options)
      let payload = try CLI.readPayload(options)
      let mountDir = try options.mountDirectory.map { (path) throws(SandboxError) in
        try Changes.OpenMountDirectory(path: path)
      }
      defer { mountDir?.close() }
      let plan = sandbox.makePlan(
        payload, mountDir: mountDir,
        environment: try Bwrap.makePayloadEnvironment(venvRoot: sandbox.venv.root, extra: options.environment))
      for argument in [sandbox.host.bwrapPath] + Bwrap.makeInvocation(plan).arguments { CLI.printOut(argument) }
      return 0
    }

    /// The most bytes of stdin `sandbox run` hands the payload (it holds them in memory).
    static let payloadStdinLimitBytes = 256 << 20

    /// The payload's stdin: `--stdin-file`, else the command's own stdin when the code came from
    /// `--code` or `--script` and stdin is not a terminal (which would wait for Ctrl-D), else none.
    static func readPayloadStdin(_ options: CLI.Options) throws(SandboxError) -> [UInt8] {
      var fd: Int32 = 0
      if let path = options.stdinFile {
        fd = try Sys.check("open", path: path) { open(path, O_RDONLY | O_CLOEXEC) }
      } else if (options.code == nil && options.script == nil) || isatty(0) == 1 {
        return []
      }
      defer { if fd != 0 { close(fd) } }
      var bytes: [UInt8] = []
      if try Sys.readAll(fd, into: &bytes, limit: CLI.payloadStdinLimitBytes) {
        throw .usage(
          "the payload's stdin is larger than \(CLI.payloadStdinLimitBytes >> 20) MiB: put the data in the mount or input dir"
        )
      }
      return bytes
    }

    static func runPayloadCommand(_ options: CLI.Options) throws(SandboxError) -> Int32 {
      let sandbox = try CLI.makeSandbox(options)
      let payload = try CLI.readPayload(options)
      let stdin = try CLI.readPayloadStdin(options)
      // --stream: each chunk becomes a line at once, on the supervising thread (this one's work waits).
      let result = try sandbox.runOnce(
        payload, mountDirectory: options.mountDirectory, timeout: options.timeout, stdin: stdin,
        environment: options.environment, cancellation: nil, arguments: options.arguments,
        onOutput: options.stream ? { Sys.writeAll(1, CLI.makeEventJSONBytes(isStderr: $0, $1)) } : nil)
      if options.json {
        let outputs = options.outputs.map {
          CLI.readOutputReport($0, mountDirectory: options.mountDirectory ?? "", sandbox: sandbox)
        }
        var json = CLI.makeJSONBytes(result, outputs: outputs, alwaysBase64: options.alwaysBase64)
        json.append(UInt8(ascii: "\n"))
        Sys.writeAll(1, json)
        return 0
      }
      Sys.writeAll(1, result.stdout)
      Sys.writeAll(2, result.stderr)
      if result.outputTruncated {
        CLI.printError("note: output was truncated at \(sandbox.config.limits.outputLimitBytes) bytes per stream")
      }
      if result.timedOut {
        CLI.printError("note: timed out; the sandbox was killed")
        return ExitCode.timedOut
      }
      if let limit = result.limitHit { CLI.printError("note: the run hit the \(limit.rawValue) limit") }
      if result.changesTruncated { CLI.printError("note: the mount dir's change lists were truncated at their caps") }
      if let problem = result.cleanupIncomplete {
        // The payload's own stderr came first and may imitate these lines; --json cannot be imitated.
        CLI.printError(
          "warning: the host's clean-up of the mount dir is incomplete (\(problem)); it is closed (mode 000): remove it, never read it by path"
        )
      }
      return CLI.exitStatus(of: result)
    }

    /// The CLI's exit status for a payload's return code: a signal N becomes 128+N, as in a shell.
    static func exitStatus(of result: SandboxResult) -> Int32 {
      result.returnCode < 0 ? ExitCode.signaled(-result.returnCode) : result.returnCode
    }

    /// `--interactive`: a sandboxed REPL on the user's terminal, through a pty of our own.
    static func runInteractiveCommand(_ options: CLI.Options) throws(SandboxError) -> Int32 {
      guard isatty(0) == 1, isatty(1) == 1 else {
        throw .usage("--interactive needs a terminal on stdin and stdout")
      }
      let sandbox = try CLI.makeSandbox(options)
      let master = try Sys.check("open", path: "/dev/ptmx") { open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC) }
      defer { close(master) }
      var unlocked: Int32 = 0
      try Sys.check("ioctl(TIOCSPTLCK)") { ioctl(master, UInt(Sys.ioctlUnlockPTY), &unlocked) }
      let slave = try Sys.check("ioctl(TIOCGPTPEER)") {
        ioctl(master, UInt(Sys.ioctlOpenPTYPeer), O_RDWR | O_NOCTTY | O_CLOEXEC)
      }
      var size = winsize()
      if ioctl(0, UInt(TIOCGWINSZ), &size) == 0 { _ = ioctl(master, UInt(TIOCSWINSZ), &size) }
      var saved = termios()
      let hasTerminalMode = tcgetattr(0, &saved) == 0
      var raw = saved
      cfmakeraw(&raw)
      if hasTerminalMode { tcsetattr(0, TCSANOW, &raw) }  // keystrokes, Ctrl-C included, go to the pty
      defer { if hasTerminalMode { tcsetattr(0, TCSANOW, &saved) } }
      CLI.printError("note: interactive sandbox; /mnt is ephemeral and vanishes on exit (Ctrl-D or exit() leaves)\r")
      let result: SandboxResult
      do {
        defer { close(slave) }
        result = try sandbox.runInteractive(
          terminal: Spawner.TerminalRelay(master: master, slave: slave, input: 0, output: 1))
      }
      return CLI.exitStatus(of: result)
    }

    /// `--print-apparmor-profile`: the profile this venv needs, on any kernel (nothing is checked
    /// against the kernel, so it also works where AppArmor is absent, e.g. to review or pre-install it).
    static func printProfileCommand(_ options: CLI.Options) throws(SandboxError) -> Int32 {
      let config = try CLI.makeConfig(options) { CLI.printError("warning: \($0)") }
      guard case .profile(let name) = config.appArmor else {
        throw .usage("--print-apparmor-profile needs a profile name (--venv PATH --apparmor-profile-name NAME)")
      }
      try Preflight.validateProfileName(name)
      let venv = try Preflight.VenvLayout(venvPath: config.venvPath)
      let host = try Preflight.HostFacts.probe(checkingVersion: false)
      CLI.printOut(try AppArmorProfile.makeProfile(name: name, venv: venv, host: host), terminator: "")
      return 0
    }

    /// One line on the cgroup layer: where runs' cgroups go, or why there are none and what
    /// `--memory-mb` and `--max-processes` then mean.
    static func cgroupReport(_ sandbox: Sandbox) -> String {
      switch sandbox.cgroup {
      case .available(let parent, let controllers):
        return "cgroup: in force, one per run in \(parent) (controllers: \(controllers.joined(separator: " ")))"
      case .unavailable(let reason):
        return "cgroup: not in force: \(reason); --memory-mb bounds private memory per process only"
      }
    }

    static func runSelfTestCommand(_ options: CLI.Options) throws(SandboxError) -> Int32 {
      let sandbox = try CLI.makeSandbox(options)
      guard Sys.isDirectory(Sys.temporaryDirectory()) else {  // the suite makes its dirs there: say so before it starts
        throw .system(call: "stat", path: Sys.temporaryDirectory(), errno: ENOENT)
      }
      let host = sandbox.host
      CLI.printOut(
        "# bubblewrap \(host.bwrapVersion ?? "?") at \(host.bwrapPath) (\(Preflight.HostFacts.minimumVersionText) or newer needed)"
      )
      if let advisory = Preflight.HostFacts.bwrapAdvisory(host.bwrapVersion) { CLI.printOut("# advisory: \(advisory)") }
      for line in CLI.makeAppArmorReport(sandbox.config, host: host) { CLI.printOut("# \(line)") }
      CLI.printOut(
        "# venv: \(sandbox.venv.root)"
          + (sandbox.venv.basePrefix.map { " (base interpreter \($0), bound read-only)" } ?? ""))
      for note in sandbox.venv.advisories() { CLI.printOut("# warning: \(note)") }
      CLI.printOut(
        "# network: \(sandbox.config.isolatedNetwork ? "on, isolated (--isolated-network: its own namespace, through pasta)" : sandbox.config.networkEnabled ? "on (--enable-network)" : "off (--disable-network)")"
      )
      CLI.printOut("# \(CLI.cgroupReport(sandbox))")
      CLI.printOut(
        "# layers: \(sandbox.activeLayers.map(\.rawValue).joined(separator: ", "))"
          + (sandbox.config.seccompEnabled ? "" : " (seccomp relaxed by --no-seccomp)"))
      if options.ignoreProfileDiffs && sandbox.config.appArmor == .disabled {
        CLI.printError("note: --ignore-profile-diffs has no effect while the AppArmor layer is off")
      }
      var tests = baseSuite
      if options.extraTests {
        if let extended = extendedSuite(from: ExtraTests.self) {
          tests += extended
        } else {
          CLI.printError(
            "note: --extra-tests: sandbox_extra_tests.swift was not compiled in; running the base suite only")
        }
      }
      // The plan: tests/run.sh checks the counts add up to it.
      let network = (sandbox.config.networkEnabled, sandbox.config.isolatedNetwork)
      CLI.printOut("1..\(tests.filter { $0.applies(networkEnabled: network.0, isolated: network.1) }.count)")
      let outcomes = try runSelfTests(tests, in: sandbox)
      var passed = 0
      var failed = 0
      var skipped = 0
      for (index, outcome) in outcomes.enumerated() {
        let label = "\(index + 1) - \(outcome.test.name)"
        switch outcome.verdict {
        case .passed:
          passed += 1
          if options.verbose { CLI.printOut("ok \(label) [\(outcome.test.layer.rawValue)]") }
        case .failed(let why):
          failed += 1
          CLI.printOut("not ok \(label) [\(outcome.test.layer.rawValue)] # \(why)")
        case .skipped(let why):
          skipped += 1
          CLI.printOut("ok \(label) # SKIP \(why)")
        case .knownGap(let why):
          skipped += 1
          CLI.printOut("not ok \(label) [\(outcome.test.layer.rawValue)] # TODO known gap: \(why)")
        }
      }
      CLI.printOut("\(passed) passed, \(failed) failed, \(skipped) skipped")
      return failed == 0 ? 0 : 1
    }

  }
}

#if !SANDBOX_LIBRARY
  /// The command-line entry point.
  @main
  enum SandboxCommand {
    static func main() {
      exit(Sandbox.CLI.runCommandLine(Array(CommandLine.arguments.dropFirst())))
    }
  }
#endif
