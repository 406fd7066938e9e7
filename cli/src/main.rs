//! `pulse`: runs the Pulse pipeline on one machine with embedded backends, and is the
//! operator's tool for a running stack, local or deployed.

mod ddl;
mod generate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pulse_shared::config::{BackendKind, Config};
use pulse_shared::telemetry;

use pulse::exit::{self, Problems};
use pulse::stack::{LocalStack, PortChoice};
use pulse::{dead_letters, demo, inspect, render, replay, status, verify};

#[derive(Parser)]
#[command(
    name = "pulse",
    version,
    about = "Run the Pulse pipeline locally, and operate a running stack (local or deployed)",
    after_help = exit::HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Bind every server to a free port instead of the conventional ones (8080, 8081, …).
    #[arg(long, global = true, conflicts_with = "port_base")]
    any_ports: bool,
    /// Print the result as JSON on stdout, for scripts (logs and spinners go to stderr).
    #[arg(long, global = true)]
    json: bool,
    /// The local stack's data directory (default: $PULSE_DATA_DIR, else ./.pulse), for the
    /// commands that start the stack: up, demo, generate.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// More log output (-v: info, -vv: debug, -vvv: trace); RUST_LOG when neither -v nor -q.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors: no logs below error, no spinners or progress bars.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Bind the servers from this port up, in the conventional order (control at it,
    /// preprocess one above, …, predictor seven above).
    #[arg(long, global = true)]
    port_base: Option<u16>,
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
    /// List a running stack's tables: columns, partitioning, clustering, rows.
    Tables(inspect::TablesArgs),
    /// Run one read-only SELECT on a running stack's warehouse, through table-manager
    /// (bounded in rows, time and billed bytes; anything but a SELECT is refused, exit 4).
    Query(inspect::QueryArgs),
    /// Count a running stack's dead letters by reason, with the newest details; `--show ID`
    /// prints one record.
    DeadLetters(dead_letters::DeadLettersArgs),
    /// Re-drive dead letters, a raw archive slice or one landing object through the running
    /// stack's replay routes.
    Replay(replay::ReplayArgs),
    /// Each function's health, backlog and recent errors; exit 1 when one is down.
    Status(status::StatusArgs),
    /// Compare a running stack's raw archive with its event table for one type and time range:
    /// archived, stored, missing, doubled and unexpected events; `--repair` re-drives the
    /// missing and compacts the doubled.
    Verify(verify::VerifyArgs),
    /// Remove doubled rows from closed days of a running stack's tables, keeping each event's
    /// first row.
    Compact(verify::CompactArgs),
}

/// Global options every command reads.
struct Options {
    json: bool,
    quiet: bool,
    data_dir: Option<PathBuf>,
    /// The log filter the flags ask for, if they ask.
    log_filter: Option<&'static str>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            exit::code(&err)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let ports = match (cli.any_ports, cli.port_base) {
        (true, _) => PortChoice::Any,
        (false, Some(base)) => PortChoice::From(base),
        (false, None) => PortChoice::Conventional,
    };
    let options = Options {
        json: cli.json,
        quiet: cli.quiet,
        data_dir: cli.data_dir,
        log_filter: match (cli.quiet, cli.verbose) {
            (true, _) => Some("error"),
            (false, 0) => None,
            (false, 1) => Some("info"),
            (false, 2) => Some("debug"),
            (false, _) => Some("trace"),
        },
    };
    let json = options.json;
    let quiet = options.quiet || options.json;
    match cli.command {
        Command::Up => {
            let stack = LocalStack::start(local_config(&options)?, ports).await?;
            println!("{}", stack.describe());
            pulse_shared::runtime::shutdown_signal().await;
            stack.stop().await;
        }
        Command::Demo(args) => {
            let report = demo::run(local_config(&options)?, ports, &args, quiet).await?;
            let value = json.then(|| serde_json::to_value(&report)).transpose()?;
            print_report(
                value,
                &report,
                &report.mismatches(),
                "the pipeline stored something other than the plan says",
            )?;
        }
        Command::Generate(args) => {
            let report = generate::run(local_config(&options)?, ports, args, quiet).await?;
            print_report(
                json.then(|| report.to_json()),
                &report,
                &report.problems(),
                "the run did not go cleanly",
            )?;
        }
        // Needs no stack and no local configuration: it describes the BigQuery side.
        Command::Ddl(args) => print!("{}", ddl::render(&args)),
        Command::Tables(args) => {
            operator_logs(&options);
            let tables = inspect::tables(&args, quiet).await?;
            if json {
                render::print_json(&tables)?;
            } else {
                print!("{}", inspect::tables_text(&tables, args.table.is_some()));
            }
        }
        Command::Query(args) => {
            operator_logs(&options);
            let answer = inspect::query(&args, quiet).await?;
            if json {
                render::print_json(&answer)?;
            } else {
                println!("{}", inspect::answer_text(&answer));
            }
        }
        Command::DeadLetters(args) => {
            operator_logs(&options);
            dead_letters::run(&args, json, quiet).await?;
        }
        Command::Replay(args) => {
            operator_logs(&options);
            let report = replay::run(&args, quiet).await?;
            let value = json.then(|| serde_json::to_value(&report)).transpose()?;
            print_report(
                value,
                &report,
                &report.problems(),
                "the replay left work undone",
            )?;
        }
        Command::Status(args) => {
            operator_logs(&options);
            let report = status::run(&args, quiet).await;
            let value = json.then(|| serde_json::to_value(&report)).transpose()?;
            print_report(
                value,
                &report,
                &report.problems(),
                "the stack is not healthy",
            )?;
        }
        Command::Verify(args) => {
            operator_logs(&options);
            let report = verify::verify(&args, quiet).await?;
            print_report(
                json.then(|| serde_json::to_value(&report)).transpose()?,
                &report,
                &report.problems(),
                "the warehouse does not match the raw archive",
            )?;
        }
        Command::Compact(args) => {
            operator_logs(&options);
            let report = verify::compact(&args).await?;
            let value = serde_json::to_value(&report)?;
            let text = serde_json::to_string_pretty(&value)?;
            print_report(json.then_some(value), &text, &[], "")?;
        }
    }
    Ok(())
}

/// The local stack's configuration (`--data-dir` over `PULSE_DATA_DIR`), with logging set up
/// from it.
fn local_config(options: &Options) -> anyhow::Result<Config> {
    let data_dir = options
        .data_dir
        .as_ref()
        .map(|dir| dir.display().to_string());
    let config = Config::from_lookup(|name| match (name, &data_dir) {
        ("PULSE_DATA_DIR", Some(dir)) => Some(dir.clone()),
        _ => std::env::var(name).ok(),
    })?;
    anyhow::ensure!(
        config.backend == BackendKind::Local,
        "`pulse` runs the local stack; unset PULSE_BACKEND (it is `gcp`)"
    );
    telemetry::init_with_filter(&config, options.log_filter);
    Ok(config)
}

/// Logging for the commands that only call a running stack: warnings and errors unless the
/// flags or RUST_LOG say otherwise, on stderr.
fn operator_logs(options: &Options) {
    let config = Config::local(".pulse");
    let filter = options
        .log_filter
        .or_else(|| std::env::var_os("RUST_LOG").is_none().then_some("warn"));
    telemetry::init_with_filter(&config, filter);
}

/// Prints a command's report (as JSON when given, else as text), then fails the command with
/// exit 1 when the report names problems, so that a script can rely on the exit status.
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
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Problems(format!("{meaning}: {}", problems.join("; "))).into())
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
