//! What a completion is about: the 64-bit user_data of every submission,
//! packing the operation kind, the connection slot and that slot's generation
//! (so a completion for a freed-and-reused slot is recognised as stale).

pub use crate::session::Dir;
#[cfg(test)]
use crate::session::{B2C, C2B};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Multishot accept on listener `slot`.
    Accept,
    /// Accept back-off timer for listener `slot` (fd table full).
    AcceptBackoff,
    /// The worker's once-a-second housekeeping timer.
    Tick,
    /// The control thread's eventfd wake-up.
    Wake,
    Connect,
    ConnectTimeout,
    Recv(Dir),
    Send(Dir),
    /// Splice mode: source readable.
    PollIn(Dir),
    /// Splice mode: destination writable.
    PollOut(Dir),
    /// A bandwidth-throttled direction may go on.
    Throttle(Dir),
    Cancel,
}

impl Op {
    fn code(self) -> u64 {
        match self {
            Op::Accept => 1,
            Op::AcceptBackoff => 2,
            Op::Tick => 3,
            Op::Wake => 4,
            Op::Connect => 5,
            Op::ConnectTimeout => 6,
            Op::Cancel => 7,
            Op::Recv(d) => 8 + d as u64,
            Op::Send(d) => 10 + d as u64,
            Op::PollIn(d) => 12 + d as u64,
            Op::PollOut(d) => 14 + d as u64,
            Op::Throttle(d) => 16 + d as u64,
        }
    }

    fn from_code(c: u64) -> Option<Op> {
        Some(match c {
            1 => Op::Accept,
            2 => Op::AcceptBackoff,
            3 => Op::Tick,
            4 => Op::Wake,
            5 => Op::Connect,
            6 => Op::ConnectTimeout,
            7 => Op::Cancel,
            8 | 9 => Op::Recv((c - 8) as Dir),
            10 | 11 => Op::Send((c - 10) as Dir),
            12 | 13 => Op::PollIn((c - 12) as Dir),
            14 | 15 => Op::PollOut((c - 14) as Dir),
            16 | 17 => Op::Throttle((c - 16) as Dir),
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub op: Op,
    /// Connection slot, or listener index for accept operations.
    pub slot: u32,
    /// Generation of the slot (24 bits are kept).
    pub gen: u32,
}

/// Bits of the generation kept: a completion for a slot freed and reused
/// 65,536 times since is mistaken for current, far beyond how long one stays
/// in flight.
pub const GEN_MASK: u32 = 0xffff;
/// Bits of the slot: 16 M connections (or listener ids) per worker.
const SLOT_BITS: u32 = 24;
/// The slot of operations that concern no connection (listener cancels).
pub const NO_SLOT: u32 = (1 << SLOT_BITS) - 1;

impl Token {
    pub fn new(op: Op, slot: u32, gen: u32) -> Token {
        Token {
            op,
            slot,
            gen: gen & GEN_MASK,
        }
    }

    /// Layout: op in bits 0–7, generation in 8–23, slot in 24–47; the bits
    /// above are the ring's (`uring::RESERVED_BITS`).
    pub fn encode(self) -> u64 {
        assert!(
            self.slot < 1 << SLOT_BITS,
            "slot {} out of range",
            self.slot
        );
        let v = (self.slot as u64) << 24 | (self.gen as u64) << 8 | self.op.code();
        debug_assert_eq!(v & crate::uring::RESERVED_BITS, 0);
        v
    }

    pub fn decode(v: u64) -> Option<Token> {
        Some(Token {
            op: Op::from_code(v & 0xff)?,
            slot: ((v >> 24) & ((1 << SLOT_BITS) - 1)) as u32,
            gen: ((v >> 8) & GEN_MASK as u64) as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_op() {
        let ops = [
            Op::Accept,
            Op::AcceptBackoff,
            Op::Tick,
            Op::Wake,
            Op::Connect,
            Op::ConnectTimeout,
            Op::Cancel,
            Op::Recv(C2B),
            Op::Recv(B2C),
            Op::Send(C2B),
            Op::Send(B2C),
            Op::PollIn(C2B),
            Op::PollIn(B2C),
            Op::PollOut(C2B),
            Op::PollOut(B2C),
            Op::Throttle(C2B),
            Op::Throttle(B2C),
        ];
        for op in ops {
            for (slot, gen) in [
                (0, 0),
                (7, 3),
                ((1 << 24) - 1, 0xffff),
                (12345, 0x1_000_001),
            ] {
                let t = Token::new(op, slot, gen);
                assert_eq!(Token::decode(t.encode()), Some(t));
                assert_eq!(t.gen, gen & GEN_MASK);
                assert_eq!(t.encode() & crate::uring::RESERVED_BITS, 0);
            }
        }
        assert_eq!(Token::decode(0), None);
    }
}
