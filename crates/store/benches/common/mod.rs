//! What the store's benchmarks share: the machine they ran on.

/// This machine's CPU model and core count, as the benchmarks print it
/// next to their figures ("AMD EPYC, 2 cores").
pub fn cpu_and_cores() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split(':').nth(1))
        .map_or("unknown CPU", str::trim);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores")
}
