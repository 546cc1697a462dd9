const VERSION: &str = "2";
include!("../../deploy-v1/src/common.rs");
