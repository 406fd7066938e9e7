//! `pulse`: runs the Pulse pipeline on one machine with embedded backends.

mod ddl;
mod generate;

use clap::{Parser, Subcommand};
use pulse_shared::config::{BackendKind, Config};
use pulse_shared::telemetry;

use pulse::stack::{LocalStack, PortChoice};
use pulse::{demo, verify};

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
    /// Start every function, the local bus, the publish endpoint and the dashboard
    /// (http://127.0.0.1:8080/); stop with Ctrl-C.
    Up,
    /// Start the stack, run the `quick_sample` scenario (every known type, a redelivered
    /// duplicate, a malformed event) and drop a sample Parquet file, wait until the pipeline
    /// settles, and report what it stored.
    Demo(demo::DemoArgs),
    /// Start the stack and publish generated events to it at a controlled rate, by named
    /// scenario (`--scenario light_demo`) or custom run (two of --rate, --count, --duration).
    Generate(generate::GenerateArgs),
    /// Print the BigQuery DDL of every known table and curated view (partitioning, clustering,
    /// descriptions), from the registry the functions use.
    Ddl(ddl::DdlArgs),
    /// Compare a running stack's raw archive with its event table for one type and time range:
    /// archived, stored, missing, doubled and unexpected events; `--repair` re-drives the
    /// missing and compacts the doubled.
    Verify(verify::VerifyArgs),
    /// Remove doubled rows from closed days of a running stack's tables, keeping each event's
    /// first row.
    Compact(verify::CompactArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let ports = if cli.any_ports {
        PortChoice::Any
    } else {
        PortChoice::Conventional
    };
    match cli.command {
        Command::Up => {
            let stack = LocalStack::start(local_config()?, ports).await?;
            println!("{}", stack.describe());
            pulse_shared::runtime::shutdown_signal().await;
            stack.stop().await;
        }
        Command::Demo(args) => {
            let report = demo::run(local_config()?, ports, &args).await?;
            let json = args
                .json
                .then(|| serde_json::to_value(&report))
                .transpose()?;
            print_report(
                json,
                &report,
                &report.mismatches(),
                "the pipeline stored something other than the plan says",
            )?;
        }
        Command::Verify(args) => {
            let report = verify::verify(&args, args.json).await?;
            print_report(
                args.json
                    .then(|| serde_json::to_value(&report))
                    .transpose()?,
                &report,
                &report.problems(),
                "the warehouse does not match the raw archive",
            )?;
        }
        Command::Compact(args) => {
            let report = verify::compact(&args).await?;
            let json = serde_json::to_value(&report)?;
            let text = serde_json::to_string_pretty(&json)?;
            print_report(args.json.then_some(json), &text, &[], "")?;
        }
        Command::Generate(args) => {
            let json = args.json;
            let report = generate::run(local_config()?, ports, args).await?;
            print_report(
                json.then(|| report.to_json()),
                &report,
                &report.problems(),
                "the run did not go cleanly",
            )?;
        }
        // Needs no stack and no local configuration: it describes the BigQuery side.
        Command::Ddl(args) => print!("{}", ddl::render(&args)),
    }
    Ok(())
}

/// The local stack's configuration, with logging set up from it.
fn local_config() -> anyhow::Result<Config> {
    let config = Config::from_env()?;
    anyhow::ensure!(
        config.backend == BackendKind::Local,
        "`pulse` runs the local stack; unset PULSE_BACKEND (it is `gcp`)"
    );
    telemetry::init(&config);
    Ok(config)
}

/// Prints a command's report (as JSON when given, else as text), then fails the command when
/// the report names problems, so that a script can rely on the exit status.
fn print_report(
    json: Option<serde_json::Value>,
    text: &impl std::fmt::Display,
    problems: &[String],
    meaning: &str,
) -> anyhow::Result<()> {
    match json {
        Some(json) => println!("{}", serde_json::to_string_pretty(&json)?),
        None => println!("{text}"),
    }
    anyhow::ensure!(problems.is_empty(), "{meaning}: {}", problems.join("; "));
    Ok(())
}
