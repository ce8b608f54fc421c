//! Retraining: a compaction that trains a fresh quantizer and codec with
//! the index's factory on every live raw vector, rather than folding the
//! log into the base's lists. The vectors come from the kept rows (each
//! live base id's newest segment row) and the log; an id whose vector was
//! never kept (an index created from a Faiss file, or one that keeps no
//! vectors) makes it refuse, naming the id. It runs in memory, as the
//! first training does.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, RecordBatch};

use super::compact::Built;
use super::delta::DeltaBuilder;
use super::fold_attrs::AttributeFold;
use super::{MutableIndex, Version};
use crate::attributes::filter::arrow_error;
use crate::attributes::rows;
use crate::error::{Error, Result};
use crate::index::IvfIndex;

impl MutableIndex {
    pub(super) async fn retrain(
        &self,
        version: &Version,
        base: &IvfIndex,
        builder: &DeltaBuilder,
        name: &str,
    ) -> Result<Built> {
        let refuse = |reason: String| Error::Unsupported {
            uri: self.uri().to_string(),
            reason,
        };
        if version.factory.is_empty() || !version.keep_vectors {
            return Err(refuse(
                "retraining needs every raw vector and a factory: this index was created from a Faiss file, \
                 or keeps no vectors"
                    .into(),
            ));
        }
        let d = version.d;
        let snapshot = builder.snapshot();
        let schema = snapshot.schema.clone();
        // The live base ids: every list's, less those written since.
        let mut wanted: Vec<i64> = base
            .list_ids()
            .await?
            .into_iter()
            .flatten()
            .filter(|&id| !builder.hides(id))
            .collect();
        wanted.sort_unstable();
        let mut bytes_read = base.object().size;
        let mut found: HashMap<i64, (usize, usize)> = HashMap::with_capacity(wanted.len());
        let mut segments: Vec<RecordBatch> = Vec::new();
        for name in version.rows.iter().rev() {
            if found.len() == wanted.len() {
                break;
            }
            let segment = self.segment(name).await?;
            let batch = segment.scan().await?;
            bytes_read += segment.size();
            let ids = batch.column(0).as_primitive::<Int64Type>();
            let deleted = batch.column(1).as_boolean();
            let vectors = batch.column(2).as_fixed_size_list();
            for row in 0..batch.num_rows() {
                let id = ids.value(row);
                if wanted.binary_search(&id).is_ok()
                    && !found.contains_key(&id)
                    && !deleted.value(row)
                    && !vectors.is_null(row)
                {
                    found.insert(id, (segments.len(), row));
                }
            }
            segments.push(batch);
        }
        if let Some(id) = wanted.iter().find(|id| !found.contains_key(id)) {
            return Err(refuse(format!(
                "id {id} of the base has no kept raw vector; retraining needs every vector"
            )));
        }
        // Base rows from the segments, then the log's live rows.
        let mut ids = wanted;
        let mut vectors: Vec<f32> = Vec::with_capacity((ids.len() + builder.changed()) * d);
        let mut picks = Vec::with_capacity(ids.len());
        for id in &ids {
            let (s, row) = found[id];
            let list = segments[s].column(2).as_fixed_size_list();
            vectors.extend_from_slice(list.value(row).as_primitive::<Float32Type>().values());
            picks.push((s, row));
        }
        let attribute_batches: Vec<RecordBatch> = segments
            .iter()
            .map(|b| {
                b.project(&(3..b.num_columns()).collect::<Vec<_>>())
                    .map_err(arrow_error)
            })
            .collect::<Result<_>>()?;
        let sources: Vec<Option<&RecordBatch>> = attribute_batches.iter().map(Some).collect();
        let mut tables = vec![rows::gather(&schema, &sources, &picks)?];
        let live: Vec<_> = builder.changes().into_iter().filter(|(_, c)| c.is_some()).collect();
        let (log_vectors, _, read) = self.change_vectors(d, super::code_size(base.info()), &live).await?;
        bytes_read += read;
        vectors.extend_from_slice(&log_vectors);
        ids.extend(live.iter().map(|(id, _)| *id));
        let rows_of_log: Vec<_> = live.iter().map(|(_, c)| c.map(|(_, r)| r)).collect();
        tables.push(snapshot.gather_rows(&schema, &rows_of_log)?);
        let attrs = AttributeFold::start(base, snapshot, &self.shared.root.child(name)?).await?;
        let table = match attrs {
            Some(_) => Some(arrow_select::concat::concat_batches(&schema, &tables).map_err(arrow_error)?),
            None => None,
        };
        let mut built = self.build_trained(version, name, vectors, ids, attrs, table).await?;
        built.bytes_read += bytes_read;
        Ok(built)
    }
}
