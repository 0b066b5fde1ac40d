//! The binary's one tokio runtime: every command that talks to a node, or
//! runs nodes, runs on it (the benches' load generators keep runtimes of
//! their own, sized for the measurement).

/// The binary's one tokio runtime, built on first use: every command that
/// talks to a node, or runs nodes, runs on it.
static RUNTIME: std::sync::LazyLock<std::io::Result<tokio::runtime::Runtime>> =
    std::sync::LazyLock::new(|| tokio::runtime::Builder::new_multi_thread().enable_all().build());

/// Runs `f` to completion on the binary's runtime.
pub fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    match &*RUNTIME {
        Ok(runtime) => runtime.block_on(f),
        Err(e) => anyhow::bail!("cannot start the async runtime: {e}"),
    }
}
