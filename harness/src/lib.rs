//! kmbench host harness: config → run plan → VM backend → records → results → compare/report.
pub mod analysis;
pub mod backend;
pub mod build;
pub mod compare;
pub mod config;
pub mod error;
pub mod export;
pub mod format;
pub mod host;
pub mod noise;
pub mod report;
pub mod results;
pub mod run;
pub mod run_dir;
pub mod safe_fs;
pub mod session;
pub mod stats;
