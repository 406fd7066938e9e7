//! Reads a Parquet file's footer, and nothing else, with ranged reads: the last 64 KiB (which
//! holds the whole footer of most files), then the rest of the footer if it is longer. The bytes
//! read are counted, so reports (and the benchmark) show that the data was never fetched.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use parquet::arrow::parquet_to_arrow_schema;
use parquet::basic::Type as PhysicalType;
use parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};
use pulse_shared::error::BackendError;
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

/// Reads the footer of `bucket/name` (of `generation`, when given).
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
    let refuse = |reason, detail: String| FooterError::Refused(Refusal::new(reason, detail));
    if size == 0 {
        return Err(FooterError::Empty);
    }
    if size < MAGIC_AND_LENGTH {
        return Err(refuse(
            RefusalCode::NotParquet,
            format!("{size} bytes is too small for a Parquet file"),
        ));
    }
    let last8: [u8; 8] = tail.bytes[tail.bytes.len() - 8..]
        .try_into()
        .map_err(|_| refuse(RefusalCode::NotParquet, "no footer".to_owned()))?;
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
    let have = tail.bytes.len() as u64 - 8;
    let metadata_bytes: Bytes = if metadata_len <= have {
        let start = usize::try_from(have - metadata_len).unwrap_or(0);
        tail.bytes.slice(start..tail.bytes.len() - 8)
    } else {
        // A footer larger than the first read: fetch what is missing in front of it.
        let missing = metadata_len - have;
        let front = objects
            .read_range(
                bucket,
                name,
                ByteRange::Segment {
                    offset: size - 8 - metadata_len,
                    len: missing,
                },
                Some(generation),
            )
            .await?
            .ok_or(FooterError::Missing)?;
        bytes_read += front.bytes.len() as u64;
        let mut joined = Vec::with_capacity(usize::try_from(metadata_len).unwrap_or(0));
        joined.extend_from_slice(&front.bytes);
        joined.extend_from_slice(&tail.bytes[..tail.bytes.len() - 8]);
        joined.into()
    };
    let metadata = ParquetMetaDataReader::decode_metadata(&metadata_bytes).map_err(|e| {
        refuse(
            RefusalCode::NotParquet,
            format!("the footer metadata does not decode: {e}"),
        )
    })?;
    let schema = arrow_schema_of(&metadata).map_err(|e| {
        refuse(
            RefusalCode::UnsupportedType,
            format!("the schema has no Arrow equivalent: {e}"),
        )
    })?;
    Ok(Footer {
        metadata: Arc::new(metadata),
        schema,
        generation,
        bytes_read,
    })
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
