const VERSION: &str = "1";
include!("common.rs");
