//! A small safe wrapper over LightGBM's C API (LightGBM 4.7, built from source by
//! `lightgbm3-sys`): the calls training needs, and the only unsafe code of the LightGBM
//! family. Every call checks the return code and carries `LGBM_GetLastError` in the error.
//!
//! Why not the `lightgbm3` crate's safe API: its `Dataset` is built without parameters (so
//! LightGBM bins and pre-filters features with its defaults, not with the run's
//! `min_data_in_leaf`, seed and threads, as Python's `lgb.train` does, and logs to stdout),
//! and its training loop does not report the validation score per iteration, which the early
//! stopping of `booster::fit` reads. The tests use `lightgbm3` as the reference predictor.

use std::ffi::{c_char, c_void, CStr, CString};
use std::marker::PhantomData;
use std::ptr;

use lightgbm3_sys as sys;

use crate::error::{Error, Result};

fn check(context: &str, code: i32) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: LGBM_GetLastError returns a thread-local NUL-terminated string owned by LightGBM.
    let message = unsafe {
        let p = sys::LGBM_GetLastError();
        if p.is_null() {
            String::from("unknown error")
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    Err(Error::Model(format!("LightGBM: {context}: {message}")))
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(format!("'{s}' contains a NUL byte")))
}

fn to_c_int(what: &str, n: usize) -> Result<i32> {
    i32::try_from(n)
        .map_err(|_| Error::invalid(format!("{n} {what}: LightGBM takes at most {}", i32::MAX)))
}

/// LightGBM's parameters as its C API takes them: `key=value` pairs separated by spaces.
pub struct Parameters(CString);

impl Parameters {
    pub fn new(pairs: &[(&'static str, String)]) -> Result<Parameters> {
        let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Ok(Parameters(cstring(&text.join(" "))?))
    }
}

/// A LightGBM training set: features binned, labels set (NaN = missing).
pub struct Dataset {
    handle: sys::DatasetHandle,
}

impl Dataset {
    /// `values` is row-major with `cols` columns, one label per row. The bins are computed
    /// from the data with `params`, or, for a validation set, taken from `reference` (the
    /// training set), as LightGBM requires for evaluating on it.
    pub fn dense(
        values: &[f32],
        labels: &[f32],
        cols: usize,
        params: &Parameters,
        reference: Option<&Dataset>,
    ) -> Result<Dataset> {
        if cols == 0 || !values.len().is_multiple_of(cols) || values.len() / cols != labels.len() {
            return Err(Error::invalid(format!(
                "a matrix of {} values and {} labels does not have {cols} columns",
                values.len(),
                labels.len()
            )));
        }
        let nrow = to_c_int("rows", labels.len())?;
        let ncol = to_c_int("features", cols)?;
        let mut handle: sys::DatasetHandle = ptr::null_mut();
        // SAFETY: `values` holds nrow * ncol f32 (checked above) and outlives the call, which
        // copies what it keeps into bins; `params` is NUL-terminated; `reference` is a live
        // dataset or null.
        check("cannot build the dataset", unsafe {
            sys::LGBM_DatasetCreateFromMat(
                values.as_ptr().cast::<c_void>(),
                sys::C_API_DTYPE_FLOAT32 as i32,
                nrow,
                ncol,
                1,
                params.0.as_ptr(),
                reference.map_or(ptr::null_mut(), |r| r.handle),
                &mut handle,
            )
        })?;
        // Owned from here: freed on drop if setting the labels fails.
        let dataset = Dataset { handle };
        let field = cstring("label")?;
        // SAFETY: a live handle; `labels` holds nrow f32, copied by the call.
        check("cannot set the labels", unsafe {
            sys::LGBM_DatasetSetField(
                dataset.handle,
                field.as_ptr(),
                labels.as_ptr().cast::<c_void>(),
                nrow,
                sys::C_API_DTYPE_FLOAT32 as i32,
            )
        })?;
        Ok(dataset)
    }

    /// Names the features (saved in the model's `feature_names=` line); LightGBM refuses names
    /// with JSON's special characters and turns whitespace into `_`, which callers check first.
    pub fn set_feature_names(&mut self, names: &[String]) -> Result<()> {
        let owned: Vec<CString> = names.iter().map(|n| cstring(n)).collect::<Result<_>>()?;
        let mut pointers: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        let count = to_c_int("feature names", pointers.len())?;
        // SAFETY: a live handle; `owned` keeps the strings alive for the call, which copies
        // them; `pointers` holds `count` pointers.
        check("cannot set the feature names", unsafe {
            sys::LGBM_DatasetSetFeatureNames(self.handle, pointers.as_mut_ptr(), count)
        })
    }
}

impl Drop for Dataset {
    fn drop(&mut self) {
        // SAFETY: the handle came from LGBM_DatasetCreateFromMat and is freed once, after the
        // boosters that read it (they borrow it: see `Booster`).
        unsafe {
            sys::LGBM_DatasetFree(self.handle);
        }
    }
}

/// A LightGBM booster training on datasets it borrows (LightGBM reads them on every
/// iteration, so they must outlive it: the lifetime says so).
pub struct Booster<'a> {
    handle: sys::BoosterHandle,
    data: PhantomData<&'a Dataset>,
}

impl<'a> Booster<'a> {
    pub fn new(train: &'a Dataset, params: &Parameters) -> Result<Booster<'a>> {
        let mut handle: sys::BoosterHandle = ptr::null_mut();
        // SAFETY: a live dataset, which the booster's lifetime keeps alive; NUL-terminated
        // parameters.
        check("cannot create the booster", unsafe {
            sys::LGBM_BoosterCreate(train.handle, params.0.as_ptr(), &mut handle)
        })?;
        Ok(Booster {
            handle,
            data: PhantomData,
        })
    }

    /// Adds a validation set (binned with the training set's bins): the first one is the
    /// one [`Booster::validation_scores`] reads.
    pub fn add_valid(&mut self, valid: &'a Dataset) -> Result<()> {
        // SAFETY: live handles; the booster's lifetime keeps the dataset alive.
        check("cannot add the validation set", unsafe {
            sys::LGBM_BoosterAddValidData(self.handle, valid.handle)
        })
    }

    /// One boosting iteration. True when LightGBM finds no split left to make: it then drops
    /// the iteration's empty tree, and further iterations would do the same.
    pub fn update(&mut self) -> Result<bool> {
        let mut finished: i32 = 0;
        // SAFETY: a live handle and an int to write.
        check("boosting failed", unsafe {
            sys::LGBM_BoosterUpdateOneIter(self.handle, &mut finished)
        })?;
        Ok(finished != 0)
    }

    /// The value of each metric on the first validation set, after the last iteration.
    pub fn validation_scores(&self) -> Result<Vec<f64>> {
        let mut count: i32 = 0;
        // SAFETY: a live handle and an int to write.
        check("cannot count the metrics", unsafe {
            sys::LGBM_BoosterGetEvalCounts(self.handle, &mut count)
        })?;
        let mut scores = vec![0.0f64; usize::try_from(count).unwrap_or(0)];
        if scores.is_empty() {
            return Ok(scores);
        }
        let mut written: i32 = 0;
        // SAFETY: a live handle; `scores` has room for every metric LightGBM counted.
        check("cannot evaluate on the validation set", unsafe {
            sys::LGBM_BoosterGetEval(self.handle, 1, &mut written, scores.as_mut_ptr())
        })?;
        scores.truncate(usize::try_from(written).unwrap_or(0));
        Ok(scores)
    }

    /// Iterations in the model.
    pub fn iterations(&self) -> Result<u32> {
        let mut iterations: i32 = 0;
        // SAFETY: a live handle and an int to write.
        check("cannot read the iteration count", unsafe {
            sys::LGBM_BoosterGetCurrentIteration(self.handle, &mut iterations)
        })?;
        u32::try_from(iterations)
            .map_err(|_| Error::Model(format!("LightGBM reports {iterations} iterations")))
    }

    /// The model as LightGBM's text model (what `Booster.save_model` writes): every
    /// iteration, split-count importances.
    pub fn model_text(&self) -> Result<Vec<u8>> {
        let mut needed: i64 = 0;
        // SAFETY: a live handle; with a zero-length buffer LightGBM only writes the length it
        // needs (the text and its NUL) to `needed`.
        check("cannot save the model", unsafe {
            sys::LGBM_BoosterSaveModelToString(
                self.handle,
                0,
                -1,
                0,
                0,
                &mut needed,
                ptr::null_mut(),
            )
        })?;
        let size = usize::try_from(needed)
            .map_err(|_| Error::Model(format!("LightGBM reports a model of {needed} bytes")))?;
        let mut buffer = vec![0u8; size];
        let mut written: i64 = 0;
        // SAFETY: `buffer` holds `needed` bytes, which LightGBM fills when they are enough.
        check("cannot save the model", unsafe {
            sys::LGBM_BoosterSaveModelToString(
                self.handle,
                0,
                -1,
                0,
                needed,
                &mut written,
                buffer.as_mut_ptr().cast::<c_char>(),
            )
        })?;
        if written != needed {
            return Err(Error::Model(format!(
                "LightGBM's model text changed size between two calls ({needed} then {written} \
                 bytes)"
            )));
        }
        // Without the NUL.
        let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
        buffer.truncate(end);
        Ok(buffer)
    }
}

impl Drop for Booster<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle came from LGBM_BoosterCreate and is freed once, before the
        // datasets it borrows.
        unsafe {
            sys::LGBM_BoosterFree(self.handle);
        }
    }
}
