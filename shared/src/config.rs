//! Typed configuration, read once from the environment at start-up; a bad value stops the
//! process with the name of the variable to fix.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::delivery::oidc::PushAuthConfig;
use crate::error::ConfigError;
use crate::jobs::JobTiming;
use crate::namespace;

/// Which implementation backs each outside system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Google Cloud: Cloud Storage and Pub/Sub through the official SDK crates.
    Gcp,
    /// Embedded: a directory per bucket and the in-process bus. Refuses to run on Cloud Run.
    Local,
}

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gcp" => Ok(Self::Gcp),
            "local" => Ok(Self::Local),
            other => Err(format!("expected `gcp` or `local`, got `{other}`")),
        }
    }
}

/// Everything a Pulse function reads from its environment.
#[derive(Clone, Debug)]
pub struct Config {
    /// `PORT`: where the HTTP server listens (Cloud Run sets it; default 8080); `AIP_HTTP_PORT`
    /// when set (Vertex AI sets it for a custom container).
    pub port: u16,
    /// `K_SERVICE`: the Cloud Run service name, present only on Cloud Run.
    pub service: Option<String>,
    /// `K_REVISION`: the Cloud Run revision, present only on Cloud Run.
    pub revision: Option<String>,
    /// `GOOGLE_CLOUD_PROJECT`: the project (required with GCP backends; `local` otherwise).
    pub project: String,
    /// `PULSE_BACKEND`: `gcp` on Cloud Run, `local` elsewhere unless set.
    pub backend: BackendKind,
    /// `PULSE_LOG_FORMAT`: `json` (Cloud Logging) on Cloud Run, `text` elsewhere unless set.
    pub json_logs: bool,
    /// `PULSE_DATA_DIR`: root of the local backends' files (default `./.pulse`).
    pub data_dir: PathBuf,
    /// `PULSE_RAW_BUCKET`: raw archive and dead-letter bucket (default `pulse-raw`).
    pub raw_bucket: String,
    /// `PULSE_LANDING_BUCKET`: Parquet landing and quarantine bucket (default `pulse-landing`).
    pub landing_bucket: String,
    /// `PULSE_RAW_PREFIX`: raw archive prefix inside the raw bucket (default `raw/`).
    pub raw_prefix: String,
    /// `PULSE_DEAD_LETTER_PREFIX`: dead-letter prefix inside the raw bucket (default `dead-letter/`).
    pub dead_letter_prefix: String,
    /// `PULSE_LANDING_PREFIX`: where Parquet drops land in the landing bucket (default `landing/`).
    pub landing_prefix: String,
    /// `PULSE_QUARANTINE_PREFIX`: where refused files go in the landing bucket (default
    /// `quarantine/`).
    pub quarantine_prefix: String,
    /// `PULSE_JOBS_PREFIX`: where replay jobs keep their state in the raw bucket (default
    /// `jobs/`; see [`crate::jobs`]).
    pub jobs_prefix: String,
    /// How often a replay job records its progress, and when a silent one is taken over.
    pub jobs: JobTiming,
    /// `PULSE_LANDING_PARTITION_COLUMN`: the date or timestamp column a table created from a
    /// Parquet file is partitioned on, when the file has it (else its first such column).
    pub landing_partition_column: Option<String>,
    /// `DATABASE_URL`: PostgreSQL that parquet-loader also copies rows into (Cloud SQL in
    /// production), e.g. `postgresql://pulse@127.0.0.1:5432/pulse`; none when unset.
    pub database_url: Option<String>,
    /// `PULSE_RAW_TOPIC`: topic of incoming events (default `events-raw`).
    pub raw_topic: String,
    /// `PULSE_PROCESSED_TOPIC`: topic of normalised events (default `events-processed`).
    pub processed_topic: String,
    /// `PULSE_MAX_BODY_BYTES`: largest HTTP body accepted (default 16 MiB: a 10 MB Pub/Sub
    /// message in base64 inside its envelope still fits, so it can be dead-lettered whole).
    pub max_body_bytes: usize,
    /// `PULSE_MAX_EVENT_BYTES`: largest decoded event; larger ones are dead-lettered `too_large`.
    pub max_event_bytes: usize,
    /// `PULSE_MAX_EVENT_TYPES`: how many event tables table-manager may make (default 1,000);
    /// events of a type that would need one more are dead-lettered `too_many_event_types`.
    pub max_event_types: usize,
    /// `PULSE_REQUEST_TIMEOUT_SECS`: per-request deadline (default 60).
    pub request_timeout: Duration,
    /// `PULSE_LOCAL_FSYNC`: local writes are synced to disk before they are acknowledged
    /// (default `true`; `false` keeps them safe from a process crash but not a power cut).
    pub local_fsync: bool,
    /// `PUBSUB_ENDPOINT`: Pub/Sub endpoint override, e.g. the emulator (`http://127.0.0.1:8085`).
    pub pubsub_endpoint: Option<String>,
    /// `STORAGE_ENDPOINT`: Cloud Storage endpoint override, e.g. `gcp-storage-emulator`.
    pub storage_endpoint: Option<String>,
    /// `PULSE_DATASET`: the warehouse dataset that holds every table (default `pulse`).
    pub dataset: String,
    /// `BIGQUERY_ENDPOINT`: BigQuery REST endpoint override, e.g. `bqemulator`
    /// (`http://127.0.0.1:9050`); the API path `/bigquery/v2` is added.
    pub bigquery_endpoint: Option<String>,
    /// How concurrent requests are coalesced into one warehouse write per table.
    pub batch: BatchLimits,
    /// `PULSE_QUERY_MAX_BYTES_BILLED`: bytes one read-only query (table-manager's `POST /query`)
    /// may bill on BigQuery (default 1 GB).
    pub query_max_bytes_billed: u64,
    /// `PULSE_PUSH_AUDIENCE` and `PULSE_PUSH_SERVICE_ACCOUNT` (both or neither): who may call
    /// the trigger route; none when unset (see [`crate::delivery::trigger::route`]).
    pub push_auth: Option<PushAuthConfig>,
    /// `PULSE_TEST_FAULT_*`: TEST-ONLY, local backends that fail or stall on purpose
    /// (`crate::faults`); refused on Cloud Run.
    pub test_faults: Option<FaultConfig>,
    /// How inference calls its prediction endpoint.
    pub prediction: PredictionSettings,
}

/// Limits of one coalesced warehouse write: whichever is reached first closes the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// `PULSE_BATCH_MAX_ROWS` (default 500, BigQuery's recommended insertAll size).
    pub max_rows: usize,
    /// `PULSE_BATCH_MAX_BYTES` of row JSON (default 5 MB, under insertAll's 10 MB request limit).
    pub max_bytes: usize,
    /// `PULSE_BATCH_LINGER_MS`: how long the first row of a batch waits for company (default 20).
    pub linger: Duration,
}

/// How inference scores events (see `functions/inference`).
#[derive(Clone, Debug, PartialEq)]
pub struct PredictionSettings {
    /// `PULSE_VERTEX_ENDPOINT`: `projects/P/locations/R/endpoints/E` (default: the local
    /// predictor's `projects/local/locations/local/endpoints/pulse-builtin`).
    pub endpoint: String,
    /// `PULSE_PREDICT_BASE_URL`: where the endpoint's REST API is (default
    /// `https://R-aiplatform.googleapis.com` on Google Cloud, `http://127.0.0.1:8087` locally).
    pub base_url: String,
    /// `PULSE_PREDICTIONS_TABLE`: the table prediction rows go to (default `predictions`).
    pub table: String,
    /// `PULSE_INFERENCE_FEATURES`: the scored event types and the fields each one's instance is
    /// built from, `type=field,field;type=field` (dotted paths reach into objects). Default
    /// `device_telemetry=device_id,sensor_type,reading;user_activity=activity_type,metadata`.
    pub features: String,
    /// `PULSE_PREDICT_MAX_INSTANCES`: instances per predict call at most (default 32).
    pub max_instances: usize,
    /// `PULSE_PREDICT_LINGER_MS`: how long the first instance of a call waits for company
    /// (default 5, at most 10).
    pub linger: Duration,
    /// `PULSE_PREDICT_TIMEOUT_MS`: deadline of one predict call (default 10,000).
    pub timeout: Duration,
    /// `PULSE_PREDICT_BREAKER_FAILURES`: consecutive failed calls that open the circuit
    /// breaker (default 5).
    pub breaker_failures: u32,
    /// `PULSE_PREDICT_BREAKER_COOLDOWN_MS`: how long an open breaker answers 503 without
    /// calling the endpoint before it lets one trial call through (default 30,000).
    pub breaker_cooldown: Duration,
}

/// The test-only faults of the local backends (`crate::faults`, in a build with the `local`
/// feature): which misbehave, how often, and for how long. Parsed in every build, so a variable
/// set on Cloud Run is refused there rather than ignored.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultConfig {
    /// Share of calls that fail (0 to 1).
    pub rate: f64,
    /// Share of calls that stall first (0 to 1), and for how long.
    pub stall_rate: f64,
    pub stall: Duration,
    /// How long the faults last once armed (`None`: until the process ends).
    pub lasting: Option<Duration>,
    pub objects: bool,
    pub warehouse: bool,
    pub publish: bool,
}

/// The endpoint the local predictor serves (`pulse up`, port 8087).
pub const LOCAL_PREDICT_ENDPOINT: &str = "projects/local/locations/local/endpoints/pulse-builtin";

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests can supply their own environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let service = env.string("K_SERVICE");
        let on_cloud_run = service.is_some();
        let backend = env.parse("PULSE_BACKEND")?.unwrap_or(if on_cloud_run {
            BackendKind::Gcp
        } else {
            BackendKind::Local
        });
        if let (BackendKind::Local, Some(service)) = (backend, &service) {
            return Err(ConfigError::LocalOnCloudRun {
                service: service.clone(),
            });
        }
        let project = match (env.string("GOOGLE_CLOUD_PROJECT"), backend) {
            (Some(project), _) => project,
            (None, BackendKind::Local) => "local".to_owned(),
            (None, BackendKind::Gcp) => {
                return Err(ConfigError::Missing {
                    var: "GOOGLE_CLOUD_PROJECT",
                    reason: "the Google Cloud backends need the project that holds the topics"
                        .to_owned(),
                });
            }
        };
        let json_logs = match env.string("PULSE_LOG_FORMAT").as_deref() {
            None => on_cloud_run,
            Some("json") => true,
            Some("text") => false,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "PULSE_LOG_FORMAT",
                    value: other.to_owned(),
                    reason: "expected `json` or `text`".to_owned(),
                });
            }
        };
        Ok(Self {
            // Vertex AI tells a custom container where to listen in `AIP_HTTP_PORT`.
            port: match env.parse("AIP_HTTP_PORT")? {
                Some(port) => port,
                None => env.parse("PORT")?.unwrap_or(8080),
            },
            revision: env.string("K_REVISION"),
            service,
            project,
            backend,
            json_logs,
            data_dir: env
                .string("PULSE_DATA_DIR")
                .map_or_else(|| PathBuf::from(".pulse"), PathBuf::from),
            raw_bucket: env.string_or("PULSE_RAW_BUCKET", "pulse-raw"),
            landing_bucket: env.string_or("PULSE_LANDING_BUCKET", "pulse-landing"),
            raw_prefix: env.prefix("PULSE_RAW_PREFIX", "raw/"),
            dead_letter_prefix: env.prefix("PULSE_DEAD_LETTER_PREFIX", "dead-letter/"),
            landing_prefix: env.prefix("PULSE_LANDING_PREFIX", "landing/"),
            quarantine_prefix: env.prefix("PULSE_QUARANTINE_PREFIX", "quarantine/"),
            jobs_prefix: env.prefix("PULSE_JOBS_PREFIX", "jobs/"),
            jobs: JobTiming::default(),
            landing_partition_column: env.string("PULSE_LANDING_PARTITION_COLUMN"),
            database_url: env.string("DATABASE_URL"),
            raw_topic: env.string_or("PULSE_RAW_TOPIC", "events-raw"),
            processed_topic: env.string_or("PULSE_PROCESSED_TOPIC", "events-processed"),
            max_body_bytes: env.parse("PULSE_MAX_BODY_BYTES")?.unwrap_or(16 << 20),
            max_event_bytes: env.parse("PULSE_MAX_EVENT_BYTES")?.unwrap_or(1 << 20),
            max_event_types: env.parse("PULSE_MAX_EVENT_TYPES")?.unwrap_or(1_000),
            request_timeout: Duration::from_secs(
                env.parse("PULSE_REQUEST_TIMEOUT_SECS")?.unwrap_or(60),
            ),
            local_fsync: env.parse("PULSE_LOCAL_FSYNC")?.unwrap_or(true),
            pubsub_endpoint: env.string("PUBSUB_ENDPOINT"),
            storage_endpoint: env.string("STORAGE_ENDPOINT"),
            dataset: env.identifier("PULSE_DATASET", "pulse")?,
            bigquery_endpoint: env.string("BIGQUERY_ENDPOINT"),
            batch: BatchLimits {
                max_rows: env.parse("PULSE_BATCH_MAX_ROWS")?.unwrap_or(500).max(1),
                max_bytes: env.parse("PULSE_BATCH_MAX_BYTES")?.unwrap_or(5_000_000),
                linger: Duration::from_millis(env.parse("PULSE_BATCH_LINGER_MS")?.unwrap_or(20)),
            },
            query_max_bytes_billed: env
                .parse("PULSE_QUERY_MAX_BYTES_BILLED")?
                .unwrap_or(1_000_000_000),
            prediction: prediction_settings(&env, backend)?,
            push_auth: PushAuthConfig::from_lookup(&lookup)?,
            test_faults: test_faults(&env, on_cloud_run)?,
        })
    }

    /// The configuration a test or the local stack starts from: local backends under `data_dir`.
    pub fn local(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        let mut config = Self::from_lookup(|_| None).expect("the defaults are valid");
        config.data_dir = data_dir;
        config
    }

    /// True on Cloud Run (`K_SERVICE` is set).
    pub fn on_cloud_run(&self) -> bool {
        self.service.is_some()
    }
}

/// The test-only faults, when any `PULSE_TEST_FAULT_*` variable is set.
fn test_faults(env: &Env<'_>, on_cloud_run: bool) -> Result<Option<FaultConfig>, ConfigError> {
    const VARS: [&str; 5] = [
        "PULSE_TEST_FAULT_RATE",
        "PULSE_TEST_FAULT_STALL_RATE",
        "PULSE_TEST_FAULT_STALL_MS",
        "PULSE_TEST_FAULT_SECONDS",
        "PULSE_TEST_FAULT_BACKENDS",
    ];
    let Some(set) = VARS.into_iter().find(|var| env.string(var).is_some()) else {
        return Ok(None);
    };
    if on_cloud_run {
        return Err(ConfigError::Invalid {
            var: set,
            value: env.string(set).unwrap_or_default(),
            reason: "fault injection is for tests of the local stack, never on Cloud Run"
                .to_owned(),
        });
    }
    let share = |var: &'static str| -> Result<f64, ConfigError> {
        let value: f64 = env.parse(var)?.unwrap_or(0.0);
        if (0.0..=1.0).contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::Invalid {
                var,
                value: value.to_string(),
                reason: "a share of calls, from 0 to 1".to_owned(),
            })
        }
    };
    let backends = env
        .string("PULSE_TEST_FAULT_BACKENDS")
        .unwrap_or_else(|| "objects,warehouse,publish".to_owned());
    let mut config = FaultConfig {
        rate: share("PULSE_TEST_FAULT_RATE")?,
        stall_rate: share("PULSE_TEST_FAULT_STALL_RATE")?,
        stall: Duration::from_millis(env.parse("PULSE_TEST_FAULT_STALL_MS")?.unwrap_or(1000)),
        lasting: env
            .parse("PULSE_TEST_FAULT_SECONDS")?
            .map(Duration::from_secs),
        objects: false,
        warehouse: false,
        publish: false,
    };
    for backend in backends.split(',').map(str::trim) {
        match backend {
            "objects" => config.objects = true,
            "warehouse" => config.warehouse = true,
            "publish" => config.publish = true,
            other => {
                return Err(ConfigError::Invalid {
                    var: "PULSE_TEST_FAULT_BACKENDS",
                    value: other.to_owned(),
                    reason: "expected a list of `objects`, `warehouse` and `publish`".to_owned(),
                });
            }
        }
    }
    Ok(Some(config))
}

fn prediction_settings(
    env: &Env<'_>,
    backend: BackendKind,
) -> Result<PredictionSettings, ConfigError> {
    let endpoint = match (env.string("PULSE_VERTEX_ENDPOINT"), backend) {
        (Some(endpoint), _) => endpoint,
        (None, BackendKind::Local) => LOCAL_PREDICT_ENDPOINT.to_owned(),
        // Only inference needs it: it says so when it starts (`endpoint_location` fails).
        (None, BackendKind::Gcp) => String::new(),
    };
    let base_url = match env.string("PULSE_PREDICT_BASE_URL") {
        Some(url) => url,
        None if backend == BackendKind::Local => "http://127.0.0.1:8087".to_owned(),
        None => format!(
            "https://{}-aiplatform.googleapis.com",
            endpoint_location(&endpoint).unwrap_or("us-central1")
        ),
    };
    let linger_ms: u64 = env.parse("PULSE_PREDICT_LINGER_MS")?.unwrap_or(5);
    if linger_ms > 10 {
        return Err(ConfigError::Invalid {
            var: "PULSE_PREDICT_LINGER_MS",
            value: linger_ms.to_string(),
            reason: "at most 10: every scored event waits this long for company".to_owned(),
        });
    }
    let table = env.identifier("PULSE_PREDICTIONS_TABLE", "predictions")?;
    if !namespace::is_own_table_name(&table) {
        return Err(ConfigError::Invalid {
            var: "PULSE_PREDICTIONS_TABLE",
            value: table,
            reason: "names a table that events or Parquet loads own (a known event table, or \
                     `events_…`, `load_…`, `unique_…`): predictions need a table of their own"
                .to_owned(),
        });
    }
    Ok(PredictionSettings {
        endpoint,
        base_url: base_url.trim_end_matches('/').to_owned(),
        table,
        features: env.string_or(
            "PULSE_INFERENCE_FEATURES",
            "device_telemetry=device_id,sensor_type,reading;user_activity=activity_type,metadata",
        ),
        max_instances: env
            .parse("PULSE_PREDICT_MAX_INSTANCES")?
            .unwrap_or(32)
            .max(1),
        linger: Duration::from_millis(linger_ms),
        timeout: Duration::from_millis(env.parse("PULSE_PREDICT_TIMEOUT_MS")?.unwrap_or(10_000)),
        breaker_failures: env
            .parse("PULSE_PREDICT_BREAKER_FAILURES")?
            .unwrap_or(5)
            .max(1),
        breaker_cooldown: Duration::from_millis(
            env.parse("PULSE_PREDICT_BREAKER_COOLDOWN_MS")?
                .unwrap_or(30_000),
        ),
    })
}

/// The location (region) of a `projects/P/locations/R/endpoints/E` endpoint name.
pub fn endpoint_location(endpoint: &str) -> Option<&str> {
    match endpoint.split('/').collect::<Vec<_>>()[..] {
        ["projects", project, "locations", location, "endpoints", id]
            if [project, location, id].iter().all(|part| !part.is_empty()) =>
        {
            Some(location)
        }
        _ => None,
    }
}

/// Reads variables through a lookup function, naming the variable in every error.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn string(&self, var: &str) -> Option<String> {
        (self.0)(var).filter(|v| !v.is_empty())
    }

    fn string_or(&self, var: &str, default: &str) -> String {
        self.string(var).unwrap_or_else(|| default.to_owned())
    }

    /// A prefix always ends in `/`, so object names join without surprises.
    fn prefix(&self, var: &str, default: &str) -> String {
        let mut prefix = self.string_or(var, default);
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        prefix
    }

    /// A name that reaches SQL: letters, digits and underscores, not starting with a digit.
    fn identifier(&self, var: &'static str, default: &str) -> Result<String, ConfigError> {
        let value = self.string_or(var, default);
        let safe = value.len() <= 1024
            && value
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if safe {
            Ok(value)
        } else {
            Err(ConfigError::Invalid {
                var,
                value,
                reason: "expected letters, digits and underscores, starting with a letter or `_`"
                    .to_owned(),
            })
        }
    }

    fn parse<T>(&self, var: &'static str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.string(var)
            .map(|value| {
                value.parse().map_err(|e: T::Err| ConfigError::Invalid {
                    var,
                    reason: e.to_string(),
                    value,
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_are_local_and_follow_the_conventions() {
        let config = load(&[]).unwrap();
        assert_eq!(config.backend, BackendKind::Local);
        assert_eq!(config.port, 8080);
        assert_eq!(config.data_dir, PathBuf::from(".pulse"));
        assert_eq!(config.raw_bucket, "pulse-raw");
        assert_eq!(config.landing_bucket, "pulse-landing");
        assert_eq!(config.raw_prefix, "raw/");
        assert_eq!(config.dead_letter_prefix, "dead-letter/");
        assert_eq!(config.landing_prefix, "landing/");
        assert_eq!(config.quarantine_prefix, "quarantine/");
        assert_eq!(config.raw_topic, "events-raw");
        assert_eq!(config.processed_topic, "events-processed");
        assert!(!config.json_logs);
    }

    #[test]
    fn cloud_run_defaults_to_gcp_and_json_logs() {
        let config = load(&[
            ("K_SERVICE", "preprocess"),
            ("K_REVISION", "preprocess-00001"),
            ("GOOGLE_CLOUD_PROJECT", "acme"),
            ("PORT", "9000"),
        ])
        .unwrap();
        assert_eq!(config.backend, BackendKind::Gcp);
        assert!(config.json_logs);
        assert_eq!(config.port, 9000);
        assert_eq!(config.revision.as_deref(), Some("preprocess-00001"));
    }

    #[test]
    fn local_backends_refuse_cloud_run() {
        let err = load(&[("K_SERVICE", "preprocess"), ("PULSE_BACKEND", "local")]).unwrap_err();
        assert!(matches!(err, ConfigError::LocalOnCloudRun { .. }), "{err}");
    }

    #[test]
    fn gcp_needs_a_project() {
        let err = load(&[("PULSE_BACKEND", "gcp")]).unwrap_err();
        assert!(err.to_string().contains("GOOGLE_CLOUD_PROJECT"), "{err}");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = load(&[("PORT", "eighty")]).unwrap_err();
        assert!(err.to_string().contains("PORT=\"eighty\""), "{err}");
        let err = load(&[("PULSE_DATASET", "pulse; DROP TABLE x")]).unwrap_err();
        assert!(err.to_string().contains("PULSE_DATASET"), "{err}");
        let err = load(&[("PULSE_BACKEND", "aws")]).unwrap_err();
        assert!(err.to_string().contains("PULSE_BACKEND"), "{err}");
    }

    #[test]
    fn prefixes_end_with_a_slash() {
        let config = load(&[("PULSE_RAW_PREFIX", "archive")]).unwrap();
        assert_eq!(config.raw_prefix, "archive/");
    }

    #[test]
    fn prediction_defaults_to_the_local_predictor_and_derives_the_vertex_host() {
        let local = load(&[]).unwrap().prediction;
        assert_eq!(local.endpoint, LOCAL_PREDICT_ENDPOINT);
        assert_eq!(local.base_url, "http://127.0.0.1:8087");
        assert_eq!(local.table, "predictions");
        let cloud = load(&[
            ("PULSE_BACKEND", "gcp"),
            ("GOOGLE_CLOUD_PROJECT", "p"),
            (
                "PULSE_VERTEX_ENDPOINT",
                "projects/p/locations/europe-west4/endpoints/42",
            ),
        ])
        .unwrap()
        .prediction;
        assert_eq!(
            cloud.base_url,
            "https://europe-west4-aiplatform.googleapis.com"
        );
        assert_eq!(
            endpoint_location("projects/p/locations//endpoints/42"),
            None
        );
        let err = load(&[("PULSE_PREDICT_LINGER_MS", "50")]).unwrap_err();
        assert!(err.to_string().contains("PULSE_PREDICT_LINGER_MS"), "{err}");
    }

    #[test]
    fn the_predictions_table_must_be_outside_the_input_namespaces() {
        let own = load(&[("PULSE_PREDICTIONS_TABLE", "scores")]).unwrap();
        assert_eq!(own.prediction.table, "scores");
        for taken in [
            "orders",
            "events_scores",
            "load_scores",
            "unique_predictions",
        ] {
            let err = load(&[("PULSE_PREDICTIONS_TABLE", taken)]).unwrap_err();
            assert!(
                err.to_string().contains("PULSE_PREDICTIONS_TABLE")
                    && err.to_string().contains("own"),
                "{taken}: {err}"
            );
        }
    }
}
