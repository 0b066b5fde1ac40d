//! The binary's one tokio runtime: every command that talks to a node, or
//! runs nodes, runs on it (the benches' load generators keep runtimes of
//! their own, sized for the measurement).

/// The most threads the runtime's blocking pool holds: one per core for
/// the checks of deliveries (`limits::cpu` runs no more at once), as many
/// again plus four for reads of the store (proofs, `Status`, TAXII pages).
/// Left at tokio's 512, a node of a large hotline grew a thread for nearly
/// each of the `DeliverBatch` calls it had in flight, each proof read on a
/// thread of its own: 37 blocking threads in mid-round at 100 parties, and
/// 6 MiB more peak memory per node than with 8 (8 MiB at 193 parties;
/// docs/performance.md).
/// Nothing on the pool waits for another of the pool's jobs (PostgreSQL's
/// calls run on its client's own runtime), so a full pool only queues.
fn blocking_threads(cores: usize) -> usize {
    2 * cores + 4
}

/// The binary's one tokio runtime, built on first use: every command that
/// talks to a node, or runs nodes, runs on it.
static RUNTIME: std::sync::LazyLock<std::io::Result<tokio::runtime::Runtime>> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(blocking_threads(cores))
        .build()
});

/// Runs `f` to completion on the binary's runtime.
pub fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    match &*RUNTIME {
        Ok(runtime) => runtime.block_on(f),
        Err(e) => anyhow::bail!("cannot start the async runtime: {e}"),
    }
}
