//! The deterministic simulation: 3 devices and a relay with message loss, duplication, cuts,
//! crash-restarts and users editing while the agent materialises, over many seeds.
//!
//! `CLOUD3_SEED=N` replays one seed (add `CLOUD3_SIM_TRACE=1` to print every event);
//! `CLOUD3_SIM_SEEDS=N` and `CLOUD3_SIM_FIRST=N` run other ranges for long runs.

use cloud3_engine::sim::run_seeds;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn devices_converge_and_no_write_is_lost_under_faults() {
    let first = env("CLOUD3_SIM_FIRST", 0);
    let seeds = env("CLOUD3_SIM_SEEDS", 500);
    match run_seeds(first, seeds, 3, 80) {
        Ok(ran) => assert!(ran >= 1),
        Err(failures) => {
            let seeds: Vec<u64> = failures.iter().map(|f| f.seed).collect();
            let first = &failures[0];
            panic!(
                "{} seeds failed: {seeds:?}\nfirst: seed {}: {}\nreplay: CLOUD3_SEED={} CLOUD3_SIM_TRACE=1 cargo test -p cloud3-engine --test simulation",
                failures.len(),
                first.seed,
                first.what,
                first.seed
            )
        }
    }
}
