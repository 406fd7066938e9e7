//! Rate-control benchmark: a custom run against the local bus with no subscriber (so only the
//! generator and the pacer are measured), printing target vs achieved rate and the spread of
//! one-second windows. `cargo run --release -p event-generator --example pace -- 5000/s 60s`
//! (what `scripts/bench-generator.sh` runs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_generator::pacer::{self, Progress};
use event_generator::{Generator, RunRequest};
use pulse_shared::backends::Backends;
use pulse_shared::config::Config;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rate = args.next().unwrap_or_else(|| "5000/s".to_owned());
    let duration = args.next().unwrap_or_else(|| "60s".to_owned());
    let spec = RunRequest {
        rate: Some(rate),
        duration: Some(duration),
        seed: Some(1),
        ..RunRequest::default()
    }
    .resolve("events-raw")?;

    let dir = tempfile::tempdir()?;
    let config = Config::local(dir.path());
    let bus = Backends::local_bus(&config, &Backends::local_objects(&config)?);
    let plan = Generator::new(spec.seed, chrono::Utc::now()).plan(&spec.scenario);
    let progress = Arc::new(Progress::new(spec.scenario.count));

    // One-second windows, sampled beside the run.
    let sampler = {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut windows = Vec::new();
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let p = progress.snapshot();
                windows.push(p.sent - last);
                last = p.sent;
                if p.sent + p.failed == p.planned {
                    return windows;
                }
            }
        })
    };

    let cpu = cpu_seconds();
    let wall = Instant::now();
    let finish = pacer::publish(plan, &bus, &spec.topic, &progress, std::future::pending()).await;
    let wall = wall.elapsed();
    let cpu = cpu_seconds() - cpu;
    sampler.abort();
    let windows = sampler.await.unwrap_or_default();

    let p = progress.snapshot();
    let target = spec.scenario.rate();
    let full: Vec<u64> = windows.iter().copied().filter(|n| *n > 0).collect();
    println!("finish            {finish:?}");
    println!("messages          {} sent, {} failed", p.sent, p.failed);
    println!(
        "target rate       {target:.1}/s over {:.1} s",
        spec.scenario.duration.as_secs_f64()
    );
    println!(
        "achieved rate     {:.1}/s over {:.3} s ({:+.3} %)",
        p.achieved_rate,
        p.elapsed.as_secs_f64(),
        (p.achieved_rate / target - 1.0) * 100.0
    );
    if let (Some(min), Some(max)) = (full.iter().min(), full.iter().max()) {
        println!(
            "1 s windows       min {min}, max {max} ({} windows)",
            full.len()
        );
    }
    println!(
        "generator CPU     {cpu:.2} s for {:.1} s wall ({:.1} % of one core)",
        wall.as_secs_f64(),
        cpu / wall.as_secs_f64() * 100.0
    );
    Ok(())
}

/// CPU time of this process (user + system), from /proc; 0 where there is none.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses): utime and stime are the 12th
    // and 13th of them, in clock ticks (100 per second on Linux).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
