//! Parquet footers as a scan reads them: with their page indexes, once per file.
//!
//! DataFusion's scan asks for a file's footer without its page indexes, keeps that in the
//! footer cache, and reads the page indexes again (a request) each time a predicate can use
//! them. And when a scan's partitions split one file, each opens it and reads its footer at
//! the same moment. Here every footer is read with its page indexes (within the tail the
//! scan's `metadata_size_hint` reads, so in the same request) and cached so; the partitions of
//! a scan that open the same file wait for the first one's read, then find it in the cache.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::errors::Result;
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::future::{BoxFuture, FutureExt};

/// Wraps a scan's reader factory (see the module's documentation).
#[derive(Debug)]
pub(crate) struct FootersOnce {
    inner: Arc<dyn ParquetFileReaderFactory>,
    /// One gate per file the scan opens: held while its footer is read.
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl FootersOnce {
    pub(crate) fn new(inner: Arc<dyn ParquetFileReaderFactory>) -> Self {
        Self { inner, gates: Mutex::default() }
    }
}

impl ParquetFileReaderFactory for FootersOnce {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::common::Result<Box<dyn AsyncFileReader + Send>> {
        let gate = {
            let mut gates = self.gates.lock().expect("footer gates lock");
            gates.entry(file.object_meta.location.to_string()).or_default().clone()
        };
        let inner = self.inner.create_reader(partition_index, file, metadata_size_hint, metrics)?;
        Ok(Box::new(FooterReader { inner, gate }))
    }
}

struct FooterReader {
    inner: Box<dyn AsyncFileReader + Send>,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl AsyncFileReader for FooterReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes>> {
        self.inner.get_bytes(range)
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, Result<Vec<Bytes>>> {
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>>> {
        async move {
            let options = options.cloned().unwrap_or_default().with_page_index_policy(PageIndexPolicy::Optional);
            let _reading = self.gate.lock().await;
            self.inner.get_metadata(Some(&options)).await
        }
        .boxed()
    }
}
