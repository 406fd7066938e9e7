//! `pulse`: runs the Pulse pipeline on one machine with embedded backends.

mod generate;

use clap::{Parser, Subcommand};
use pulse_shared::config::{BackendKind, Config};
use pulse_shared::telemetry;

use pulse::demo;
use pulse::stack::{LocalStack, PortChoice};

#[derive(Parser)]
#[command(name = "pulse", version, about = "Run the Pulse pipeline locally")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Bind every server to a free port instead of the conventional ones (8080, 8081, …).
    #[arg(long, global = true)]
    any_ports: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Start every function, the local bus and the publish endpoint; stop with Ctrl-C.
    Up,
    /// Start the stack, run the `quick_sample` scenario (every known type, a redelivered
    /// duplicate, a malformed event) and drop a sample Parquet file, wait until the pipeline
    /// settles, and report what it stored.
    Demo(demo::DemoArgs),
    /// Start the stack and publish generated events to it at a controlled rate, by named
    /// scenario (`--scenario light_demo`) or custom run (two of --rate, --count, --duration).
    Generate(generate::GenerateArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_env()?;
    anyhow::ensure!(
        config.backend == BackendKind::Local,
        "`pulse` runs the local stack; unset PULSE_BACKEND (it is `gcp`)"
    );
    telemetry::init(&config);
    let ports = if cli.any_ports {
        PortChoice::Any
    } else {
        PortChoice::Conventional
    };
    match cli.command {
        Command::Up => {
            let stack = LocalStack::start(config, ports).await?;
            println!("{}", stack.describe());
            pulse_shared::runtime::shutdown_signal().await;
            stack.stop().await;
        }
        Command::Demo(args) => {
            let report = demo::run(config, ports, &args).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            let mismatches = report.mismatches();
            anyhow::ensure!(
                mismatches.is_empty(),
                "the pipeline stored something other than the plan says: {}",
                mismatches.join("; ")
            );
        }
        Command::Generate(args) => {
            let json = args.json;
            let report = generate::run(config, ports, args).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report.to_json())?);
            } else {
                println!("{report}");
            }
            let problems = report.problems();
            anyhow::ensure!(
                problems.is_empty(),
                "the run did not go cleanly: {}",
                problems.join("; ")
            );
        }
    }
    Ok(())
}
