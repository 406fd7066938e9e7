//! The open-loop driver of the functions' load benchmarks (docs/benchmarks.md): deliveries
//! offered at a fixed rate over loopback HTTP, each leaving at its scheduled time whatever the
//! answers do, and the rows they left in the warehouse counted afterwards.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::warehouse::Warehouse;

/// When one delivery was due and when it actually left.
#[derive(Clone, Copy)]
pub struct Timing {
    pub scheduled: Instant,
    pub sent: Instant,
}

/// What [`offer`] sent and what each answer came to.
pub struct Offered<S> {
    /// Events offered; each goes once, and every tenth once more.
    pub distinct: u64,
    /// Requests sent, redeliveries included.
    pub deliveries: usize,
    /// From the first scheduled send to the last actual one.
    pub offered_for: Duration,
    /// What `answer` made of each response, in no particular order.
    pub answers: Vec<S>,
}

impl<S> Offered<S> {
    /// Prints what was offered and how many requests failed.
    pub fn print(&self, failures: usize) {
        println!(
            "offered          {} deliveries ({} distinct events) in {:.1?} = {:.0}/s",
            self.deliveries,
            self.distinct,
            self.offered_for,
            self.deliveries as f64 / self.offered_for.as_secs_f64()
        );
        println!("failed requests  {failures}");
    }
}

/// POSTs `body(i)` (JSON) to `url` for `rate` events a second over `secs` seconds, open loop,
/// every tenth event again a second later (a redelivery under load); `answer` turns each
/// response into a sample.
pub async fn offer<S, A, F>(
    url: &str,
    rate: u64,
    secs: u64,
    body: impl Fn(u64) -> String,
    answer: A,
) -> Offered<S>
where
    S: Send + 'static,
    A: Fn(reqwest::Result<reqwest::Response>, Timing) -> F + Clone + Send + 'static,
    F: Future<Output = S> + Send,
{
    let distinct = rate * secs;
    let mut schedule: Vec<(Duration, u64)> = (0..distinct)
        .map(|i| (Duration::from_secs_f64(i as f64 / rate as f64), i))
        .chain(
            (0..distinct)
                .step_by(10)
                .map(|i| (Duration::from_secs_f64(i as f64 / rate as f64 + 1.0), i)),
        )
        .collect();
    schedule.sort();
    let bodies = Arc::new((0..distinct).map(body).collect::<Vec<_>>());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .expect("an HTTP client");
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(schedule.len());
    for (at, i) in schedule.iter().copied() {
        let scheduled = start + at;
        tokio::time::sleep_until(scheduled).await;
        let (client, url, bodies, answer) = (
            client.clone(),
            url.to_owned(),
            bodies.clone(),
            answer.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .body(bodies[i as usize].clone())
                .send()
                .await;
            answer(response, Timing { scheduled, sent }).await
        }));
    }
    let offered_for = start.elapsed();
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        answers.push(task.await.expect("a delivery task"));
    }
    Offered {
        distinct,
        deliveries: schedule.len(),
        offered_for,
        answers,
    }
}

/// The value below which a fraction `p` of the sorted `values` lie (zero when there are none).
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    let Some(last) = sorted.len().checked_sub(1) else {
        return T::default();
    };
    sorted[((sorted.len() as f64 * p) as usize).min(last)]
}

/// Counts the rows of `table` and its distinct `event_id`s, and prints how many of the
/// `distinct` events offered were lost or doubled.
pub async fn print_rows_in_table(warehouse: &dyn Warehouse, table: &str, distinct: u64) {
    let counted = warehouse
        .query(&format!(
            "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM {table}"
        ))
        .await
        .expect("count the rows");
    let rows = counted[0]["n"].as_u64().expect("a row count");
    let unique = counted[0]["d"].as_u64().expect("a distinct count");
    println!(
        "rows in table    {rows}: lost {}, doubled {}",
        distinct.saturating_sub(unique),
        rows - unique
    );
}
