//! Refused files: why a file cannot be loaded, and moving it to `quarantine/<same path>@<generation>`
//! with a sibling `.error.json` report, so the landing folder holds only what may still load.

use std::sync::Arc;

use bytes::Bytes;
use pulse_shared::error::BackendError;
use pulse_shared::storage::ObjectStore;
use serde::Serialize;

/// Why a file is refused. Nothing of a refused file is loaded anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// No Parquet magic at the end, or a footer that does not decode.
    NotParquet,
    /// Shorter than its own footer says it is.
    Truncated,
    /// The footer is encrypted (`PARE`); the loader holds no keys.
    Encrypted,
    /// The footer decodes but the data does not (a page, a dictionary, a codec).
    Corrupt,
    /// A column's type conflicts with the table's column of that name.
    SchemaConflict,
    /// A column type the warehouse cannot hold as it is (e.g. a decimal wider than NUMERIC).
    UnsupportedType,
    /// The table folder or a column is not a safe identifier.
    BadName,
    /// The footer is larger, or its schema deeper or wider, than the loader reads.
    OverBudget,
}

/// A file that can never load, and what a person must change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub reason: RefusalCode,
    pub detail: String,
}

impl Refusal {
    pub fn new(reason: RefusalCode, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// The `.error.json` written beside a quarantined file.
#[derive(Debug, Serialize)]
struct ErrorReport<'a> {
    reason: RefusalCode,
    detail: &'a str,
    bucket: &'a str,
    object: &'a str,
    generation: i64,
    quarantined_at: String,
    function: &'static str,
}

/// Where generation `generation` of a landing object goes in quarantine: the landing prefix
/// swapped for the quarantine one, and `@<generation>` after the name (when it is known, i.e. not
/// 0). Each upload of a name gets its own copy and report: a file dropped again under a name
/// whose earlier upload was refused leaves that one's copy and report as they were.
pub fn quarantine_name(
    landing_prefix: &str,
    quarantine_prefix: &str,
    name: &str,
    generation: i64,
) -> String {
    let relative = name.strip_prefix(landing_prefix).unwrap_or(name);
    match generation {
        0 => format!("{quarantine_prefix}{relative}"),
        generation => format!("{quarantine_prefix}{relative}@{generation}"),
    }
}

/// Copies the object to quarantine, writes its report, then deletes the original (that
/// generation only). Every step may be repeated, so a failure part-way is answered 503 and the
/// redelivery finishes the job. Returns the quarantined object's name.
pub async fn quarantine(
    objects: &Arc<dyn ObjectStore>,
    prefixes: (&str, &str),
    bucket: &str,
    name: &str,
    generation: i64,
    refusal: &Refusal,
) -> Result<String, BackendError> {
    let moved = quarantine_name(prefixes.0, prefixes.1, name, generation);
    let generation_filter = (generation != 0).then_some(generation);
    if !objects
        .copy(bucket, name, generation_filter, &moved)
        .await?
    {
        // Gone already: a redelivery after the original was deleted finds the copy in place.
        tracing::info!(bucket, object = name, "already moved to quarantine");
    }
    let report_name = format!("{moved}.error.json");
    let report = ErrorReport {
        reason: refusal.reason,
        detail: &refusal.detail,
        bucket,
        object: name,
        generation,
        quarantined_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        function: crate::FUNCTION,
    };
    let body = serde_json::to_vec_pretty(&report).unwrap_or_default();
    // Only a redelivery of this generation finds a report here: the first one stays.
    objects
        .create_if_absent(bucket, &report_name, Bytes::from(body), "application/json")
        .await?;
    objects.delete(bucket, name, generation_filter).await?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_keeps_the_path_under_its_own_prefix() {
        assert_eq!(
            quarantine_name(
                "landing/",
                "quarantine/",
                "landing/orders/2024/a.parquet",
                17
            ),
            "quarantine/orders/2024/a.parquet@17"
        );
        assert_eq!(
            quarantine_name(
                "landing/",
                "quarantine/",
                "landing/orders/2024/a.parquet",
                0
            ),
            "quarantine/orders/2024/a.parquet"
        );
    }
}
