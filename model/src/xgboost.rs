//! A small safe wrapper over libxgboost's C API (built from source by `xgboost_lib-sys`).
//!
//! Why not the `xgb` crate's `Booster`: its constructor always sets a full parameter set of
//! its own (a fixed `base_score` of 0.5 among them, which turns off XGBoost 3's intercept
//! estimation, and parameters libxgboost 3 warns are unused). fraudlake passes exactly the
//! parameters the user chose, as Python's `XGBClassifier` does, so the two train the same
//! model. Every call checks the return code and carries `XGBGetLastError` in the error.

use std::ffi::{c_char, CStr, CString};
use std::ptr;

use xgboost_lib_sys as sys;

use crate::error::{Error, Result};

fn check(context: &str, code: i32) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: XGBGetLastError returns a thread-local NUL-terminated string owned by libxgboost.
    let message = unsafe {
        let p = sys::XGBGetLastError();
        if p.is_null() {
            String::from("unknown error")
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    Err(Error::Model(format!("{context}: {message}")))
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(format!("'{s}' contains a NUL byte")))
}

/// A dense matrix in libxgboost (NaN = missing).
pub struct DMatrix {
    handle: sys::DMatrixHandle,
    rows: usize,
}

impl DMatrix {
    /// `values` is row-major with `cols` columns.
    pub fn dense(values: &[f32], cols: usize) -> Result<DMatrix> {
        if cols == 0 || !values.len().is_multiple_of(cols) {
            return Err(Error::invalid(format!(
                "a matrix of {} values does not have {cols} columns",
                values.len()
            )));
        }
        let rows = values.len() / cols;
        let mut handle = ptr::null_mut();
        // SAFETY: `values` outlives the call; libxgboost copies the data.
        check("cannot build a matrix", unsafe {
            sys::XGDMatrixCreateFromMat(
                values.as_ptr(),
                rows as u64,
                cols as u64,
                f32::NAN,
                &mut handle,
            )
        })?;
        Ok(DMatrix { handle, rows })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn set_labels(&mut self, labels: &[f32]) -> Result<()> {
        if labels.len() != self.rows {
            return Err(Error::invalid(format!(
                "{} labels for {} rows",
                labels.len(),
                self.rows
            )));
        }
        let field = cstring("label")?;
        // SAFETY: valid handle; the array is copied.
        check("cannot set labels", unsafe {
            sys::XGDMatrixSetFloatInfo(
                self.handle,
                field.as_ptr(),
                labels.as_ptr(),
                labels.len() as u64,
            )
        })
    }
}

impl Drop for DMatrix {
    fn drop(&mut self) {
        // SAFETY: the handle came from XGDMatrixCreateFromMat and is freed once.
        unsafe {
            sys::XGDMatrixFree(self.handle);
        }
    }
}

/// A libxgboost booster. Not shared between threads without a lock (libxgboost keeps
/// per-booster prediction caches).
pub struct Booster {
    handle: sys::BoosterHandle,
}

// SAFETY: a booster handle may move between threads; concurrent use is prevented by `&mut`
// for training and by callers' locks for prediction.
unsafe impl Send for Booster {}

/// What libxgboost predicts.
#[derive(Debug, Clone, Copy)]
pub enum Prediction {
    Probability,
    /// TreeSHAP contributions: one column per feature plus the bias.
    Contributions,
}

impl Booster {
    /// A booster that caches `train` (and `others`, e.g. a validation matrix).
    pub fn new(cache: &[&DMatrix]) -> Result<Booster> {
        let handles: Vec<sys::DMatrixHandle> = cache.iter().map(|d| d.handle).collect();
        let mut handle = ptr::null_mut();
        // SAFETY: the handles are live for the call.
        check("cannot create a booster", unsafe {
            sys::XGBoosterCreate(handles.as_ptr(), handles.len() as u64, &mut handle)
        })?;
        Ok(Booster { handle })
    }

    /// Loads a saved model (JSON or UBJSON bytes).
    pub fn load(bytes: &[u8]) -> Result<Booster> {
        let booster = Booster::new(&[])?;
        // SAFETY: the buffer is read during the call only.
        check("libxgboost cannot load the model", unsafe {
            sys::XGBoosterLoadModelFromBuffer(
                booster.handle,
                bytes.as_ptr() as _,
                bytes.len() as u64,
            )
        })?;
        Ok(booster)
    }

    pub fn set_param(&mut self, name: &str, value: &str) -> Result<()> {
        let (n, v) = (cstring(name)?, cstring(value)?);
        // SAFETY: valid handle and strings.
        check(&format!("parameter {name}={value}"), unsafe {
            sys::XGBoosterSetParam(self.handle, n.as_ptr(), v.as_ptr())
        })
    }

    /// Stores feature names and types in the model (saved with it; Python reads them).
    pub fn set_feature_names(&mut self, names: &[String]) -> Result<()> {
        for (field, values) in [
            ("feature_name", names.to_vec()),
            ("feature_type", vec!["float".to_string(); names.len()]),
        ] {
            let owned: Vec<CString> = values.iter().map(|n| cstring(n)).collect::<Result<_>>()?;
            let ptrs: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
            let f = cstring(field)?;
            // SAFETY: `owned` keeps the strings alive for the call; libxgboost copies them.
            check("cannot set feature names", unsafe {
                sys::XGBoosterSetStrFeatureInfo(
                    self.handle,
                    f.as_ptr(),
                    ptrs.as_ptr() as _,
                    ptrs.len() as u64,
                )
            })?;
        }
        Ok(())
    }

    /// One boosting round.
    pub fn update(&mut self, round: u32, train: &DMatrix) -> Result<()> {
        // SAFETY: valid handles.
        check(&format!("boosting round {round}"), unsafe {
            sys::XGBoosterUpdateOneIter(self.handle, round as i32, train.handle)
        })
    }

    /// The value of the (single) eval metric on `data`.
    pub fn evaluate(&self, round: u32, data: &DMatrix) -> Result<f64> {
        let name = cstring("valid")?;
        let mut handles = [data.handle];
        let mut names = [name.as_ptr()];
        let mut out: *const c_char = ptr::null();
        // SAFETY: arrays of one live handle and one name; the result string is owned by
        // libxgboost until the next call on this booster.
        check("evaluation failed", unsafe {
            sys::XGBoosterEvalOneIter(
                self.handle,
                round as i32,
                handles.as_mut_ptr(),
                names.as_mut_ptr(),
                1,
                &mut out,
            )
        })?;
        // SAFETY: non-null NUL-terminated string from libxgboost.
        let text = unsafe { CStr::from_ptr(out) }
            .to_string_lossy()
            .into_owned();
        // "[3]\tvalid-aucpr:0.812"
        text.rsplit(':')
            .next()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| Error::Model(format!("cannot read the evaluation '{text}'")))
    }

    /// The model as XGBoost JSON.
    pub fn save_json(&self) -> Result<Vec<u8>> {
        let config = cstring(r#"{"format": "json"}"#)?;
        let mut len = 0u64;
        let mut data: *const c_char = ptr::null();
        // SAFETY: the buffer is owned by libxgboost until the next call; copied at once.
        check("cannot serialize the model", unsafe {
            sys::XGBoosterSaveModelToBuffer(self.handle, config.as_ptr(), &mut len, &mut data)
        })?;
        // SAFETY: libxgboost reports `len` valid bytes at `data`.
        Ok(unsafe { std::slice::from_raw_parts(data as *const u8, len as usize) }.to_vec())
    }

    /// Predictions for every row of `data`, flattened row-major.
    pub fn predict(&self, data: &DMatrix, what: Prediction) -> Result<Vec<f32>> {
        let kind = match what {
            Prediction::Probability => 0,
            Prediction::Contributions => 2,
        };
        let config = cstring(&format!(
            r#"{{"type": {kind}, "training": false, "iteration_begin": 0, "iteration_end": 0, "strict_shape": false}}"#
        ))?;
        let mut shape: *const u64 = ptr::null();
        let mut dims = 0u64;
        let mut out: *const f32 = ptr::null();
        // SAFETY: valid handles; the result is owned by libxgboost until the next call.
        check("prediction failed", unsafe {
            sys::XGBoosterPredictFromDMatrix(
                self.handle,
                data.handle,
                config.as_ptr(),
                &mut shape,
                &mut dims,
                &mut out,
            )
        })?;
        // SAFETY: `dims` entries at `shape`, and their product floats at `out`.
        let len: u64 = unsafe { std::slice::from_raw_parts(shape, dims as usize) }
            .iter()
            .product();
        Ok(unsafe { std::slice::from_raw_parts(out, len as usize) }.to_vec())
    }
}

impl Drop for Booster {
    fn drop(&mut self) {
        // SAFETY: the handle came from XGBoosterCreate and is freed once.
        unsafe {
            sys::XGBoosterFree(self.handle);
        }
    }
}
