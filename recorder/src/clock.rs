//! Record timestamps (`shm-layout.md`, 8.5): the x86 time stamp counter
//! where the kernel itself trusts it, CLOCK_REALTIME through the vDSO
//! elsewhere, and the calibration that turns counter ticks into wall time.
//!
//! `rdtsc` costs ~13 ns here against ~27 ns for `clock_gettime`, and an
//! append reads the clock once per record. The counter is used only when
//! the kernel's clocksource is `tsc` (the kernel picks it only when it is
//! invariant and synchronised across CPUs) and the CPU reports an invariant
//! TSC; the choice is made once per process.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU8, Ordering};

use crate::layout::{CLOCK_REALTIME_NS, CLOCK_SHIFT, CLOCK_TSC};
use crate::sys::realtime_ns;

/// What a ring's record timestamps count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// CLOCK_REALTIME nanoseconds (`CLOCK_REALTIME_NS`).
    Realtime,
    /// Time stamp counter ticks (`CLOCK_TSC`), calibrated in the header.
    Tsc,
}

impl Clock {
    /// The best clock this machine offers: [`Clock::Tsc`] where it is safe,
    /// else [`Clock::Realtime`].
    pub fn best() -> Clock {
        // 0 unknown, 1 realtime, 2 tsc. Relaxed: a cache of a fact that
        // does not change; a race only repeats the check.
        static BEST: AtomicU8 = AtomicU8::new(0);
        match BEST.load(Ordering::Relaxed) {
            1 => Clock::Realtime,
            2 => Clock::Tsc,
            _ => {
                let clock = if tsc_is_trusted() {
                    Clock::Tsc
                } else {
                    Clock::Realtime
                };
                BEST.store(if clock == Clock::Tsc { 2 } else { 1 }, Ordering::Relaxed);
                clock
            }
        }
    }

    /// The `CLOCK` code of the layout.
    pub fn code(self) -> u32 {
        match self {
            Clock::Realtime => CLOCK_REALTIME_NS,
            Clock::Tsc => CLOCK_TSC,
        }
    }

    /// Reads the clock: a timestamp in this clock's unit.
    #[inline]
    pub fn now(self) -> u64 {
        match self {
            Clock::Realtime => realtime_ns(),
            Clock::Tsc => ticks(),
        }
    }
}

/// The time stamp counter (0 where there is none).
#[inline]
fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions on x86_64 (every x86_64 CPU
        // has it); it reads a register and touches no memory.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Whether the kernel's clocksource is the TSC and the CPU says it is
/// invariant (CPUID 0x8000_0007, EDX bit 8).
fn tsc_is_trusted() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let source = std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .unwrap_or_default();
        if source.trim() != "tsc" {
            return false;
        }
        let max_ext = core::arch::x86_64::__cpuid(0x8000_0000).eax;
        max_ext >= 0x8000_0007 && core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A (ticks, CLOCK_REALTIME ns) pair read back to back: the ticks are the
/// midpoint of two reads around the wall clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pair {
    pub(crate) ticks: u64,
    pub(crate) ns: u64,
}

impl Pair {
    pub(crate) fn now() -> Pair {
        let before = ticks();
        let ns = realtime_ns();
        let after = ticks();
        Pair {
            ticks: before + (after.wrapping_sub(before)) / 2,
            ns,
        }
    }
}

/// Nanoseconds per tick between two pairs, as the layout's fixed point
/// (`2^CLOCK_SHIFT`), rounded; 0 if the pairs cannot give one.
pub(crate) fn mult(a: Pair, b: Pair) -> u64 {
    let (Some(dt), Some(dn)) = (b.ticks.checked_sub(a.ticks), b.ns.checked_sub(a.ns)) else {
        return 0;
    };
    if dt == 0 {
        return 0;
    }
    let m = ((dn as u128) << CLOCK_SHIFT) + dt as u128 / 2;
    u64::try_from(m / dt as u128).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::tsc_to_unix_ns;

    #[test]
    fn a_calibration_turns_ticks_into_wall_time() {
        let a = Pair {
            ticks: 1_000_000,
            ns: 1_700_000_000_000_000_000,
        };
        // 3 GHz: 3 ticks per ns.
        let b = Pair {
            ticks: 1_000_000 + 3_000_000_000,
            ns: a.ns + 1_000_000_000,
        };
        let m = mult(a, b);
        // The multiplier is rounded to 2^-32 ns per tick: over 3e9 ticks
        // that is at most a nanosecond.
        let near = |x: u64, y: u64| x.abs_diff(y) <= 1;
        assert_eq!(tsc_to_unix_ns(b.ticks, b.ticks, b.ns, m), b.ns);
        assert!(near(tsc_to_unix_ns(a.ticks, b.ticks, b.ns, m), a.ns));
        assert!(near(
            tsc_to_unix_ns(b.ticks + 3_000, b.ticks, b.ns, m),
            b.ns + 1_000
        ));
        assert_eq!(mult(b, a), 0);
    }

    #[test]
    fn the_best_clock_reads_forward() {
        let clock = Clock::best();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
        assert!(a > 0);
    }
}
