//! Per-server round-trip time estimate and retransmission timeout, as TCP
//! computes it (RFC 6298) and Unbound keeps it in its infra cache: a
//! smoothed RTT and its mean deviation, a timeout of SRTT + 4·RTTVAR kept
//! between a floor and a ceiling, doubled when a query is lost and
//! recomputed from the estimate at the next answer.
//!
//! No clock and no I/O: samples and losses come in as durations.

use std::time::Duration;

/// The timeout before a server has answered anything: Unbound's
/// `UNKNOWN_SERVER_NICENESS`, long enough for a recursive upstream on
/// another continent, short enough that a silent first server costs well
/// under a second.
pub(crate) const INITIAL_TIMEOUT: Duration = Duration::from_millis(376);

/// Round-trip estimate of one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rtt {
    /// Smoothed round-trip time, once measured.
    smoothed: Option<Duration>,
    /// Mean deviation of the samples (RTTVAR).
    variance: Duration,
    /// Current retransmission timeout, backed off on loss, before clamping.
    timeout: Duration,
    floor: Duration,
    ceiling: Duration,
}

impl Rtt {
    /// An unmeasured server whose timeouts stay within `floor..=ceiling`
    /// (a floor above the ceiling is lowered to it).
    pub(crate) fn new(floor: Duration, ceiling: Duration) -> Self {
        let floor = floor.min(ceiling);
        Self {
            smoothed: None,
            variance: Duration::ZERO,
            timeout: INITIAL_TIMEOUT.clamp(floor, ceiling),
            floor,
            ceiling,
        }
    }

    /// How long to wait for an answer before asking again.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout.clamp(self.floor, self.ceiling)
    }

    /// The smoothed round-trip time, once measured.
    pub(crate) fn smoothed(&self) -> Option<Duration> {
        self.smoothed
    }

    /// The mean deviation of the round-trip time (zero until measured).
    pub(crate) fn variance(&self) -> Duration {
        self.variance
    }

    /// An answer came `sample` after its query was sent. RFC 6298 §2: the
    /// first sample sets SRTT = R and RTTVAR = R/2; later ones move RTTVAR
    /// a quarter and SRTT an eighth of the way. The timeout is recomputed,
    /// which also undoes any backoff.
    pub(crate) fn answered(&mut self, sample: Duration) {
        match self.smoothed {
            None => {
                self.smoothed = Some(sample);
                self.variance = sample / 2;
            }
            Some(smoothed) => {
                let deviation = smoothed.abs_diff(sample);
                self.variance = self.variance - self.variance / 4 + deviation / 4;
                self.smoothed = Some(smoothed - smoothed / 8 + sample / 8);
            }
        }
        let smoothed = self.smoothed.unwrap_or(sample);
        self.timeout = (smoothed + self.variance.saturating_mul(4)).clamp(self.floor, self.ceiling);
    }

    /// A query sent with timeout `used` got no answer in time: double the
    /// timeout (RFC 6298 §5.5). As in Unbound's `rtt_lost`, the doubling is
    /// of the timeout that query used, not of the current one, so many
    /// queries timing out together back off once rather than once each; and
    /// a timeout an answer has lowered below `used` meanwhile is left alone.
    pub(crate) fn lost(&mut self, used: Duration) {
        if self.timeout() < used {
            return;
        }
        self.timeout = self.timeout.max(used.saturating_mul(2)).min(self.ceiling);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn rtt() -> Rtt {
        Rtt::new(50 * MS, 2000 * MS)
    }

    #[test]
    fn unmeasured_servers_wait_the_initial_timeout_within_the_bounds() {
        assert_eq!(rtt().timeout(), INITIAL_TIMEOUT);
        assert_eq!(Rtt::new(50 * MS, 200 * MS).timeout(), 200 * MS);
        assert_eq!(Rtt::new(500 * MS, 2000 * MS).timeout(), 500 * MS);
        // A floor above the ceiling gives way to it: the fixed per-try timeout.
        assert_eq!(Rtt::new(3000 * MS, 2000 * MS).timeout(), 2000 * MS);
        assert_eq!(rtt().smoothed(), None);
    }

    #[test]
    fn samples_follow_rfc_6298() {
        let mut rtt = rtt();
        rtt.answered(100 * MS);
        // SRTT = R, RTTVAR = R/2, RTO = SRTT + 4·RTTVAR.
        assert_eq!((rtt.smoothed(), rtt.variance(), rtt.timeout()), (Some(100 * MS), 50 * MS, 300 * MS));
        rtt.answered(180 * MS);
        // RTTVAR = 3/4·50 + 1/4·|100 − 180| = 57.5; SRTT = 7/8·100 + 1/8·180 = 110.
        assert_eq!(rtt.variance(), Duration::from_micros(57_500));
        assert_eq!(rtt.smoothed(), Some(110 * MS));
        assert_eq!(rtt.timeout(), 340 * MS);
    }

    #[test]
    fn a_fast_steady_server_gets_the_floor() {
        let mut rtt = rtt();
        for _ in 0..40 {
            rtt.answered(Duration::from_micros(300));
        }
        assert_eq!(rtt.timeout(), 50 * MS);
        assert!(rtt.smoothed().unwrap() < MS);
    }

    #[test]
    fn a_slow_steady_server_converges_just_above_its_rtt() {
        let mut rtt = rtt();
        for sample in (0..30).map(|i| (300 + i % 3) * MS) {
            rtt.answered(sample);
        }
        let timeout = rtt.timeout();
        assert!(timeout > 300 * MS && timeout < 320 * MS, "{timeout:?}");
    }

    #[test]
    fn losses_double_the_timeout_up_to_the_ceiling_and_an_answer_undoes_it() {
        let mut rtt = rtt();
        for _ in 0..20 {
            rtt.answered(MS);
        }
        assert_eq!(rtt.timeout(), 50 * MS);
        rtt.lost(50 * MS);
        assert_eq!(rtt.timeout(), 100 * MS);
        rtt.lost(100 * MS);
        assert_eq!(rtt.timeout(), 200 * MS);
        for _ in 0..10 {
            rtt.lost(rtt.timeout());
        }
        assert_eq!(rtt.timeout(), 2000 * MS, "never past the ceiling");
        rtt.answered(MS);
        assert_eq!(rtt.timeout(), 50 * MS, "recomputed from the estimate");
    }

    #[test]
    fn queries_lost_together_back_off_once() {
        let mut rtt = rtt();
        for _ in 0..20 {
            rtt.answered(MS);
        }
        // Ten queries sent with a 50 ms timeout all time out.
        for _ in 0..10 {
            rtt.lost(50 * MS);
        }
        assert_eq!(rtt.timeout(), 100 * MS);
        // A loss reported against a timeout an answer has since lowered is ignored.
        let mut lowered = rtt;
        lowered.answered(MS);
        lowered.lost(100 * MS);
        assert_eq!(lowered.timeout(), 50 * MS);
    }
}
