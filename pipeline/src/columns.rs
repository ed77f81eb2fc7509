//! Reading query results without panics: DataFusion may hand back a column in another
//! physical type than the SQL suggests (strings as Utf8View, for instance), so columns are
//! cast to the wanted type first and a mismatch is an error, not an `as_*` panic. Every crate
//! that reads a lake table or a query result back into Rust values uses these.

use deltalake::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::error::ArrowError;

use chrono::NaiveDate;

use crate::error::{Error, Result};

fn cast_to<T: Array + Clone + 'static>(col: &ArrayRef, to: DataType) -> Result<T> {
    let casted = cast(col, &to)?;
    casted.as_any().downcast_ref::<T>().cloned().ok_or_else(|| {
        Error::Arrow(ArrowError::CastError(format!(
            "a {} column could not be read as {to}",
            col.data_type()
        )))
    })
}

pub fn utf8(col: &ArrayRef) -> Result<StringArray> {
    cast_to(col, DataType::Utf8)
}

pub fn i64s(col: &ArrayRef) -> Result<Int64Array> {
    cast_to(col, DataType::Int64)
}

pub fn i32s(col: &ArrayRef) -> Result<Int32Array> {
    cast_to(col, DataType::Int32)
}

pub fn f64s(col: &ArrayRef) -> Result<Float64Array> {
    cast_to(col, DataType::Float64)
}

pub fn bools(col: &ArrayRef) -> Result<BooleanArray> {
    cast_to(col, DataType::Boolean)
}

/// Days since 1970-01-01 of a date: how the lake's `DATE` columns store it.
pub fn day_number(d: NaiveDate) -> i32 {
    (d - chrono::DateTime::UNIX_EPOCH.date_naive()).num_days() as i32
}
