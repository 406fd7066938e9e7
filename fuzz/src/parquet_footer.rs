//! `parquet_footer`: a whole file dropped in `landing/`, read as the loader reads it (ranged
//! reads from a local bucket, the footer budget, the parquet crate's decoding, the column
//! checks). Every non-empty file gets a verdict, never a store error the trigger would answer 5xx
//! to: a table an empty warehouse can create (columns, unique ignoring case, and a partition
//! column that is a top-level date or time), or a refusal with its reason.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use pulse_shared::storage::{LocalObjectStore, ObjectStore};
use pulse_shared::warehouse::{ColumnType, Mode};

const BUCKET: &str = "landing-bucket";
const NAME: &str = "landing/fuzzed/file.parquet";
const TABLE: &str = "fuzzed";

/// A local bucket for the process's inputs, each written over the last. Its directory, named by
/// the process id, stays after the process: the last input is kept there.
struct Landing {
    objects: Arc<dyn ObjectStore>,
    file: PathBuf,
}

fn landing() -> &'static Landing {
    static LANDING: OnceLock<Landing> = OnceLock::new();
    LANDING.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("pulse-fuzz-{}", std::process::id()));
        let file = root.join(BUCKET).join(NAME);
        std::fs::create_dir_all(file.parent().expect("a parent")).expect("the bucket's folders");
        let objects: Arc<dyn ObjectStore> =
            Arc::new(LocalObjectStore::open(&root, false).expect("a local store"));
        Landing { objects, file }
    })
}

/// Checks one input; true when the file would be loaded.
pub fn check(file: &[u8]) -> bool {
    if file.is_empty() {
        // A zero-byte object is a folder placeholder, ignored before its footer is read.
        return false;
    }
    let landing = landing();
    std::fs::write(&landing.file, file).expect("the file is stored");
    let verdict = super::runtime()
        .block_on(parquet_loader::inspect(
            &landing.objects,
            BUCKET,
            NAME,
            TABLE,
        ))
        .unwrap_or_else(|e| panic!("a stored {}-byte file got no verdict: {e:#}", file.len()));
    let spec = match verdict {
        Ok(spec) => spec,
        Err(refusal) => {
            assert!(
                !refusal.detail.is_empty(),
                "{:?} without a reason",
                refusal.reason
            );
            return false;
        }
    };
    assert_eq!(spec.name, TABLE);
    assert!(!spec.columns.is_empty(), "a table of no columns");
    let mut seen = HashSet::new();
    for column in &spec.columns {
        assert!(
            seen.insert(column.name.to_lowercase()),
            "column `{}` twice, ignoring case",
            column.name
        );
    }
    if let Some(partition) = &spec.partition_column {
        let column = spec
            .columns
            .iter()
            .find(|column| &column.name == partition)
            .unwrap_or_else(|| panic!("partitioned on `{partition}`, which is not a column"));
        assert!(
            column.mode != Mode::Repeated
                && matches!(
                    column.kind,
                    ColumnType::Date | ColumnType::Timestamp | ColumnType::Datetime
                ),
            "partitioned on {column:?}"
        );
    }
    true
}
