//! Integration tests: one test binary (link time matters here), one module per area. They run
//! the real `fraudlake` binary and the real libraries on real Delta tables in temp folders (and,
//! in `s3`, in a local S3 server; in `replicas`, with a local Redis and HAProxy; in `mlflow`, with a
//! local MLflow tracking server; in `lightgbm`, against Python LightGBM's own predictions).

mod common;
mod contract;
mod dag;
mod docs;
mod drift;
mod features;
mod handbook;
mod lake;
mod lightgbm;
mod mlflow;
mod models;
mod replicas;
mod rollout;
mod rollout_e2e;
mod rollout_serving;
mod s3;
mod serve;
mod stream;
mod system;
