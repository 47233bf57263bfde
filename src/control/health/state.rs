//! Health hysteresis as a pure state machine (STYLE.md rule 7): `rise`
//! consecutive good probes bring a down backend up, `fall` consecutive bad ones
//! take an up backend down; anything in between changes nothing. Separate from
//! the operator's drain/disable flags. No clock, no I/O.

/// A change of a backend's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    WentUp,
    WentDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    up: bool,
    /// Consecutive results that disagree with the current state.
    streak: u32,
    /// No probe has been seen yet: the first one decides alone.
    unprobed: bool,
}

impl Hysteresis {
    pub fn new(up: bool) -> Hysteresis {
        Hysteresis {
            up,
            streak: 0,
            unprobed: false,
        }
    }

    /// A backend added while running: down (no traffic on trust) until its
    /// first probe, which decides at once instead of after `rise` good ones.
    pub fn unprobed() -> Hysteresis {
        Hysteresis {
            up: false,
            streak: 0,
            unprobed: true,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Records one probe result; returns the transition it caused, if any.
    pub fn observe(&mut self, ok: bool, rise: u32, fall: u32) -> Option<Transition> {
        if std::mem::take(&mut self.unprobed) && ok {
            self.up = true;
            self.streak = 0;
            return Some(Transition::WentUp);
        }
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { fall } else { rise };
        if self.streak < needed.max(1) {
            return None;
        }
        self.up = ok;
        self.streak = 0;
        Some(if ok {
            Transition::WentUp
        } else {
            Transition::WentDown
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_added_backend_is_down_until_its_first_good_probe() {
        let mut h = Hysteresis::unprobed();
        assert!(!h.is_up());
        assert_eq!(h.observe(true, 3, 3), Some(Transition::WentUp));
        assert!(h.is_up());
        // A first probe that fails leaves it down, and then `rise` applies.
        let mut h = Hysteresis::unprobed();
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(true, 2, 3), None);
        assert_eq!(h.observe(true, 2, 3), Some(Transition::WentUp));
    }

    #[test]
    fn falls_after_fall_failures_and_rises_after_rise_successes() {
        let mut h = Hysteresis::new(true);
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), Some(Transition::WentDown));
        assert!(!h.is_up());
        assert_eq!(h.observe(true, 2, 3), None);
        assert_eq!(h.observe(true, 2, 3), Some(Transition::WentUp));
    }

    #[test]
    fn an_interrupted_streak_starts_over() {
        let mut h = Hysteresis::new(true);
        h.observe(false, 2, 3);
        h.observe(false, 2, 3);
        assert_eq!(h.observe(true, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), None);
        assert!(h.is_up());
    }

    proptest! {
        /// State only changes after `rise`/`fall` agreeing results in a row,
        /// and transitions alternate.
        #[test]
        fn transitions_need_a_full_streak(results in proptest::collection::vec(any::<bool>(), 0..200), rise in 1u32..5, fall in 1u32..5) {
            let mut h = Hysteresis::new(true);
            let mut run: (bool, u32) = (true, 0);
            let mut last: Option<Transition> = None;
            for ok in results {
                run = if run.0 == ok { (ok, run.1 + 1) } else { (ok, 1) };
                let before = h.is_up();
                if let Some(t) = h.observe(ok, rise, fall) {
                    prop_assert_ne!(Some(t), last);
                    last = Some(t);
                    prop_assert_eq!(h.is_up(), ok);
                    let needed = if before { fall } else { rise };
                    prop_assert!(run.1 >= needed);
                } else {
                    prop_assert_eq!(h.is_up(), before);
                }
            }
        }
    }
}
