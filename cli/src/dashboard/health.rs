//! Pipeline health over the last minutes: the dashboard scrapes the stack's `GET /metrics` as a
//! Prometheus server would, keeps the scrapes of a window, and turns counters into rates.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pulse_shared::metrics::{self, DEAD_LETTERS, DELIVERIES, ROWS_WRITTEN, Sample};

/// How often the stack is scraped.
pub const SCRAPE_EVERY: Duration = Duration::from_secs(2);
/// How far back the charts look.
pub const WINDOW: Duration = Duration::from_secs(600);
/// The counters the charts draw as rates. The latest scrape is kept whole, for
/// [`History::latest`]; older ones keep only these, so the window holds a few samples per scrape
/// instead of every sample of 300 scrapes (about 25 MiB on a busy stack, measured in the soak).
const CHARTED: [&str; 3] = [DELIVERIES, ROWS_WRITTEN, DEAD_LETTERS];

struct Scrape {
    at: Instant,
    samples: Vec<Sample>,
}

/// The scrapes of the last [`WINDOW`].
#[derive(Clone, Default)]
pub struct History {
    scrapes: Arc<Mutex<VecDeque<Scrape>>>,
}

/// One line of a chart: `(seconds before now, value)` points.
pub type Series = Vec<(f64, f64)>;

impl History {
    /// Scrapes `url` every [`SCRAPE_EVERY`] until the task is dropped. The local stack runs
    /// every function in one process with one recorder, so one scrape holds all of them.
    pub async fn scrape_forever(self, http: reqwest::Client, url: String) {
        let mut ticks = tokio::time::interval(SCRAPE_EVERY);
        loop {
            ticks.tick().await;
            match scrape(&http, &url).await {
                Ok(samples) => self.push(Instant::now(), samples),
                Err(err) => tracing::debug!("metrics scrape of {url} failed: {err}"),
            }
        }
    }

    fn push(&self, at: Instant, samples: Vec<Sample>) {
        let mut scrapes = self.lock();
        if let Some(previous) = scrapes.back_mut() {
            previous
                .samples
                .retain(|sample| CHARTED.contains(&sample.name.as_str()));
            previous.samples.shrink_to_fit();
        }
        scrapes.push_back(Scrape { at, samples });
        while scrapes
            .front()
            .is_some_and(|oldest| at.duration_since(oldest.at) > WINDOW)
        {
            scrapes.pop_front();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Scrape>> {
        self.scrapes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The latest value of every sample named `name`.
    pub fn latest(&self, name: &str) -> Vec<Sample> {
        self.lock().back().map_or_else(Vec::new, |scrape| {
            scrape
                .samples
                .iter()
                .filter(|sample| sample.name == name)
                .cloned()
                .collect()
        })
    }

    /// Per-second rates of counter `name` (one of [`CHARTED`]), summed by the value of label
    /// `by`, between each pair of scrapes in the window.
    pub fn rates(&self, name: &str, by: &str) -> BTreeMap<String, Series> {
        debug_assert!(CHARTED.contains(&name), "{name} is not kept for rates");
        let scrapes = self.lock();
        let Some(now) = scrapes.back().map(|scrape| scrape.at) else {
            return BTreeMap::new();
        };
        let totals: Vec<(Instant, BTreeMap<String, f64>)> = scrapes
            .iter()
            .map(|scrape| (scrape.at, sum_by(&scrape.samples, name, by)))
            .collect();
        let mut series: BTreeMap<String, Series> = BTreeMap::new();
        for pair in totals.windows(2) {
            let ((before_at, before), (after_at, after)) = (&pair[0], &pair[1]);
            let seconds = after_at.duration_since(*before_at).as_secs_f64();
            let ago = now.duration_since(*after_at).as_secs_f64();
            for (key, total) in after {
                let earlier = before.get(key).copied().unwrap_or(0.0);
                // A counter only grows; a drop is a restart, counted from zero.
                let grown = if *total >= earlier {
                    total - earlier
                } else {
                    *total
                };
                series
                    .entry(key.clone())
                    .or_default()
                    .push((-ago, grown / seconds));
            }
        }
        series
    }
}

/// The values of samples named `name`, summed by the value of their label `by`.
fn sum_by(samples: &[Sample], name: &str, by: &str) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for sample in samples.iter().filter(|sample| sample.name == name) {
        *sums.entry(sample.label(by).to_owned()).or_default() += sample.value;
    }
    sums
}

async fn scrape(http: &reqwest::Client, url: &str) -> Result<Vec<Sample>, reqwest::Error> {
    let text = http
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(metrics::parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(function: &str, value: f64) -> Sample {
        Sample {
            name: DELIVERIES.to_owned(),
            labels: [("function".to_owned(), function.to_owned())].into(),
            value,
        }
    }

    #[test]
    fn counters_become_rates_per_label() {
        let history = History::default();
        let start = Instant::now();
        history.push(start, vec![counter("a", 10.0)]);
        history.push(
            start + Duration::from_secs(2),
            vec![counter("a", 30.0), counter("b", 4.0)],
        );
        // A restart: the counter starts again from zero.
        history.push(start + Duration::from_secs(4), vec![counter("a", 6.0)]);
        let rates = history.rates(DELIVERIES, "function");
        assert_eq!(rates["a"], vec![(-2.0, 10.0), (0.0, 3.0)]);
        assert_eq!(rates["b"], vec![(-2.0, 2.0)]);
        assert_eq!(history.latest(DELIVERIES), vec![counter("a", 6.0)]);
    }

    #[test]
    fn older_scrapes_keep_only_the_charted_counters() {
        let history = History::default();
        let start = Instant::now();
        let quantile = Sample {
            name: metrics::FRESHNESS_EVENT_SECONDS.to_owned(),
            labels: [("quantile".to_owned(), "0.99".to_owned())].into(),
            value: 1.5,
        };
        let scrape = vec![counter("a", 1.0), quantile.clone()];
        history.push(start, scrape.clone());
        history.push(start + Duration::from_secs(2), scrape);
        let scrapes = history.lock();
        assert_eq!(scrapes[0].samples, vec![counter("a", 1.0)]);
        assert_eq!(scrapes[1].samples, vec![counter("a", 1.0), quantile]);
    }

    #[test]
    fn scrapes_older_than_the_window_are_dropped() {
        let history = History::default();
        let start = Instant::now();
        history.push(start, vec![counter("a", 1.0)]);
        history.push(start + WINDOW + Duration::from_secs(1), vec![]);
        assert_eq!(history.lock().len(), 1);
    }
}
