//! fraudlake models: train XGBoost or LightGBM on the lake's features, evaluate the way the
//! Fraud Detection Handbook does, keep versions in a registry in the lake, and score and
//! explain with native evaluators of the saved trees of either family.
//!
//! * [`dataset`]: the training/test rows, read with SQL from `features` and `labels`.
//! * [`protocol`]: train / delay / test periods and the known-compromised-card rule.
//! * [`metrics`]: AUC ROC, average precision, card precision@k, log loss, Brier, and their
//!   curves (the model card's charts).
//! * [`params`]: the training parameters of either family, tagged by family.
//! * [`booster`]: fitting either family (early stopping included), libxgboost's batch
//!   prediction and TreeSHAP; [`xgboost`]: libxgboost's C API.
//! * [`trees`]: the native scorer of the saved JSON model.
//! * [`lightgbm`]: the native scorer and TreeSHAP of LightGBM's text model, and LightGBM
//!   training through its C API (issue #18).
//! * [`ensemble`]: the traits either family's scorer and explainer implement.
//! * [`loaded`]: [`loaded::LoadedModel`], a registered model of either family as every caller
//!   scores and explains it, and [`loaded::ModelFamily`].
//! * [`registry`]: versions, lineage, aliases, promotion gate, audit, model cards.
//! * [`rollout`]: shadow and canary roles, the stable routing hash, the canary analysis.
//! * [`canary`]: the canary analysis's input, read from `predictions`, labels and transactions.
//! * [`html`]: the minijinja setup (and so the one HTML escaper) of every HTML page.
//! * [`train`]: the `fraudlake train` / `evaluate` workflows over the above.
//! * [`prequential`]: the handbook's chapter 5 protocol as one call (`evaluate --protocol
//!   prequential`).
//! * [`mlflow`]: the registry mirrored into an MLflow tracking server (`models sync`).
//!
//! Guide: docs/models.md in the repository.

pub mod booster;
pub mod canary;
pub mod dataset;
pub mod ensemble;
pub mod error;
pub mod html;
pub mod lightgbm;
pub mod loaded;
pub mod metrics;
pub mod mlflow;
pub mod params;
pub mod prequential;
pub mod protocol;
pub mod registry;
pub mod rollout;
pub mod train;
pub mod trees;
pub mod xgboost;

pub use error::{Error, Result};
pub use loaded::{LoadedModel, ModelFamily};
