//! The data files of a table's version, and their Parquet footers.

use crate::StorageError;

/// A data file of a table: its path relative to the table's root, size and day.
pub(crate) struct DataFile {
    pub path: String,
    pub size: u64,
    pub date: Option<String>,
}

/// The data files of a table's version.
pub(crate) fn files_of(table: &deltalake::DeltaTable) -> Result<Vec<DataFile>, StorageError> {
    Ok(files_and_stats(table)?.0)
}

/// The data files of a table's version, and its add actions (`min.<column>`, `max.<column>`:
/// the files' statistics), row for row.
pub(crate) fn files_and_stats(
    table: &deltalake::DeltaTable,
) -> Result<(Vec<DataFile>, arrow::record_batch::RecordBatch), StorageError> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;
    let state = table.snapshot().map_err(StorageError::delta("reading table state"))?;
    let actions = state.add_actions_table(true).map_err(StorageError::delta("reading the table's files"))?;
    let (Some(paths), Some(sizes)) = (actions.column_by_name("path"), actions.column_by_name("size_bytes")) else {
        return Ok((Vec::new(), actions));
    };
    let utf8 = |a: &arrow::array::ArrayRef| {
        arrow::compute::cast(a, &arrow::datatypes::DataType::Utf8).map_err(|e| StorageError::Build(e.to_string()))
    };
    let paths = utf8(paths)?;
    let dates = actions.column_by_name("partition.date").map(utf8).transpose()?;
    let (paths, sizes) = (paths.as_string::<i32>(), sizes.as_primitive::<Int64Type>());
    let dates = dates.as_ref().map(|d| d.as_string::<i32>());
    let files = (0..actions.num_rows())
        .map(|i| DataFile {
            path: paths.value(i).to_owned(),
            size: sizes.value(i).max(0) as u64,
            date: dates.filter(|d| d.is_valid(i)).map(|d| d.value(i).to_owned()),
        })
        .collect();
    Ok((files, actions))
}

/// The footer of a Parquet file of `size` bytes: its last 64 KiB, and more when the footer is
/// longer.
pub(crate) async fn read_footer(
    store: &dyn object_store::ObjectStore,
    path: &object_store::path::Path,
    size: u64,
) -> Result<parquet::file::metadata::ParquetMetaData, Box<dyn std::error::Error + Send + Sync>> {
    use object_store::ObjectStoreExt;
    use parquet::errors::ParquetError;
    use parquet::file::metadata::ParquetMetaDataReader;
    let mut reader = ParquetMetaDataReader::new();
    let mut tail = size.min(64 << 10);
    loop {
        let bytes = store.get_range(path, size - tail..size).await?;
        match reader.try_parse_sized(&bytes, size) {
            Ok(()) => return Ok(reader.finish()?),
            Err(ParquetError::NeedMoreData(needed)) if (needed as u64) > tail && (needed as u64) <= size => {
                tail = needed as u64;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
