//! The dashboard page: one HTML document, drawn on the server from what the stack answers, with
//! headings, labelled tables and charts, and real buttons, so it reads with a keyboard and a
//! screen reader as well as with a mouse.

use std::collections::BTreeMap;

use chrono::Utc;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use pulse_shared::metrics::{
    DEAD_LETTERS, DELIVERIES, FRESHNESS_EVENT_SECONDS, FRESHNESS_PUBLISH_SECONDS, ROWS_WRITTEN,
    worst_quantile,
};
use serde_json::{Map, Value};

use super::charts::{self, Bars};
use super::health::Series;
use super::{Dashboard, DeadLetters, ReplayResult};

/// How many bars a chart of products, customers or devices shows (the largest ones).
const TOP: usize = 10;
/// How many hours the hourly charts show (the latest ones).
const HOURS: usize = 24;

const STYLE: &str = "
body { font: 16px/1.45 system-ui, sans-serif; margin: 0; color: #1b1b1b; background: #f6f7f9; }
header, main { max-width: 1240px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 12px; }
h1 { margin: 8px 0 0; font-size: 1.6rem; }
h2 { margin: 28px 0 8px; font-size: 1.25rem; }
h3 { margin: 0 0 4px; font-size: 1rem; }
.skip { position: absolute; left: -999px; }
.skip:focus { left: 8px; top: 8px; background: #fff; padding: 6px; }
.stats { display: grid; grid-template-columns: repeat(auto-fit, minmax(180px, 1fr)); gap: 12px; margin: 0; }
.stats div { background: #fff; border: 1px solid #d0d4da; border-radius: 6px; padding: 10px 14px; }
.stats dt { font-size: .85rem; color: #44474d; }
.stats dd { margin: 0; font-size: 1.6rem; font-weight: 600; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid #d0d4da; border-radius: 6px; padding: 10px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg.chart { width: 100%; max-width: 720px; height: auto; display: block; }
table { border-collapse: collapse; background: #fff; width: 100%; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border: 1px solid #d0d4da; padding: 4px 8px; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.detail { max-width: 520px; overflow-wrap: anywhere; }
button { font: inherit; padding: 4px 12px; border: 1px solid #0b5cad; background: #0b5cad; color: #fff; border-radius: 4px; cursor: pointer; }
button:focus-visible, a:focus-visible { outline: 3px solid #e69f00; outline-offset: 2px; }
.status { background: #e8f3ea; border: 1px solid #2e7d32; padding: 8px 12px; border-radius: 6px; margin-top: 12px; }
.status.failed { background: #fdecea; border-color: #b3261e; }
.problem { color: #b3261e; }
";

/// Everything the page shows, gathered from the stack.
struct Gathered {
    tables: Result<Vec<(String, u64)>, String>,
    dead_letters: Result<DeadLetters, String>,
    orders_hourly: Result<Vec<Map<String, Value>>, String>,
    inventory: Result<Vec<Map<String, Value>>, String>,
    customers: Result<Vec<Map<String, Value>>, String>,
    funnel: Result<Vec<Map<String, Value>>, String>,
    devices: Result<Vec<Map<String, Value>>, String>,
}

async fn gather(dashboard: &Dashboard) -> Gathered {
    let tables = async {
        let tables: Vec<Map<String, Value>> = dashboard.table_manager("/tables").await?;
        Ok(tables
            .iter()
            .map(|table| {
                let name = table
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                (name.to_owned(), table.get("rows").map_or(0.0, num) as u64)
            })
            .collect())
    };
    let (tables, dead_letters, orders_hourly, inventory, customers, funnel, devices) = tokio::join!(
        tables,
        dashboard.dead_letters(),
        dashboard.view("orders_hourly"),
        dashboard.view("inventory_movement"),
        dashboard.view("customer_summary"),
        dashboard.view("activity_funnel"),
        dashboard.view("device_anomalies"),
    );
    Gathered {
        tables,
        dead_letters,
        orders_hourly,
        inventory,
        customers,
        funnel,
        devices,
    }
}

/// The whole page, with the outcome of a replay button when one was pressed.
pub async fn render(dashboard: &Dashboard, replayed: Option<ReplayResult>) -> Markup {
    let data = gather(dashboard).await;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Pulse — local dashboard" }
                // No icon: without this line the browser asks for /favicon.ico.
                link rel="icon" href="data:,";
                style { (PreEscaped(STYLE)) }
            }
            body {
                a class="skip" href="#main" { "Skip to the dashboard" }
                header {
                    h1 { "Pulse — local dashboard" }
                    p {
                        "Data dir " code { (dashboard.data_dir) }
                        " · drawn at " (Utc::now().format("%H:%M:%S UTC"))
                        " · " a href="/" { "Refresh" }
                    }
                }
                main id="main" {
                    @if let Some(result) = &replayed { (replay_status(result)) }
                    (health(dashboard, &data))
                    (curated(&data))
                    (dead_letters(&data.dead_letters))
                }
            }
        }
    }
}

fn replay_status(result: &ReplayResult) -> Markup {
    match result {
        ReplayResult::Done { name, report } => {
            let again: Vec<String> = report
                .dead_lettered
                .iter()
                .map(|(reason, n)| format!("{reason} {n}"))
                .collect();
            html! {
                div class="status" role="status" id="replay-status" {
                    "Replayed " code { (name) } " through preprocess /replay: "
                    (report.accepted) " accepted, " (report.duplicates) " already archived, "
                    @if again.is_empty() { "none dead-lettered again" }
                    @else { "dead-lettered again: " (again.join(", ")) }
                    @if !report.unreadable.is_empty() { ", unreadable: " (report.unreadable.join(", ")) }
                    "."
                }
            }
        }
        ReplayResult::Failed { name, why } => html! {
            div class="status failed" role="alert" id="replay-status" {
                "Replay of " code { (name) } " failed: " (why)
            }
        },
    }
}

fn health(dashboard: &Dashboard, data: &Gathered) -> Markup {
    let history = &dashboard.history;
    let rows_total: Option<u64> = data
        .tables
        .as_ref()
        .ok()
        .map(|tables| tables.iter().map(|(_, rows)| rows).sum());
    let dead_total: Option<u64> = data
        .dead_letters
        .as_ref()
        .ok()
        .map(|dead| dead.by_reason.values().sum());
    let freshness =
        |name: &str, quantile: &str| worst_quantile(&history.latest(name), name, quantile);
    let deliveries: Vec<(String, Series)> =
        history.rates(DELIVERIES, "function").into_iter().collect();
    let rows_rate: Vec<(String, Series)> =
        history.rates(ROWS_WRITTEN, "table").into_iter().collect();
    let dead_rate: Vec<(String, Series)> =
        history.rates(DEAD_LETTERS, "reason").into_iter().collect();
    let seconds =
        |value: Option<f64>| value.map_or_else(|| "—".to_owned(), |v| format!("{v:.3} s"));
    html! {
        section aria-labelledby="health-heading" {
            h2 id="health-heading" { "Pipeline health" }
            dl class="stats" {
                div { dt { "Rows in the warehouse" } dd id="rows-total" { (opt(rows_total)) } }
                div { dt { "Dead letters" } dd id="dead-letters-total" { (opt(dead_total)) } }
                div { dt { "Freshness p50, event → row" } dd id="freshness-p50" { (seconds(freshness(FRESHNESS_EVENT_SECONDS, "0.5"))) } }
                div { dt { "Freshness p99, event → row" } dd id="freshness-p99" { (seconds(freshness(FRESHNESS_EVENT_SECONDS, "0.99"))) } }
                div { dt { "Freshness p99, publish → row" } dd id="publish-freshness-p99" { (seconds(freshness(FRESHNESS_PUBLISH_SECONDS, "0.99"))) } }
            }
            p { "Rates and freshness cover what this run of the stack has seen (the last minute for freshness); rows and dead letters are everything stored." }
            div class="grid" {
                figure { figcaption { "Deliveries per second, by function" }
                    (PreEscaped(charts::lines("deliveries-chart", "Deliveries per second, by function", "per second", &deliveries))) }
                figure { figcaption { "Rows written per second, by table" }
                    (PreEscaped(charts::lines("rows-rate-chart", "Rows written per second, by table", "per second", &rows_rate))) }
                figure { figcaption { "Dead letters per second, by reason" }
                    (PreEscaped(charts::lines("dead-rate-chart", "Dead letters per second, by reason", "per second", &dead_rate))) }
                (rows_per_table(&data.tables))
            }
            (freshness_table(dashboard))
        }
    }
}

fn rows_per_table(tables: &Result<Vec<(String, u64)>, String>) -> Markup {
    match tables {
        Err(why) => problem("Rows per table", why),
        Ok(tables) => {
            let categories: Vec<String> = tables.iter().map(|(name, _)| name.clone()).collect();
            let values: Vec<f64> = tables.iter().map(|(_, rows)| *rows as f64).collect();
            html! {
                figure {
                    figcaption { "Rows per table" }
                    (PreEscaped(charts::bars("rows-chart", "Rows per table", "rows", &categories, &[Bars { name: "rows".to_owned(), values }])))
                    table id="rows-per-table" {
                        caption { "Rows per table, as table-manager reports them" }
                        thead { tr { th scope="col" { "table" } th scope="col" { "rows" } } }
                        tbody {
                            @for (name, rows) in tables {
                                tr data-table=(name) { th scope="row" { (name) } td class="n" { (rows) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn freshness_table(dashboard: &Dashboard) -> Markup {
    let mut by_table: BTreeMap<String, [Option<f64>; 4]> = BTreeMap::new();
    for (column, name, quantile) in [
        (0, FRESHNESS_EVENT_SECONDS, "0.5"),
        (1, FRESHNESS_EVENT_SECONDS, "0.99"),
        (2, FRESHNESS_PUBLISH_SECONDS, "0.5"),
        (3, FRESHNESS_PUBLISH_SECONDS, "0.99"),
    ] {
        for sample in dashboard.history.latest(name) {
            if sample.label("quantile") == quantile {
                by_table
                    .entry(sample.label("table").to_owned())
                    .or_default()[column] = Some(sample.value);
            }
        }
    }
    let cell = |value: &Option<f64>| value.map_or_else(|| "—".to_owned(), |v| format!("{v:.3}"));
    html! {
        table id="freshness" {
            caption { "Freshness per table over the last minute, in seconds (event timestamp or Pub/Sub publish → row committed)" }
            thead { tr {
                th scope="col" { "table" }
                th scope="col" { "event → row p50" } th scope="col" { "event → row p99" }
                th scope="col" { "publish → row p50" } th scope="col" { "publish → row p99" }
            } }
            tbody {
                @if by_table.is_empty() { tr { td colspan="5" { "No rows written since the stack started." } } }
                @for (table, values) in &by_table {
                    tr { th scope="row" { (table) } @for value in values { td class="n" { (cell(value)) } } }
                }
            }
        }
    }
}

fn curated(data: &Gathered) -> Markup {
    html! {
        section aria-labelledby="views-heading" {
            h2 id="views-heading" { "Curated views" }
            p { "The views Terraform creates in BigQuery, created in DuckDB from the same SQL and read through table-manager's " code { "GET /views/{name}" } "." }
            div class="grid" {
                (orders_hourly(&data.orders_hourly))
                (inventory(&data.inventory))
                (customers(&data.customers))
                (funnel(&data.funnel))
                (devices(&data.devices))
            }
        }
    }
}

fn orders_hourly(rows: &Result<Vec<Map<String, Value>>, String>) -> Markup {
    let rows = match rows {
        Ok(rows) => rows,
        Err(why) => return problem("Orders and revenue per hour", why),
    };
    let mut hours: Vec<(String, f64, f64)> = rows
        .iter()
        .map(|row| {
            (
                text(row, "order_hour"),
                field(row, "orders"),
                field(row, "revenue"),
            )
        })
        .collect();
    hours.sort_by(|a, b| a.0.cmp(&b.0));
    let hours = &hours[hours.len().saturating_sub(HOURS)..];
    // "2026-12-05 14:00:00" or "2026-12-05T14:00:00Z": the hour is enough on the axis.
    let labels: Vec<String> = hours
        .iter()
        .map(|(hour, _, _)| hour.get(11..16).unwrap_or(hour).to_owned())
        .collect();
    let orders = hours.iter().map(|(_, orders, _)| *orders).collect();
    let revenue = hours.iter().map(|(_, _, revenue)| *revenue).collect();
    html! {
        figure {
            figcaption { "Orders per hour (orders_hourly)" }
            (PreEscaped(charts::bars("orders-chart", "Orders per hour", "orders", &labels, &[Bars { name: "orders".to_owned(), values: orders }])))
        }
        figure {
            figcaption { "Revenue per hour (orders_hourly)" }
            (PreEscaped(charts::bars("revenue-chart", "Revenue per hour", "revenue", &labels, &[Bars { name: "revenue".to_owned(), values: revenue }])))
        }
    }
}

fn inventory(rows: &Result<Vec<Map<String, Value>>, String>) -> Markup {
    let rows = match rows {
        Ok(rows) => rows,
        Err(why) => return problem("Inventory movement", why),
    };
    let mut products: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for row in rows {
        let entry = products.entry(text(row, "product_id")).or_default();
        entry.0 += field(row, "units_in");
        entry.1 += field(row, "units_out");
    }
    let top = largest(products.into_iter().collect(), |(units_in, units_out)| {
        units_in + units_out
    });
    let labels: Vec<String> = top.iter().map(|(product, _)| product.clone()).collect();
    html! {
        figure {
            figcaption { "Inventory movement by product (inventory_movement)" }
            (PreEscaped(charts::bars("inventory-chart", "Units in and out by product", "units", &labels, &[
                Bars { name: "units in".to_owned(), values: top.iter().map(|(_, (units_in, _))| *units_in).collect() },
                Bars { name: "units out".to_owned(), values: top.iter().map(|(_, (_, units_out))| *units_out).collect() },
            ])))
        }
    }
}

fn customers(rows: &Result<Vec<Map<String, Value>>, String>) -> Markup {
    let rows = match rows {
        Ok(rows) => rows,
        Err(why) => return problem("Top customers", why),
    };
    let top = largest(
        rows.iter()
            .map(|row| (text(row, "customer_id"), field(row, "revenue")))
            .collect(),
        |revenue| *revenue,
    );
    let labels: Vec<String> = top.iter().map(|(customer, _)| customer.clone()).collect();
    html! {
        figure {
            figcaption { "Top customers by revenue (customer_summary)" }
            (PreEscaped(charts::bars("customers-chart", "Top customers by revenue", "revenue", &labels, &[
                Bars { name: "revenue".to_owned(), values: top.iter().map(|(_, revenue)| *revenue).collect() },
            ])))
        }
    }
}

fn funnel(rows: &Result<Vec<Map<String, Value>>, String>) -> Markup {
    let rows = match rows {
        Ok(rows) => rows,
        Err(why) => return problem("Activity funnel", why),
    };
    // Users are distinct per day: the chart shows the latest day rather than add days up.
    let day = rows
        .iter()
        .map(|row| text(row, "event_date"))
        .max()
        .unwrap_or_default();
    let mut steps: Vec<(f64, String, f64, f64)> = rows
        .iter()
        .filter(|row| text(row, "event_date") == day)
        .map(|row| {
            (
                field(row, "step"),
                text(row, "activity_type"),
                field(row, "events"),
                field(row, "users"),
            )
        })
        .collect();
    steps.sort_by(|a, b| a.0.total_cmp(&b.0));
    let labels: Vec<String> = steps.iter().map(|(_, step, _, _)| step.clone()).collect();
    let title = format!("Activity funnel, {day}");
    html! {
        figure {
            figcaption { (title) " (activity_funnel)" }
            (PreEscaped(charts::bars("funnel-chart", &title, "count", &labels, &[
                Bars { name: "events".to_owned(), values: steps.iter().map(|(_, _, events, _)| *events).collect() },
                Bars { name: "users".to_owned(), values: steps.iter().map(|(_, _, _, users)| *users).collect() },
            ])))
        }
    }
}

fn devices(rows: &Result<Vec<Map<String, Value>>, String>) -> Markup {
    let rows = match rows {
        Ok(rows) => rows,
        Err(why) => return problem("Device anomalies", why),
    };
    let mut devices: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for row in rows {
        let entry = devices.entry(text(row, "device_id")).or_default();
        entry.0 += 1.0;
        if row.get("is_anomaly") == Some(&Value::Bool(true)) {
            entry.1 += 1.0;
        }
    }
    let top = largest(devices.into_iter().collect(), |(readings, _)| *readings);
    let labels: Vec<String> = top.iter().map(|(device, _)| device.clone()).collect();
    html! {
        figure {
            figcaption { "Device readings and anomalies (device_anomalies)" }
            (PreEscaped(charts::bars("devices-chart", "Readings and anomalies by device", "readings", &labels, &[
                Bars { name: "readings".to_owned(), values: top.iter().map(|(_, (readings, _))| *readings).collect() },
                Bars { name: "anomalies".to_owned(), values: top.iter().map(|(_, (_, anomalies))| *anomalies).collect() },
            ])))
        }
    }
}

fn dead_letters(dead: &Result<DeadLetters, String>) -> Markup {
    let dead = match dead {
        Ok(dead) => dead,
        Err(why) => return problem("Dead letters", why),
    };
    let reasons: Vec<String> = dead.by_reason.keys().cloned().collect();
    let counts: Vec<f64> = dead.by_reason.values().map(|n| *n as f64).collect();
    html! {
        section aria-labelledby="dead-heading" {
            h2 id="dead-heading" { "Dead letters" }
            div class="grid" {
                figure {
                    figcaption { "Dead letters by reason" }
                    (PreEscaped(charts::bars("dead-chart", "Dead letters by reason", "records", &reasons, &[Bars { name: "records".to_owned(), values: counts }])))
                    table id="dead-letters-by-reason" {
                        caption { "Dead letters by reason, as stored" }
                        thead { tr { th scope="col" { "reason" } th scope="col" { "records" } } }
                        tbody { @for (reason, n) in &dead.by_reason { tr data-reason=(reason) { th scope="row" { (reason) } td class="n" { (n) } } } }
                    }
                }
            }
            table id="recent-dead-letters" {
                caption { "The " (dead.recent.len()) " newest dead letters. Replay sends one through preprocess's /replay, which validates it again." }
                thead { tr {
                    th scope="col" { "when" } th scope="col" { "reason" } th scope="col" { "function" }
                    th scope="col" { "detail" } th scope="col" { "replay" }
                } }
                tbody {
                    @if dead.recent.is_empty() { tr { td colspan="5" { "No dead letters." } } }
                    @for (name, record) in &dead.recent {
                        tr {
                            td { (record.dead_lettered_at) }
                            td { (record.reason) }
                            td { (record.function) }
                            td class="detail" { (record.detail) br; small { code { (name) } } }
                            td {
                                form method="post" action="/dead-letters/replay" {
                                    input type="hidden" name="name" value=(name);
                                    button type="submit" aria-label={ "Replay " (name) } { "Replay" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn problem(what: &str, why: &str) -> Markup {
    html! { figure { figcaption { (what) } p class="problem" role="alert" { "Could not read it: " (why) } } }
}

fn opt(value: Option<u64>) -> String {
    value.map_or_else(|| "—".to_owned(), |n| n.to_string())
}

/// The `TOP` largest entries by `size`, largest first.
fn largest<T>(mut entries: Vec<(String, T)>, size: impl Fn(&T) -> f64) -> Vec<(String, T)> {
    entries.sort_by(|a, b| {
        size(&b.1)
            .total_cmp(&size(&a.1))
            .then_with(|| a.0.cmp(&b.0))
    });
    entries.truncate(TOP);
    entries
}

/// A cell as a number: warehouses send big sums and decimals as strings too.
fn num(value: &Value) -> f64 {
    match value {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn field(row: &Map<String, Value>, name: &str) -> f64 {
    row.get(name).map_or(0.0, num)
}

fn text(row: &Map<String, Value>, name: &str) -> String {
    match row.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_read_as_numbers_and_text() {
        assert_eq!(num(&Value::from(3)), 3.0);
        assert_eq!(num(&Value::from("12.5")), 12.5);
        assert_eq!(num(&Value::Null), 0.0);
        let row: Map<String, Value> =
            serde_json::from_str(r#"{"a": "x", "b": 7, "c": null}"#).unwrap_or_default();
        assert_eq!(text(&row, "a"), "x");
        assert_eq!(text(&row, "b"), "7");
        assert_eq!(text(&row, "c"), "");
    }

    #[test]
    fn the_largest_come_first_and_no_more_than_top() {
        let entries = (0..15)
            .map(|n| (format!("k{n:02}"), f64::from(n)))
            .collect();
        let top = largest(entries, |n| *n);
        assert_eq!(top.len(), TOP);
        assert_eq!(top[0], ("k14".to_owned(), 14.0));
    }
}
