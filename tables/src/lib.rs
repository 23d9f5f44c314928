//! A run's output tables (SPEC §8). Each table's columns are declared once, as a list of its row
//! type's fields ([`table!`]); the Arrow schema, the record batch and the read-back all follow from
//! that list and the fields' Rust types ([`column::ColumnValue`]). Part files live in a run folder,
//! local or in an object store ([`RunDir`]); they appear under their final name only when complete,
//! and every failure names the file (or the object's URL) it concerns.

pub mod column;
mod dir;
mod parts;

use std::path::PathBuf;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

pub use dir::RunDir;
pub use parts::{
    canonical_rows, part_key, part_path, part_rows, read_part, read_part_file, read_parts, read_rows, read_table, write_part,
    write_part_at, TIMING_COLUMNS,
};
pub use types::{AggregateRow, ErrorRow, ImageRow, PairRow, PerturbationRow, Stage, SubsetRow, WsolRow};

/// A table: its name (= its folder), its schema, and its rows as record batches and back.
pub trait Table: Sized {
    const NAME: &'static str;
    fn schema() -> SchemaRef;
    fn to_batch(rows: &[Self]) -> RecordBatch;
    /// The rows of a batch of this table; wrong or missing columns are a [`TableError::Schema`]
    /// without a path (the caller knows the file).
    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, TableError>;
}

/// Why a table could not be written or read. Every variant names the file; in an object store, the
/// object's URL (held as a path, as `data.path` holds URLs).
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a readable Parquet part: {source}", path.display())]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },
    #[error("{}: column `{column}` {message}", path.display())]
    Schema { path: PathBuf, column: String, message: String },
}

impl TableError {
    /// The same error, about `path` (reading a batch does not know its file; its caller does).
    pub fn at(self, path: &std::path::Path) -> TableError {
        match self {
            TableError::Schema { column, message, .. } => TableError::Schema { path: path.into(), column, message },
            other => other,
        }
    }

    pub fn path(&self) -> &std::path::Path {
        match self {
            TableError::Io { path, .. } | TableError::Parquet { path, .. } | TableError::Schema { path, .. } => path,
        }
    }
}

/// Declares a table from its row type's fields, in column order: `field` is a column of the same
/// name, `field as "name"` one named otherwise. The struct literal in the read-back makes the
/// compiler check that every field of the row is a column.
#[macro_export]
macro_rules! table {
    ($row:ty, $name:literal, [$($field:ident $(as $col:literal)?),* $(,)?]) => {
        impl $crate::Table for $row {
            const NAME: &'static str = $name;

            fn schema() -> ::arrow::datatypes::SchemaRef {
                ::std::sync::Arc::new(::arrow::datatypes::Schema::new(vec![
                    $($crate::column::field_of($crate::table!(@name $field $($col)?), None::<&$row>.map(|r| &r.$field))),*
                ]))
            }

            fn to_batch(rows: &[Self]) -> ::arrow::array::RecordBatch {
                let columns = vec![$($crate::column::array_of(rows.iter().map(|r| &r.$field))),*];
                ::arrow::array::RecordBatch::try_new(Self::schema(), columns)
                    .expect("every column is built from the field its schema entry is declared from")
            }

            fn from_batch(batch: &::arrow::array::RecordBatch) -> Result<Vec<Self>, $crate::TableError> {
                $(let mut $field = $crate::column::read_column(batch, $crate::table!(@name $field $($col)?))?.into_iter();)*
                Ok((0..batch.num_rows())
                    .map(|_| Self { $($field: $field.next().expect("a column holds num_rows values")),* })
                    .collect())
            }
        }
    };
    (@name $field:ident $col:literal) => { $col };
    (@name $field:ident) => { stringify!($field) };
}

table!(ImageRow, "images", [
    image_id, shard, label, model, variant, top5, top5_prob, top1_correct, top5_correct, cam_h, cam_w, cam,
    bbox as "box", iou, iou_curve, act_mean, act_std, act_sparsity, act_entropy, act_hist, infer_ms, cam_ms,
]);

table!(PairRow, "pairs", [image_id, model, rmse, rmse_flipped, top1_agree]);

table!(ErrorRow, "errors", [image_id, shard, model, stage, message]);

table!(SubsetRow, "subset", [model, image_id, rank, rmse]);

table!(WsolRow, "wsol", [image_id, shard, model, variant, method, bbox as "box", iou, iou_curve, top1_loc]);

table!(PerturbationRow, "perturbation", [
    image_id, model, variant, method, target, deletion_auc, insertion_auc, deletion_curve, insertion_curve,
]);

table!(AggregateRow, "aggregates", [
    epoch, model, variant, images, top1, top5, mean_iou, act_mean, act_std, act_sparsity, act_entropy, mean_rmse,
    mean_rmse_flipped, top1_agree, subset_size, subset_mean_rmse,
]);

/// Typed column access for readers of these tables (report, tests). Panics on a missing or
/// mistyped column: use it on parts this crate wrote, after [`read_table`] has named the file.
pub fn column<'a, A: arrow::array::Array + 'static>(batch: &'a RecordBatch, name: &str) -> &'a A {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column `{name}` missing"))
        .as_any()
        .downcast_ref::<A>()
        .unwrap_or_else(|| panic!("column `{name}` has an unexpected type"))
}

pub type Utf8Col = arrow::array::StringArray;
pub type BoolCol = arrow::array::BooleanArray;
pub type F32Col = arrow::array::Float32Array;
pub type F64Col = arrow::array::Float64Array;
pub type I64Col = arrow::array::Int64Array;
pub type I32Col = arrow::array::Int32Array;
pub type ListCol = arrow::array::ListArray;

#[cfg(test)]
mod tests {
    use super::*;
    use types::Variant;

    fn image_row(i: i32) -> ImageRow {
        ImageRow {
            image_id: format!("img{i}"),
            shard: "val-00000".into(),
            label: i,
            model: "m".into(),
            variant: if i % 2 == 0 { Variant::Float } else { Variant::Quantized },
            top5: vec![i, 2, 3, 4, 5],
            top5_prob: vec![0.5, 0.2, 0.1, 0.1, 0.1],
            top1_correct: true,
            top5_correct: false,
            cam_h: 7,
            cam_w: 7,
            cam: vec![0.25; 49],
            bbox: [1, 2, 3, i],
            iou: 0.5,
            iou_curve: vec![0.1; 100],
            act_mean: 1.5,
            act_std: 0.25,
            act_sparsity: 10.0,
            act_entropy: 3.0,
            act_hist: vec![1.0 / 256.0; 256],
            infer_ms: 1.0,
            cam_ms: 2.0,
        }
    }

    #[test]
    fn schema_is_spec_section_8() {
        let s = ImageRow::schema();
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names[..13], ["image_id", "shard", "label", "model", "variant", "top5", "top5_prob", "top1_correct",
            "top5_correct", "cam_h", "cam_w", "cam", "box"]);
        assert_eq!(s.field_with_name("act_mean").unwrap().data_type(), &arrow::datatypes::DataType::Float64);
        assert_eq!(s.field_with_name("variant").unwrap().data_type(), &arrow::datatypes::DataType::Utf8);
        let e = ErrorRow::schema();
        assert!(e.field_with_name("model").unwrap().is_nullable());
        assert!(!e.field_with_name("stage").unwrap().is_nullable());
    }

    #[test]
    fn every_table_reads_back_what_it_wrote() {
        let rows: Vec<ImageRow> = (0..3).map(image_row).collect();
        assert_eq!(ImageRow::from_batch(&ImageRow::to_batch(&rows)).unwrap(), rows);
        let errors = vec![
            ErrorRow::new("a", "s", Stage::Decode, "bad"),
            ErrorRow::new("b", "s", Stage::Perturb, "worse").for_model("m"),
        ];
        assert_eq!(ErrorRow::from_batch(&ErrorRow::to_batch(&errors)).unwrap(), errors);
    }

    #[test]
    fn a_bad_variant_or_box_is_an_error_not_a_guess() {
        let mut batch = ImageRow::to_batch(&[image_row(0)]);
        let variant = batch.schema().index_of("variant").unwrap();
        let mut columns = batch.columns().to_vec();
        columns[variant] = std::sync::Arc::new(arrow::array::StringArray::from(vec!["int8"]));
        batch = RecordBatch::try_new(batch.schema(), columns).unwrap();
        let err = ImageRow::from_batch(&batch).unwrap_err().to_string();
        assert!(err.contains("column `variant`") && err.contains("int8"), "{err}");

        let short = vec![ImageRow { bbox: [0; 4], ..image_row(1) }];
        let mut batch = ImageRow::to_batch(&short);
        let at = batch.schema().index_of("box").unwrap();
        let mut columns = batch.columns().to_vec();
        columns[at] = <Vec<i32> as column::ColumnValue>::to_array([vec![1, 2, 3]].iter());
        batch = RecordBatch::try_new(batch.schema(), columns).unwrap();
        assert!(ImageRow::from_batch(&batch).unwrap_err().to_string().contains("box of 3 values"));
    }
}
