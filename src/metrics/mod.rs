//! The Prometheus exposition: every metric name and help text (`names`) and
//! the rendering of the counters (`crate::counters`, which workers write) and
//! the snapshot's gauges at scrape time.

pub mod names;
mod render;

pub use render::render;

#[cfg(test)]
mod tests;
