//! Summaries of repeated measurements, and round trips counted from the emulator's log.

use std::time::Instant;

use alibabakms_emulator::RecordedRequest;

/// Median and spread of repeated samples.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Summary {
        assert!(!samples.is_empty(), "no samples");
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        } else {
            sorted[mid]
        };
        Summary {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }

    /// `12.3 (11.9–14.0)`, with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = digits
        )
    }

    /// The median alone, or `a–b` when runs disagree (request counts should not).
    pub fn show_count(&self) -> String {
        if self.min == self.max {
            format!("{}", self.median)
        } else {
            format!("{}–{}", self.min, self.max)
        }
    }
}

/// Sequential round trips: the most requests of one call that lie strictly one after another
/// (no two overlapping in time). Requests sent in parallel count once.
pub fn round_trips(requests: &[RecordedRequest]) -> usize {
    let mut spans: Vec<(Instant, Instant)> = requests
        .iter()
        .map(|r| (r.received_at, r.answered_at))
        .collect();
    // Interval scheduling: take the one that ends first, then the next that starts after it.
    spans.sort_by_key(|&(_, end)| end);
    let mut count = 0;
    let mut last_end: Option<Instant> = None;
    for (start, end) in spans {
        if last_end.is_none_or(|e| start >= e) {
            count += 1;
            last_end = Some(end);
        }
    }
    count
}

/// How long at least one of the call's requests was in the emulator's hands (the union of
/// their arrive-to-answer intervals): time the plugin could only wait.
pub fn server_busy(requests: &[RecordedRequest]) -> std::time::Duration {
    let mut spans: Vec<(Instant, Instant)> = requests
        .iter()
        .map(|r| (r.received_at, r.answered_at))
        .collect();
    spans.sort_by_key(|&(start, _)| start);
    let mut busy = std::time::Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (start, end) in spans {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                busy += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((s, e)) = current {
        busy += e - s;
    }
    busy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(start_ms: u64, end_ms: u64, base: Instant) -> RecordedRequest {
        let at = |ms| base + std::time::Duration::from_millis(ms);
        RecordedRequest {
            connection: 1,
            method: "POST".into(),
            path_and_query: "/".into(),
            action: "A".into(),
            params: Default::default(),
            headers: Vec::new(),
            status: 200,
            code: None,
            request_id: String::new(),
            server_canonical_request: None,
            fault: None,
            connected_at: base,
            received_at: at(start_ms),
            answered_at: at(end_ms),
        }
    }

    #[test]
    fn parallel_requests_are_one_round_trip_and_their_overlap_counts_once() {
        let t = Instant::now();
        // Two at once (0–20, 1–21), then one after both (22–42).
        let log = [request(0, 20, t), request(1, 21, t), request(22, 42, t)];
        assert_eq!(round_trips(&log), 2);
        assert_eq!(server_busy(&log), std::time::Duration::from_millis(41));
        assert_eq!(round_trips(&[]), 0);
        assert_eq!(server_busy(&[]), std::time::Duration::ZERO);
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(Summary::of(&[3.0, 1.0, 2.0]).median, 2.0);
        assert_eq!(Summary::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        let s = Summary::of(&[5.0, 1.0, 9.0]);
        assert_eq!((s.min, s.max), (1.0, 9.0));
    }
}
