//! Reads a Parquet file's footer, and nothing else, with ranged reads: the last 64 KiB (which
//! holds the whole footer of most files), then the whole footer if it is longer. The bytes read
//! are counted, so reports (and the benchmark) show that the data was never fetched.

mod budget;

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use parquet::arrow::parquet_to_arrow_schema;
use parquet::basic::Type as PhysicalType;
use parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};
use pulse_shared::error::{BackendError, Retry};
use pulse_shared::storage::{ByteRange, ObjectStore};

use crate::quarantine::{Refusal, RefusalCode};

/// The first read from the end of the object: footers are rarely larger.
pub const FIRST_READ: u64 = 64 * 1024;
/// `PAR1` + the metadata length + `PAR1`: the smallest possible Parquet file is larger.
const MAGIC_AND_LENGTH: u64 = 12;

/// What the footer says.
#[derive(Debug)]
pub struct Footer {
    pub metadata: Arc<ParquetMetaData>,
    /// The file's columns as Arrow sees them, INT96 timestamps marked as UTC instants.
    pub schema: Schema,
    /// The generation that was read.
    pub generation: i64,
    /// Bytes fetched from the object to get here.
    pub bytes_read: u64,
}

impl Footer {
    pub fn rows(&self) -> u64 {
        u64::try_from(self.metadata.file_metadata().num_rows()).unwrap_or(0)
    }
}

/// Why there is no footer.
#[derive(Debug)]
pub enum FooterError {
    /// The object (or that generation) is gone: a newer upload has its own event.
    Missing,
    /// A zero-byte object (a folder placeholder or a marker): nothing to load.
    Empty,
    /// The file is not a readable Parquet file.
    Refused(Refusal),
    /// The store failed; a retry may pass.
    Backend(BackendError),
}

impl From<BackendError> for FooterError {
    fn from(err: BackendError) -> Self {
        FooterError::Backend(err)
    }
}

/// Reads the footer of `bucket/name` (of `generation`, when given). The footer is decoded on
/// the blocking pool, within the budget of [`budget`]: anything over it is refused.
pub async fn read_footer(
    objects: &Arc<dyn ObjectStore>,
    bucket: &str,
    name: &str,
    generation: Option<i64>,
) -> Result<Footer, FooterError> {
    let tail = objects
        .read_range(bucket, name, ByteRange::Tail(FIRST_READ), generation)
        .await?
        .ok_or(FooterError::Missing)?;
    let (size, generation) = (tail.size, tail.generation);
    let mut bytes_read = tail.bytes.len() as u64;
    if size == 0 {
        return Err(FooterError::Empty);
    }
    let metadata_len = metadata_length(&tail.bytes, size).map_err(FooterError::Refused)?;
    let have = tail.bytes.len() as u64 - 8;
    let metadata_bytes: Bytes = if metadata_len <= have {
        let end = tail.bytes.len() - 8;
        let start = end - usize::try_from(metadata_len).unwrap_or(end);
        tail.bytes.slice(start..end)
    } else {
        // A footer larger than the first read: read it whole, once.
        drop(tail);
        let footer = objects
            .read_range(
                bucket,
                name,
                ByteRange::Segment {
                    offset: size - 8 - metadata_len,
                    len: metadata_len,
                },
                Some(generation),
            )
            .await?
            .ok_or(FooterError::Missing)?;
        bytes_read += footer.bytes.len() as u64;
        if footer.bytes.len() as u64 != metadata_len {
            return Err(FooterError::Refused(Refusal::new(
                RefusalCode::Truncated,
                format!(
                    "the footer claims {metadata_len} bytes but {} could be read",
                    footer.bytes.len()
                ),
            )));
        }
        footer.bytes
    };
    let decoded = tokio::task::spawn_blocking(move || decode(&metadata_bytes))
        .await
        .map_err(|e| {
            BackendError::new(format!("decode the footer of {name}"), Retry::Transient, e)
        })?;
    let (metadata, schema) = decoded.map_err(FooterError::Refused)?;
    Ok(Footer {
        metadata: Arc::new(metadata),
        schema,
        generation,
        bytes_read,
    })
}

/// The metadata length the file's last 8 bytes state (`<length> PAR1`), once it is known to fit
/// the file and the budget. `tail` holds the object's last bytes, `size` is the whole object's.
fn metadata_length(tail: &[u8], size: u64) -> Result<u64, Refusal> {
    let refuse = |reason, detail: String| Refusal::new(reason, detail);
    if size < MAGIC_AND_LENGTH {
        return Err(refuse(
            RefusalCode::NotParquet,
            format!("{size} bytes is too small for a Parquet file"),
        ));
    }
    let last8: [u8; 8] = tail
        .len()
        .checked_sub(8)
        .and_then(|start| tail.get(start..))
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            refuse(
                RefusalCode::Truncated,
                format!(
                    "{} bytes read from the end of the file, fewer than 8",
                    tail.len()
                ),
            )
        })?;
    let footer_tail = FooterTail::try_new(&last8).map_err(|_| {
        refuse(
            RefusalCode::NotParquet,
            "no Parquet magic (`PAR1`) at the end of the file: not Parquet, or truncated"
                .to_owned(),
        )
    })?;
    if footer_tail.is_encrypted_footer() {
        return Err(refuse(
            RefusalCode::Encrypted,
            "the footer is encrypted (`PARE`); the loader has no keys: load a decrypted copy"
                .to_owned(),
        ));
    }
    let metadata_len = footer_tail.metadata_length() as u64;
    if metadata_len + MAGIC_AND_LENGTH > size {
        return Err(refuse(
            RefusalCode::Truncated,
            format!(
                "the footer claims {metadata_len} bytes of metadata but the file has {size} bytes"
            ),
        ));
    }
    budget::check_footer_length(metadata_len)?;
    Ok(metadata_len)
}

/// The metadata and Arrow schema of a footer whose schema keeps the budget. Blocking: it may
/// take a while on a large footer.
fn decode(bytes: &[u8]) -> Result<(ParquetMetaData, Schema), Refusal> {
    budget::check_schema(bytes)?;
    let metadata = ParquetMetaDataReader::decode_metadata(bytes).map_err(|e| {
        Refusal::new(
            RefusalCode::NotParquet,
            format!("the footer metadata does not decode: {e}"),
        )
    })?;
    let schema = arrow_schema_of(&metadata).map_err(|e| {
        Refusal::new(
            RefusalCode::UnsupportedType,
            format!("the schema has no Arrow equivalent: {e}"),
        )
    })?;
    Ok((metadata, schema))
}

/// The Arrow schema of the file. INT96 is the legacy timestamp of Impala, Hive and Spark, an
/// instant in UTC: BigQuery loads it as TIMESTAMP, so it is marked as one here (Arrow reads it as
/// a zoneless timestamp).
fn arrow_schema_of(metadata: &ParquetMetaData) -> parquet::errors::Result<Schema> {
    let file = metadata.file_metadata();
    let schema = parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())?;
    let root = file.schema_descr().root_schema();
    let int96: Vec<&str> = root
        .get_fields()
        .iter()
        .filter(|field| field.is_primitive() && field.get_physical_type() == PhysicalType::INT96)
        .map(|field| field.name())
        .collect();
    if int96.is_empty() {
        return Ok(schema);
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            DataType::Timestamp(unit, None) if int96.contains(&field.name().as_str()) => field
                .as_ref()
                .clone()
                .with_data_type(DataType::Timestamp(*unit, Some("UTC".into()))),
            _ => field.as_ref().clone(),
        })
        .collect();
    Ok(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

#[cfg(test)]
mod tests {
    use super::budget::tests::{file_metadata, nested};
    use super::*;
    use pulse_shared::storage::LocalObjectStore;

    /// Reads the footer of `bytes` stored as an object in a local bucket.
    async fn footer_of(bytes: Vec<u8>) -> Result<Footer, FooterError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("b/f.parquet"), bytes).unwrap();
        let objects: Arc<dyn ObjectStore> =
            Arc::new(LocalObjectStore::open(dir.path(), false).unwrap());
        read_footer(&objects, "b", "f.parquet", None).await
    }

    /// A file of `metadata` as its footer, behind `padding` bytes of data.
    fn file(padding: usize, metadata: &[u8]) -> Vec<u8> {
        let mut bytes = b"PAR1".to_vec();
        bytes.resize(4 + padding, 0);
        bytes.extend_from_slice(metadata);
        bytes.extend_from_slice(&u32::try_from(metadata.len()).unwrap().to_le_bytes());
        bytes.extend_from_slice(b"PAR1");
        bytes
    }

    fn refusal(result: Result<Footer, FooterError>) -> Refusal {
        match result {
            Err(FooterError::Refused(refusal)) => refusal,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[tokio::test]
    async fn crafted_footers_are_refused_with_their_reason() {
        // Deep enough to overflow the stack of the parquet crate's recursive schema builder.
        let deep = refusal(footer_of(file(0, &file_metadata(&nested(200_000)))).await);
        assert_eq!(deep.reason, RefusalCode::OverBudget, "{}", deep.detail);
        // A root claiming i32::MAX children: the parquet crate reserves room for them first.
        let huge = refusal(footer_of(file(0, &file_metadata(&[Some(i32::MAX), None]))).await);
        assert_eq!(huge.reason, RefusalCode::NotParquet, "{}", huge.detail);
        // The same shapes within the budget decode, a footer longer than the first read too.
        let fine = footer_of(file(100, &file_metadata(&nested(64))))
            .await
            .unwrap();
        assert_eq!(
            fine.metadata.file_metadata().schema_descr().num_columns(),
            1
        );
        let wide: Vec<Option<i32>> = std::iter::once(Some(10_000))
            .chain(std::iter::repeat_n(None, 10_000))
            .collect();
        let wide = footer_of(file(0, &file_metadata(&wide))).await.unwrap();
        assert!(wide.bytes_read > FIRST_READ, "{}", wide.bytes_read);
        assert_eq!(wide.schema.fields().len(), 10_000);
    }

    #[tokio::test]
    async fn a_footer_over_the_size_budget_is_not_read() {
        let claimed = budget::MAX_FOOTER_BYTES + 1;
        let mut bytes = vec![0; usize::try_from(claimed).unwrap() + 4];
        bytes[..4].copy_from_slice(b"PAR1");
        bytes.extend_from_slice(&u32::try_from(claimed).unwrap().to_le_bytes());
        bytes.extend_from_slice(b"PAR1");
        let over = refusal(footer_of(bytes).await);
        assert_eq!(over.reason, RefusalCode::OverBudget, "{}", over.detail);
    }

    #[tokio::test]
    async fn short_and_lying_files_are_refused() {
        for (bytes, reason) in [
            (b"PAR1PAR1".to_vec(), RefusalCode::NotParquet),
            (
                b"PAR1\x00\x00\x00\x00PAR1".to_vec(),
                RefusalCode::NotParquet,
            ),
            (b"PAR1\xff\xff\xff\x7fPAR1".to_vec(), RefusalCode::Truncated),
            (b"PAR1\x10\x00\x00\x00PARE".to_vec(), RefusalCode::Encrypted),
        ] {
            let refused = refusal(footer_of(bytes.clone()).await);
            assert_eq!(refused.reason, reason, "{bytes:?}: {}", refused.detail);
        }
    }
}
