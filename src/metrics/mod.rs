//! The Prometheus exposition: every metric's name, type, help text and label
//! keys (`names`), the writer that spells a family out in the text format
//! (`family`), and what is said at scrape time from the counters
//! (`crate::counters`, which workers write) and the snapshot's gauges
//! (`render`). Nothing here runs on the data path.

mod family;
pub mod names;
mod render;

pub use render::{render, Reloads};

#[cfg(test)]
mod tests;
