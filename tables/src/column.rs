//! How one Rust field type becomes one Arrow column and back. A table's schema, its record batches
//! and its read-back all come from these, so a field's type decides its column's type once.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, ListArray,
    ListBuilder, PrimitiveBuilder, StringArray,
};
use arrow::datatypes::{DataType, Field, Float32Type, Int32Type};
use types::{Method, Stage, Variant};

/// A field type that is stored as one column.
pub trait ColumnValue: Sized {
    fn data_type() -> DataType;
    /// Only optional fields may hold nulls.
    const NULLABLE: bool = false;
    fn to_array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef
    where
        Self: 'a;
    /// The column's values, or why they are not what the field holds.
    fn from_array(array: &dyn Array) -> Result<Vec<Self>, String>;
}

fn downcast<'a, A: Array + 'static>(array: &'a dyn Array) -> Result<&'a A, String> {
    array.as_any().downcast_ref::<A>().ok_or_else(|| format!("has type {}", array.data_type()))
}

fn no_nulls(array: &dyn Array) -> Result<(), String> {
    match array.null_count() {
        0 => Ok(()),
        n => Err(format!("holds {n} nulls in a required column")),
    }
}

macro_rules! primitive {
    ($t:ty, $dt:expr, $array:ty) => {
        impl ColumnValue for $t {
            fn data_type() -> DataType {
                $dt
            }
            fn to_array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
                Arc::new(values.copied().collect::<$array>())
            }
            fn from_array(array: &dyn Array) -> Result<Vec<Self>, String> {
                no_nulls(array)?;
                Ok(downcast::<$array>(array)?.iter().map(|v| v.unwrap_or_default()).collect())
            }
        }
    };
}

primitive!(i32, DataType::Int32, Int32Array);
primitive!(i64, DataType::Int64, Int64Array);
primitive!(f32, DataType::Float32, Float32Array);
primitive!(f64, DataType::Float64, Float64Array);
primitive!(bool, DataType::Boolean, BooleanArray);

impl ColumnValue for String {
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn to_array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        Arc::new(values.map(|s| Some(s.as_str())).collect::<StringArray>())
    }
    fn from_array(array: &dyn Array) -> Result<Vec<Self>, String> {
        no_nulls(array)?;
        Ok(downcast::<StringArray>(array)?.iter().map(|v| v.unwrap_or_default().to_string()).collect())
    }
}

impl ColumnValue for Option<String> {
    const NULLABLE: bool = true;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn to_array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        Arc::new(values.map(|s| s.as_deref()).collect::<StringArray>())
    }
    fn from_array(array: &dyn Array) -> Result<Vec<Self>, String> {
        Ok(downcast::<StringArray>(array)?.iter().map(|v| v.map(str::to_string)).collect())
    }
}

/// Enums are stored by name and must read back as one of their names.
macro_rules! by_name {
    ($t:ty) => {
        impl ColumnValue for $t {
            fn data_type() -> DataType {
                DataType::Utf8
            }
            fn to_array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
                Arc::new(values.map(|v| Some(v.as_str())).collect::<StringArray>())
            }
            fn from_array(array: &dyn Array) -> Result<Vec<Self>, String> {
                String::from_array(array)?.iter().map(|s| s.parse::<$t>().map_err(|e| e.to_string())).collect()
            }
        }
    };
}

by_name!(Variant);
by_name!(Stage);
by_name!(Method);

/// List items are declared nullable, as Arrow's list builders (and so pyarrow and Polars) expect.
fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

fn lists<'a, P: ArrowPrimitiveType>(values: impl Iterator<Item = &'a [P::Native]>) -> ArrayRef {
    let mut b = ListBuilder::new(PrimitiveBuilder::<P>::new());
    for v in values {
        b.values().append_slice(v);
        b.append(true);
    }
    Arc::new(b.finish())
}

fn list_items<T: ColumnValue>(array: &dyn Array) -> Result<Vec<Vec<T>>, String> {
    no_nulls(array)?;
    let lists = downcast::<ListArray>(array)?;
    (0..lists.len()).map(|i| T::from_array(lists.value(i).as_ref())).collect()
}

impl ColumnValue for Vec<i32> {
    fn data_type() -> DataType {
        list_of(DataType::Int32)
    }
    fn to_array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        lists::<Int32Type>(values.map(|v| v.as_slice()))
    }
    fn from_array(array: &dyn Array) -> Result<Vec<Self>, String> {
        list_items(array)
    }
}

impl ColumnValue for Vec<f32> {
    fn data_type() -> DataType {
        list_of(DataType::Float32)
    }
    fn to_array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        lists::<Float32Type>(values.map(|v| v.as_slice()))
    }
    fn from_array(array: &dyn Array) -> Result<Vec<Self>, String> {
        list_items(array)
    }
}

/// A box: a list of exactly four int32 (SPEC §8 `box list<int32>[4]`).
impl ColumnValue for [i32; 4] {
    fn data_type() -> DataType {
        list_of(DataType::Int32)
    }
    fn to_array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        lists::<Int32Type>(values.map(|v| v.as_slice()))
    }
    fn from_array(array: &dyn Array) -> Result<Vec<Self>, String> {
        list_items::<i32>(array)?
            .into_iter()
            .map(|v| <[i32; 4]>::try_from(v.as_slice()).map_err(|_| format!("holds a box of {} values", v.len())))
            .collect()
    }
}

/// The column's Arrow field, typed by the field it is declared from (`None.map(|r| &r.field)`).
pub fn field_of<T: ColumnValue>(name: &str, _: Option<&T>) -> Field {
    Field::new(name, T::data_type(), T::NULLABLE)
}

pub fn array_of<'a, T: ColumnValue + 'a>(values: impl Iterator<Item = &'a T>) -> ArrayRef {
    T::to_array(values)
}

/// One column of `batch`, by name, as the field type that declares it.
pub fn read_column<T: ColumnValue>(batch: &arrow::array::RecordBatch, name: &str) -> Result<Vec<T>, crate::TableError> {
    let schema = |message: String| crate::TableError::Schema { path: Default::default(), column: name.into(), message };
    let array = batch.column_by_name(name).ok_or_else(|| schema("is missing".into()))?;
    T::from_array(array.as_ref()).map_err(schema)
}
