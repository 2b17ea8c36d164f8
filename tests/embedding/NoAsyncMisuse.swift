// Must NOT compile (make lint checks that it fails, and why): the blocking run from async code.
func blockingRunFromAsyncCode(_ sandbox: Sandbox) async throws {
  _ = try sandbox.run(.code("print(1)"))
}
