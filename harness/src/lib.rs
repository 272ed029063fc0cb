//! kmbench host harness: config → run plan → VM backend → records → results → compare/report.
pub mod backend;
pub mod build;
pub mod compare;
pub mod config;
pub mod error;
pub mod export;
pub mod host;
pub mod report;
pub mod results;
pub mod run;
pub mod session;
pub mod stats;
pub mod table;
pub mod tlb;
