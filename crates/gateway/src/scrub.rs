//! The credentials the gateway injected, taken back out of what an upstream answers.
//!
//! An upstream is sent its own key (a header, or a stdio child's environment) and should never
//! show it to anyone; one that does (an error page quoting the key it was given, a debug tool that
//! prints its environment) would hand it to the agent the gateway keeps it from. So every answer
//! of an upstream given credentials has each injected value, byte for byte, replaced with
//! `[redacted]`, including in streams, where a value may be split across chunks.
//!
//! A stream holds back only what could still be the start of a value (the longest end of what it
//! has that begins one), so an event stream's events, which end in line breaks no credential
//! holds, pass at once. Values shorter than [`MIN_SCRUBBED_LEN`] bytes are not scrubbed: they would
//! match ordinary text, and are not credentials anyone should use. A value the upstream transforms
//! (encodes, splits with escapes) is not recognised: this is a net under a well-behaved upstream,
//! not a filter for a hostile one.

/// Shortest injected value that is scrubbed from answers.
pub const MIN_SCRUBBED_LEN: usize = 8;

/// What a scrubbed value is replaced with.
pub const REPLACEMENT: &[u8] = b"[redacted]";

/// The values to scrub from one answer, and what a stream holds back.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    /// Longest first, so that a value containing another is replaced whole.
    secrets: Vec<Vec<u8>>,
    /// Each value's KMP failure table: what a stream holds back is found in time linear in the
    /// value's length (a secret file may be 64 KiB), never quadratic.
    failures: Vec<Vec<usize>>,
    carry: Vec<u8>,
}

impl Scrubber {
    /// A scrubber of `values` (those shorter than [`MIN_SCRUBBED_LEN`] are left out).
    pub fn new(values: impl IntoIterator<Item = Vec<u8>>) -> Self {
        let mut secrets: Vec<Vec<u8>> = values
            .into_iter()
            .filter(|v| v.len() >= MIN_SCRUBBED_LEN)
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        let failures = secrets.iter().map(|v| failure_table(v)).collect();
        Scrubber {
            secrets,
            failures,
            carry: Vec::new(),
        }
    }

    /// Whether there is nothing to scrub.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// A whole answer, scrubbed.
    pub fn whole(&self, body: &[u8]) -> Vec<u8> {
        replace_all(body, &self.secrets)
    }

    /// The next chunk of a stream: what can be passed on now (the rest is held back until the
    /// next chunk shows whether it starts a value).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.secrets.is_empty() {
            return chunk.to_vec();
        }
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(chunk);
        let mut out = replace_all(&buf, &self.secrets);
        let keep = self.held_back(&out);
        self.carry = out.split_off(out.len() - keep);
        out
    }

    /// The end of a stream: whatever was held back.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.carry)
    }

    /// How many bytes at the end of `buf` could be the start of a value: for each value, the
    /// longest of its proper prefixes that `buf` ends with (KMP over the last bytes of `buf`).
    fn held_back(&self, buf: &[u8]) -> usize {
        self.secrets
            .iter()
            .zip(&self.failures)
            .map(|(s, fail)| {
                let tail = &buf[buf.len().saturating_sub(s.len() - 1)..];
                let mut k = 0;
                for &b in tail {
                    while k > 0 && s[k] != b {
                        k = fail[k - 1];
                    }
                    if s[k] == b {
                        k += 1;
                    }
                    // A whole value was replaced already; only a proper prefix can remain.
                    if k == s.len() {
                        k = fail[k - 1];
                    }
                }
                k
            })
            .max()
            .unwrap_or(0)
    }
}

/// KMP's failure table of `s`: entry `i` is the length of the longest proper prefix of
/// `s[..=i]` that is also its suffix.
fn failure_table(s: &[u8]) -> Vec<usize> {
    let mut fail = vec![0; s.len()];
    let mut k = 0;
    for i in 1..s.len() {
        while k > 0 && s[i] != s[k] {
            k = fail[k - 1];
        }
        if s[i] == s[k] {
            k += 1;
        }
        fail[i] = k;
    }
    fail
}

impl Scrubber {
    /// Scrubs every string of a JSON value, member names included (a stdio child's answers
    /// arrive as values). Depth is bounded by the JSON reader's nesting limit.
    pub fn value(&self, v: &mut serde_json::Value) {
        use serde_json::Value;
        if self.secrets.is_empty() {
            return;
        }
        let scrub = |s: &str| -> Option<String> {
            let out = replace_all(s.as_bytes(), &self.secrets);
            // Only whole values are replaced, so what was UTF-8 stays UTF-8.
            (out != s.as_bytes()).then(|| String::from_utf8_lossy(&out).into_owned())
        };
        match v {
            Value::String(s) => {
                if let Some(c) = scrub(s) {
                    *s = c;
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.value(x)),
            Value::Object(o) => {
                let dirty: Vec<String> = o.keys().filter(|k| scrub(k).is_some()).cloned().collect();
                for k in dirty {
                    if let (Some(x), Some(c)) = (o.remove(&k), scrub(&k)) {
                        o.insert(c, x);
                    }
                }
                o.values_mut().for_each(|x| self.value(x));
            }
            _ => {}
        }
    }
}

/// `buf` with every occurrence of each of `secrets` (longest first) replaced.
fn replace_all(buf: &[u8], secrets: &[Vec<u8>]) -> Vec<u8> {
    let mut cur = buf.to_vec();
    for s in secrets {
        let finder = memchr::memmem::Finder::new(s);
        if finder.find(&cur).is_none() {
            continue;
        }
        let mut next = Vec::with_capacity(cur.len());
        let mut at = 0;
        for i in finder.find_iter(&cur) {
            // Matches do not overlap: find_iter resumes after each one.
            next.extend_from_slice(&cur[at..i]);
            next.extend_from_slice(REPLACEMENT);
            at = i + s.len();
        }
        next.extend_from_slice(&cur[at..]);
        cur = next;
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &str = "sk-live-0123456789abcdef";

    fn scrubber() -> Scrubber {
        Scrubber::new([KEY.as_bytes().to_vec(), b"short".to_vec()])
    }

    fn streamed(s: &mut Scrubber, chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![];
        for c in chunks {
            out.extend(s.push(c));
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn an_injected_value_is_replaced_wherever_it_appears() {
        let body = format!("{{\"error\":\"bad key {KEY}\",\"again\":\"{KEY}{KEY}\"}}");
        let out = String::from_utf8(scrubber().whole(body.as_bytes())).unwrap();
        assert_eq!(
            out,
            "{\"error\":\"bad key [redacted]\",\"again\":\"[redacted][redacted]\"}"
        );
        // Values under the minimum length are left alone.
        assert_eq!(scrubber().whole(b"a short text"), b"a short text");
    }

    #[test]
    fn a_value_split_across_chunks_is_still_replaced() {
        let (a, b) = KEY.split_at(7);
        let mut s = scrubber();
        let first = s.push(format!("data: key={a}").as_bytes());
        // What could be the start of the key is held back; the rest passes.
        assert_eq!(first, b"data: key=");
        let out = streamed(&mut s, &[format!("{b}\n\n").as_bytes()]);
        assert_eq!(out, b"[redacted]\n\n");
    }

    #[test]
    fn an_event_that_ends_in_line_breaks_passes_at_once() {
        let mut s = scrubber();
        let event = b"event: message\ndata: {\"jsonrpc\":\"2.0\"}\n\n";
        assert_eq!(s.push(event), event.to_vec());
        assert!(s.finish().is_empty());
    }

    #[test]
    fn a_held_back_start_that_was_not_a_value_is_passed_on() {
        let mut s = scrubber();
        assert_eq!(
            streamed(&mut s, &[b"ends with sk-li", b"ving"]),
            b"ends with sk-living"
        );
        let mut s = scrubber();
        assert_eq!(streamed(&mut s, &[b"ends with sk-li"]), b"ends with sk-li");
    }

    #[test]
    fn a_json_answer_is_scrubbed_in_its_strings_and_member_names() {
        let mut v = serde_json::json!({"result": {"content": [{"type": "text", "text": format!("env: KEY={KEY}")}],
                                       KEY: 1, "n": 7}});
        scrubber().value(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"result": {"content": [{"type": "text", "text": "env: KEY=[redacted]"}],
                               "[redacted]": 1, "n": 7}})
        );
    }

    #[test]
    fn nothing_to_scrub_passes_everything_through() {
        let mut s = Scrubber::new(Vec::<Vec<u8>>::new());
        assert!(s.is_empty());
        assert_eq!(s.push(b"sk-"), b"sk-");
    }

    proptest! {
        /// What a stream holds back is the longest end of it that starts a value (the simple
        /// definition, checked against the linear-time one), with values that repeat themselves.
        #[test]
        fn the_held_back_end_is_the_longest_that_starts_a_value(
            secret in "[ab]{8,14}",
            buf in "[ab]{0,30}",
        ) {
            let sc = Scrubber::new([secret.as_bytes().to_vec()]);
            let (s, b) = (secret.as_bytes(), buf.as_bytes());
            let simple = (1..s.len().min(b.len() + 1))
                .rev()
                .find(|&l| b.ends_with(&s[..l]))
                .unwrap_or(0);
            prop_assert_eq!(sc.held_back(b), simple);
        }

        /// However an answer is cut into chunks, the stream carries exactly the whole answer
        /// scrubbed, and never the value.
        #[test]
        fn chunking_never_changes_the_scrubbed_answer(
            parts in proptest::collection::vec(
                prop_oneof![Just(KEY.to_string()), "[a-z :{}\"\\n-]{0,12}", Just("sk-live-".to_string())],
                0..12,
            ),
            cuts in proptest::collection::vec(0usize..400, 0..8),
        ) {
            let body: Vec<u8> = parts.concat().into_bytes();
            let whole = scrubber().whole(&body);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
            cuts.sort_unstable();
            let mut chunks: Vec<&[u8]> = vec![];
            let mut at = 0;
            for c in cuts {
                chunks.push(&body[at..c]);
                at = c;
            }
            chunks.push(&body[at..]);
            let out = streamed(&mut scrubber(), &chunks);
            prop_assert_eq!(&out, &whole);
            prop_assert!(memchr::memmem::find(&out, KEY.as_bytes()).is_none());
        }
    }
}
