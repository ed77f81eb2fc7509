//! A registered version as an MLflow model directory: the files `mlflow.<flavor>.save_model`
//! writes (`MLmodel`, the model file, `requirements.txt`, `python_env.yaml`, `conda.yaml`), so
//! that `mlflow.pyfunc.load_model("models:/fraud-detector@champion")` gives the fraud
//! probability fraudlake scores, and `mlflow.xgboost.load_model` the booster itself.
//!
//! Why the flavor's `model_class` is `xgboost.core.Booster` rather than `XGBClassifier`:
//! MLflow's pyfunc wrapper (mlflow/xgboost/__init__.py, `_XGBModelWrapper`) calls
//! `Booster.predict(DMatrix(frame))`, which for `binary:logistic` is the probability of the
//! positive class; an `XGBClassifier`'s pyfunc `predict` is the 0/1 label. The model file is the
//! registry's own JSON artifact, byte for byte (`model_format: json`; Python xgboost loads it
//! with identical predictions, see docs/models.md).
//!
//! Each model family is one arm of [`Flavor`]. A LightGBM version is what
//! `mlflow.lightgbm.save_model(booster, path)` writes for a `lightgbm.Booster`: the registry's
//! text artifact byte for byte as `model.lgb`, `model_class: lightgbm.basic.Booster`, whose
//! pyfunc `predict` is `Booster.predict`, the probability for `objective=binary`.

use std::fmt::Write;

use crate::loaded::ModelFamily;
use crate::registry::VersionRecord;

/// The folder of the run's artifacts that holds the model (MLflow's `artifact_path`).
pub const MODEL_DIR: &str = "model";

/// The MLflow version whose file layout this mirrors (checked by the interop test with it).
pub const MLFLOW_FORMAT_VERSION: &str = "3.17.2";

/// The Python the interop test loads the model with; MLflow compares only major.minor, and
/// warns (never fails) on a mismatch.
const PYTHON_VERSION: &str = "3.11";

/// libxgboost that wrote the model file (the `xgboost_lib-sys` build, docs/models.md).
const XGBOOST_VERSION: &str = "3.4.1";

/// LightGBM whose text models the native reader is tested against (an imported file may come
/// from another 4.x; MLflow only records the number).
const LIGHTGBM_VERSION: &str = "4.7.0";

/// An MLflow flavor: how a family's model file is loaded in Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `mlflow.xgboost`, the registry's XGBoost JSON artifact as a `Booster`.
    Xgboost,
    /// `mlflow.lightgbm`, the registry's LightGBM text artifact as a `Booster`.
    Lightgbm,
}

impl Flavor {
    /// The flavor of a registered version (one match arm per model family).
    pub fn of(record: &VersionRecord) -> Flavor {
        match record.model_family {
            ModelFamily::XGBoost => Flavor::Xgboost,
            ModelFamily::LightGBM => Flavor::Lightgbm,
        }
    }

    /// The flavor's name in `MLmodel` and the tag `fraudlake.model_family`.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Xgboost => "xgboost",
            Flavor::Lightgbm => "lightgbm",
        }
    }

    /// The model file's name inside the model directory.
    fn data_file(self) -> &'static str {
        match self {
            Flavor::Xgboost => "model.json",
            Flavor::Lightgbm => "model.lgb",
        }
    }

    /// The flavor's own section of `MLmodel` (indented under `flavors:`).
    fn section(self) -> String {
        match self {
            Flavor::Xgboost => format!(
                "  xgboost:\n    code: null\n    data: {}\n    model_class: xgboost.core.Booster\n    \
                 model_format: json\n    xgb_version: {XGBOOST_VERSION}\n",
                self.data_file()
            ),
            Flavor::Lightgbm => format!(
                "  lightgbm:\n    code: null\n    data: {}\n    lgb_version: {LIGHTGBM_VERSION}\n    \
                 model_class: lightgbm.basic.Booster\n",
                self.data_file()
            ),
        }
    }

    /// The Python packages the model loads with (pip requirement lines).
    fn requirements(self) -> Vec<&'static str> {
        let mut reqs = vec!["mlflow>=3.0", "numpy", "pandas"];
        match self {
            // The JSON of libxgboost 3.x; older Python xgboost may not read its newer fields.
            Flavor::Xgboost => reqs.push("xgboost>=3.0"),
            // The text format of LightGBM 4 (`version=v4`).
            Flavor::Lightgbm => reqs.push("lightgbm>=4.0"),
        }
        reqs
    }
}

/// The files of the model directory, as (name, bytes), `MLmodel` first.
pub fn model_files(
    record: &VersionRecord,
    model_file: &[u8],
    run_id: &str,
) -> Vec<(String, Vec<u8>)> {
    let flavor = Flavor::of(record);
    let requirements = flavor.requirements();
    let requirements_txt = requirements.join("\n") + "\n";
    let python_env = format!(
        "python: '{PYTHON_VERSION}'\nbuild_dependencies:\n- pip\n- setuptools\n- wheel\n\
         dependencies:\n- -r requirements.txt\n"
    );
    let mut conda = format!(
        "channels:\n- conda-forge\ndependencies:\n- python={PYTHON_VERSION}\n- pip\n- pip:\n"
    );
    for r in &requirements {
        // Quoted: `>=` is fine in YAML, but a quoted scalar says "one string" to every reader.
        let _ = writeln!(conda, "  - {}", yaml_str(r));
    }
    conda.push_str("name: mlflow-env\n");
    let size = model_file.len() + requirements_txt.len() + python_env.len() + conda.len();
    let mlmodel = mlmodel(record, flavor, run_id, size);
    vec![
        ("MLmodel".to_string(), mlmodel.into_bytes()),
        (flavor.data_file().to_string(), model_file.to_vec()),
        (
            "requirements.txt".to_string(),
            requirements_txt.into_bytes(),
        ),
        ("python_env.yaml".to_string(), python_env.into_bytes()),
        ("conda.yaml".to_string(), conda.into_bytes()),
    ]
}

/// The `MLmodel` file, as MLflow 3 writes it for `save_model(..., signature=...)`.
fn mlmodel(record: &VersionRecord, flavor: Flavor, run_id: &str, size: usize) -> String {
    let inputs: Vec<serde_json::Value> = record
        .feature_names
        .iter()
        .map(|n| serde_json::json!({"type": "double", "name": n, "required": true}))
        .collect();
    let inputs = serde_json::Value::Array(inputs).to_string();
    let outputs = r#"[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1]}}]"#;
    // Deterministic (a second sync writes the same file): the artifact's hash as the uuid.
    let uuid: String = record.artifact_sha256.chars().take(32).collect();
    let created = record.created_at.format("%Y-%m-%d %H:%M:%S%.6f");
    let pyfunc = format!(
        "\x20 python_function:\n\
         \x20   data: {data}\n\
         \x20   env:\n\
         \x20     conda: conda.yaml\n\
         \x20     virtualenv: python_env.yaml\n\
         \x20   loader_module: mlflow.{flavor}\n\
         \x20   python_version: '{PYTHON_VERSION}'\n",
        data = flavor.data_file(),
        flavor = flavor.name(),
    );
    // MLflow writes the flavors in name order: `lightgbm` before `python_function`, which is
    // before `xgboost`.
    let flavors = if flavor.name() < "python_function" {
        format!("{}{pyfunc}", flavor.section())
    } else {
        format!("{pyfunc}{}", flavor.section())
    };
    format!(
        "artifact_path: {MODEL_DIR}\n\
         flavors:\n\
         {flavors}\
         is_signature_from_type_hint: false\n\
         mlflow_version: {MLFLOW_FORMAT_VERSION}\n\
         model_size_bytes: {size}\n\
         model_uuid: {uuid}\n\
         run_id: {run_id}\n\
         signature:\n\
         \x20 inputs: {inputs}\n\
         \x20 outputs: {outputs}\n\
         \x20 params: null\n\
         type_hint_from_example: false\n\
         utc_time_created: '{created}'\n",
        inputs = yaml_str(&inputs),
        outputs = yaml_str(outputs),
    )
}

/// A YAML double-quoted scalar. JSON's string escapes (`\"`, `\\`, `\n`, `\uXXXX`) are all
/// valid YAML escapes, so a JSON string literal is one.
fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lightgbm_version_is_what_mlflow_lightgbm_saves_for_a_booster() {
        let mut record = crate::registry::card::tests::record();
        record.model_family = ModelFamily::LightGBM;
        let text = b"tree\nversion=v4\n".to_vec();
        let files = model_files(&record, &text, "run1");
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "MLmodel",
                "model.lgb",
                "requirements.txt",
                "python_env.yaml",
                "conda.yaml"
            ]
        );
        assert_eq!(files[1].1, text);
        let mlmodel = String::from_utf8(files[0].1.clone()).expect("utf-8");
        let lightgbm = mlmodel
            .find("\n  lightgbm:\n")
            .expect("the lightgbm flavor");
        let pyfunc = mlmodel.find("\n  python_function:\n").expect("pyfunc");
        assert!(lightgbm < pyfunc, "flavors in name order: {mlmodel}");
        for line in [
            "    data: model.lgb\n",
            "    model_class: lightgbm.basic.Booster\n",
            "    loader_module: mlflow.lightgbm\n",
        ] {
            assert!(mlmodel.contains(line), "{line} in {mlmodel}");
        }
        assert!(!mlmodel.contains("xgboost"), "{mlmodel}");
        let requirements = String::from_utf8(files[2].1.clone()).expect("utf-8");
        assert!(requirements.contains("lightgbm>=4.0"), "{requirements}");

        // XGBoost keeps its layout: python_function, then xgboost.
        record.model_family = ModelFamily::XGBoost;
        let mlmodel =
            String::from_utf8(model_files(&record, b"{}", "run1")[0].1.clone()).expect("utf-8");
        let pyfunc = mlmodel.find("\n  python_function:\n").expect("pyfunc");
        let xgboost = mlmodel.find("\n  xgboost:\n").expect("the xgboost flavor");
        assert!(pyfunc < xgboost, "{mlmodel}");
        assert!(mlmodel.contains("    data: model.json\n"), "{mlmodel}");
    }

    #[test]
    fn yaml_strings_escape_quotes_and_newlines() {
        assert_eq!(yaml_str(r#"a"b"#), r#""a\"b""#);
        assert_eq!(yaml_str("a\nb"), r#""a\nb""#);
    }
}
