//! Streaming stop-string matching over decoded text.
//!
//! Generated text arrives in pieces that may split a stop string anywhere (token boundaries
//! rarely coincide with it). [`StopMatcher`] holds back the shortest tail of the text that
//! could still grow into a stop string and releases it as soon as it cannot, so callers see
//! the generated text minus the first stop string and everything after it, with no stop
//! string bytes ever emitted.
//!
//! Matching is byte-wise with one Knuth–Morris–Pratt automaton per stop string: O(1)
//! amortised work per byte whatever the stop strings' lengths, and no allocation after the
//! first pieces. Byte matching is exact for UTF-8: both the text and the stop strings are
//! valid UTF-8 and a match always starts on a lead byte, so every emitted prefix ends on a
//! character boundary.
//!
//! "First" is the stop string that *completes* first while the text streams in; when several
//! complete on the same byte, the longest (i.e. the one starting earliest) wins. The text
//! before its start is emitted.

/// One stop string and its KMP state.
struct Pattern {
    bytes: Vec<u8>,
    /// `fail[i]`: length of the longest proper prefix of `bytes[..=i]` that is also a suffix.
    fail: Vec<usize>,
    /// Length of the longest prefix of `bytes` that is a suffix of the text so far.
    state: usize,
}

impl Pattern {
    fn new(s: &str) -> Self {
        let bytes = s.as_bytes().to_vec();
        let mut fail = vec![0; bytes.len()];
        let mut k = 0;
        for i in 1..bytes.len() {
            while k > 0 && bytes.get(i) != bytes.get(k) {
                k = fail.get(k - 1).copied().unwrap_or(0);
            }
            if bytes.get(i) == bytes.get(k) {
                k += 1;
            }
            if let Some(f) = fail.get_mut(i) {
                *f = k;
            }
        }
        Pattern {
            bytes,
            fail,
            state: 0,
        }
    }

    /// Feeds one byte; true when the whole pattern now ends here.
    fn step(&mut self, b: u8) -> bool {
        let mut s = self.state;
        while s > 0 && self.bytes.get(s) != Some(&b) {
            s = self.fail.get(s - 1).copied().unwrap_or(0);
        }
        if self.bytes.get(s) == Some(&b) {
            s += 1;
        }
        self.state = s;
        s == self.bytes.len()
    }
}

/// Filters a stream of text pieces, cutting it before the first stop string.
pub(crate) struct StopMatcher {
    patterns: Vec<Pattern>,
    /// Text not yet released: always exactly the longest partial match (a suffix of the text).
    pending: String,
    matched: bool,
}

impl StopMatcher {
    /// A matcher for `stops` (non-empty strings; empty ones are ignored). With no stop
    /// strings every call is a no-op.
    pub fn new(stops: &[String]) -> Self {
        StopMatcher {
            patterns: stops
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| Pattern::new(s))
                .collect(),
            pending: String::new(),
            matched: false,
        }
    }

    /// Whether a stop string has been found (the matcher then releases nothing more).
    pub fn matched(&self) -> bool {
        self.matched
    }

    /// Replaces `text` (the next piece of the stream) with the text that can be released now.
    /// Returns true when a stop string completed: `text` then holds whatever preceded it and
    /// the stream is over.
    pub fn filter(&mut self, text: &mut String) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        if self.matched {
            text.clear();
            return true;
        }
        let start = self.pending.len();
        self.pending.push_str(text);
        text.clear();
        let mut hit = None;
        for (i, &b) in self.pending.as_bytes().iter().enumerate().skip(start) {
            let mut longest = 0;
            for p in &mut self.patterns {
                if p.step(b) {
                    longest = longest.max(p.bytes.len());
                }
            }
            if longest > 0 {
                hit = Some((i + 1).saturating_sub(longest));
                break;
            }
        }
        let release = match hit {
            Some(stop_start) => {
                self.matched = true;
                stop_start
            }
            None => {
                let held = self.patterns.iter().map(|p| p.state).max().unwrap_or(0);
                self.pending.len() - held
            }
        };
        // `release` is a character boundary (see the module docs); `get` keeps a broken
        // invariant from panicking: it would then hold the text back instead.
        if let Some(out) = self.pending.get(..release) {
            text.push_str(out);
            self.pending.drain(..release);
        }
        if self.matched {
            self.pending.clear();
        }
        self.matched
    }

    /// End of stream without a match: moves the held-back text into `text`.
    pub fn flush(&mut self, text: &mut String) {
        if !self.matched {
            text.push_str(&self.pending);
        }
        self.pending.clear();
        for p in &mut self.patterns {
            p.state = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Runs the matcher over `pieces`; returns the released text and whether it matched.
    fn stream(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = String::new();
        for p in pieces {
            let mut t = p.to_string();
            let stopped = m.filter(&mut t);
            out.push_str(&t);
            if stopped {
                return (out, true);
            }
        }
        let mut t = String::new();
        m.flush(&mut t);
        out.push_str(&t);
        (out, false)
    }

    /// Reference: the earliest end position at which some stop string ends; among those
    /// ending there, the longest.
    fn naive(stops: &[&str], text: &str) -> (String, bool) {
        for end in 1..=text.len() {
            let Some(prefix) = text.as_bytes().get(..end) else {
                continue;
            };
            let best = stops
                .iter()
                .filter(|s| !s.is_empty() && prefix.ends_with(s.as_bytes()))
                .map(|s| s.len())
                .max();
            if let Some(len) = best {
                let cut = &prefix[..end - len];
                return (String::from_utf8(cut.to_vec()).expect("boundary"), true);
            }
        }
        (text.to_owned(), false)
    }

    #[test]
    fn cuts_before_stop_across_pieces() {
        assert_eq!(
            stream(&["END"], &["abc E", "N", "Dxyz"]),
            ("abc ".into(), true)
        );
        assert_eq!(
            stream(&["END"], &["abc EN", "d"]),
            ("abc ENd".into(), false)
        );
        // A stop string entirely inside one piece, with text after it.
        assert_eq!(stream(&["\n\n"], &["a\n\nb"]), ("a".into(), true));
        // At the very start: nothing is released.
        assert_eq!(stream(&["Once"], &["Once upon"]), ("".into(), true));
    }

    #[test]
    fn holds_back_only_possible_starts() {
        let stops = vec!["abc".to_string()];
        let mut m = StopMatcher::new(&stops);
        let mut t = "xxab".to_string();
        assert!(!m.filter(&mut t));
        assert_eq!(t, "xx", "'ab' could start the stop string");
        let mut t = "d".to_string();
        assert!(!m.filter(&mut t));
        assert_eq!(t, "abd", "released once disambiguated");
        let mut t = "a".to_string();
        assert!(!m.filter(&mut t));
        assert_eq!(t, "");
        let mut t = String::new();
        m.flush(&mut t);
        assert_eq!(t, "a", "flushed at the end of the stream");
    }

    #[test]
    fn overlapping_and_multiple_stops() {
        // KMP fallback: "aab" inside "aaab".
        assert_eq!(stream(&["aab"], &["a", "a", "a", "b!"]), ("a".into(), true));
        // "bc" completes before "abcd": it wins.
        assert_eq!(stream(&["abcd", "bc"], &["abcd"]), ("a".into(), true));
        // Same end: the longer (earlier-starting) one wins.
        assert_eq!(stream(&["c", "abc"], &["xab", "c"]), ("x".into(), true));
    }

    #[test]
    fn multibyte_utf8() {
        assert_eq!(
            stream(&["€uro"], &["prix: 5", "€", "ur", "o!"]),
            ("prix: 5".into(), true)
        );
        // Shared lead byte with a different character: released intact.
        assert_eq!(stream(&["€"], &["5", "₤", "x"]), ("5₤x".into(), false));
        assert_eq!(stream(&["é"], &["caf", "é"]), ("caf".into(), true));
    }

    #[test]
    fn no_stops_is_passthrough_and_after_match_nothing_passes() {
        let mut m = StopMatcher::new(&[]);
        let mut t = "anything".to_string();
        assert!(!m.filter(&mut t));
        assert_eq!(t, "anything");
        let mut m = StopMatcher::new(&["x".to_string()]);
        let mut t = "axb".to_string();
        assert!(m.filter(&mut t));
        assert_eq!(t, "a");
        assert!(m.matched());
        let mut t = "more".to_string();
        assert!(m.filter(&mut t));
        assert_eq!(t, "");
        m.flush(&mut t);
        assert_eq!(t, "");
    }

    /// Splits `text` at the given (char-boundary-adjusted) positions.
    fn split_at<'a>(text: &'a str, cuts: &[usize]) -> Vec<&'a str> {
        let mut points: Vec<usize> = cuts
            .iter()
            .map(|&c| {
                let mut c = c % (text.len() + 1);
                while !text.is_char_boundary(c) {
                    c -= 1;
                }
                c
            })
            .collect();
        points.push(0);
        points.push(text.len());
        points.sort_unstable();
        points.dedup();
        points.windows(2).map(|w| &text[w[0]..w[1]]).collect()
    }

    proptest! {
        #[test]
        fn matches_naive_reference(
            // A small alphabet (incl. multi-byte chars) makes matches and near-misses common.
            text in "[ab€é\n]{0,40}",
            stops in proptest::collection::vec("[ab€é\n]{1,5}", 0..=4),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let stops: Vec<&str> = stops.iter().map(String::as_str).collect();
            let pieces = split_at(&text, &cuts);
            prop_assert_eq!(pieces.concat(), text.clone());
            prop_assert_eq!(stream(&stops, &pieces), naive(&stops, &text));
        }

        #[test]
        fn released_text_is_a_prefix_at_every_step(
            text in "[ab€]{0,30}",
            stop in "[ab€]{1,4}",
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            // Whatever is released is final: it is a prefix of the final answer.
            let stops = vec![stop.clone()];
            let (expected, _) = naive(&[stop.as_str()], &text);
            let mut m = StopMatcher::new(&stops);
            let mut out = String::new();
            for p in split_at(&text, &cuts) {
                let mut t = p.to_owned();
                let stopped = m.filter(&mut t);
                out.push_str(&t);
                prop_assert!(expected.starts_with(&out));
                if stopped { break; }
            }
        }
    }
}
