include!("../build-support/xgboost_rpath.rs");

fn main() {
    xgboost_rpath();
}
