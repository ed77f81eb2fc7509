//! The HTTP scoring service of fraudlake (`server`): `POST /score` answers with the features
//! the online engine of `fraudlake-features` computes for the transaction (the same feature
//! SQL the offline build and training use) and the champion model's risk and decision; plus
//! labels, health, metrics, model reload and the lake writer. The feature engine itself lives
//! in `fraudlake-features`; this crate only serves it.
//!
//! Guide: docs/serving.md in the repository.

pub mod error;
pub mod server;

pub use error::{Error, Result};
