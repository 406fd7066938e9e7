//! Parquet's `AsyncFileReader` over the object store: the rows of one generation of an object,
//! fetched column chunk by column chunk with ranged reads, with the footer already in hand.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::ParquetMetaData;
use pulse_shared::storage::{ByteRange, ObjectStore};

/// Reads `bucket/name` at `generation` (a replaced object is not mixed into the read).
pub struct ObjectReader {
    pub objects: Arc<dyn ObjectStore>,
    pub bucket: String,
    pub name: String,
    pub generation: i64,
    pub metadata: Arc<ParquetMetaData>,
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes>> {
        async move {
            let read = self
                .objects
                .read_range(
                    &self.bucket,
                    &self.name,
                    ByteRange::Segment {
                        offset: range.start,
                        len: range.end - range.start,
                    },
                    Some(self.generation),
                )
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))?
                .ok_or_else(|| {
                    ParquetError::General("the object was replaced or deleted".into())
                })?;
            Ok(read.bytes)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>>> {
        let metadata = self.metadata.clone();
        async move { Ok(metadata) }.boxed()
    }
}
