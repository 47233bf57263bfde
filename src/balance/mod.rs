//! Backend selection. One small trait, one module per algorithm: `pick` runs on
//! the data path for every new connection and must not lock or allocate; an
//! algorithm's state is built on the control thread when a snapshot is built
//! (that is its `rebuild`). Workers never match on the algorithm.

mod round_robin;

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::Algorithm;
use crate::control::snapshot::Backend;

pub use round_robin::RoundRobin;

/// What a pick may look at besides the pool itself.
#[derive(Debug, Clone, Copy)]
pub struct PickContext {
    /// The client's address, for hashing algorithms.
    pub client: Option<IpAddr>,
}

/// A backend selection algorithm over one pool's backends.
pub trait Balancer: Send + Sync {
    /// Chooses the index of a backend for which `eligible` is true, or `None`
    /// when no backend qualifies.
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize>;
}

/// Builds the selector for a pool's current membership (control thread only).
pub fn build(algorithm: Algorithm, _backends: &[Arc<Backend>]) -> Box<dyn Balancer> {
    match algorithm {
        Algorithm::RoundRobin => Box::new(RoundRobin::new()),
    }
}
