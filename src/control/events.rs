//! A short in-memory history of what happened to backends (health changes,
//! ejections, operator actions, reloads), for the dashboard's timeline and the
//! API. Bounded; written and read on the control thread only.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Most events kept.
pub const CAPACITY: usize = 200;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    /// Unix epoch milliseconds.
    pub time_ms: u64,
    pub pool: String,
    pub backend: String,
    /// up | down | ejected | returned | drain | undrain | disabled | enabled | weight | added | removed | reload
    pub event: &'static str,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct EventLog {
    events: Mutex<VecDeque<Event>>,
}

impl EventLog {
    pub fn push(&self, pool: &str, backend: &str, event: &'static str, detail: impl Into<String>) {
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if events.len() == CAPACITY {
            events.pop_front();
        }
        events.push_back(Event {
            time_ms,
            pool: pool.to_string(),
            backend: backend.to_string(),
            event,
            detail: detail.into(),
        });
    }

    /// Oldest first.
    pub fn recent(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_only_the_most_recent() {
        let log = super::EventLog::default();
        for i in 0..super::CAPACITY + 5 {
            log.push("p", "b", "up", i.to_string());
        }
        let events = log.recent();
        assert_eq!(events.len(), super::CAPACITY);
        assert_eq!(events[0].detail, "5");
    }
}
