//! Server-sent events (the HTML Living Standard's `text/event-stream`), as far as the gateway
//! needs them: to read a whole (bounded) stream an MCP server answered a list request with, filter
//! the JSON-RPC messages in it, and write it back. Streams that are passed through untouched are
//! never parsed.

/// One event: its fields in order (`data` lines joined with `\n` as the standard says).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// `id:`.
    pub id: Option<String>,
    /// `event:`.
    pub event: Option<String>,
    /// `retry:`.
    pub retry: Option<String>,
    /// The data, or none for an event that had no `data` line (a comment or a priming event).
    pub data: Option<String>,
}

/// Reads a whole stream into events (lines end with CRLF, LF or CR; comments are dropped).
pub fn parse(text: &str) -> Vec<Event> {
    let mut out = vec![];
    let mut cur = Event::default();
    let mut seen = false;
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    for line in text.split('\n') {
        if line.is_empty() {
            if seen {
                out.push(std::mem::take(&mut cur));
                seen = false;
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        seen = true;
        match field {
            "data" => {
                cur.data = Some(match cur.data.take() {
                    Some(d) => format!("{d}\n{value}"),
                    None => value.to_string(),
                })
            }
            "id" => cur.id = Some(value.to_string()),
            "event" => cur.event = Some(value.to_string()),
            "retry" => cur.retry = Some(value.to_string()),
            _ => {}
        }
    }
    if seen {
        out.push(cur);
    }
    out
}

/// Writes events back as a stream.
pub fn write(events: &[Event]) -> String {
    let mut s = String::new();
    for e in events {
        if let Some(id) = &e.id {
            s.push_str(&format!("id: {id}\n"));
        }
        if let Some(ev) = &e.event {
            s.push_str(&format!("event: {ev}\n"));
        }
        if let Some(r) = &e.retry {
            s.push_str(&format!("retry: {r}\n"));
        }
        match &e.data {
            Some(d) => {
                for line in d.split('\n') {
                    s.push_str(&format!("data: {line}\n"));
                }
            }
            None if e.id.is_none() && e.event.is_none() && e.retry.is_none() => continue,
            None => {}
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_multi_line_data_ids_and_skips_comments() {
        let ev = parse(
            ": hello\r\nid: 7\r\nevent: message\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata:x\n\n",
        );
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].id.as_deref(), Some("7"));
        assert_eq!(ev[0].data.as_deref(), Some("{\"a\":\n1}"));
        assert_eq!(ev[1].data.as_deref(), Some("x"));
    }

    #[test]
    fn a_priming_event_with_only_an_id_is_kept() {
        let ev = parse("id: abc\ndata:\n\n");
        assert_eq!(ev[0].data.as_deref(), Some(""));
        assert_eq!(write(&ev), "id: abc\ndata: \n\n");
    }

    proptest! {
        #[test]
        fn writing_then_reading_gives_the_same_events(
            items in proptest::collection::vec(("[a-z0-9]{0,8}", "[ -~]{0,40}"), 0..6)
        ) {
            let events: Vec<Event> = items
                .into_iter()
                .map(|(id, data)| Event { id: Some(id), event: Some("message".into()), retry: None, data: Some(data) })
                .collect();
            let back = parse(&write(&events));
            // A data value's leading space is eaten by the one the writer adds: compare that way.
            prop_assert_eq!(back.len(), events.len());
            for (a, b) in back.iter().zip(&events) {
                prop_assert_eq!(&a.id, &b.id);
                prop_assert_eq!(a.data.as_deref(), b.data.as_deref());
            }
        }
    }
}
