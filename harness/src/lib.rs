//! kmbench host harness: config → run plan → VM backend → records → results → compare/report.
pub mod compare;
pub mod export;
pub mod report;
pub mod results;
pub mod run;
