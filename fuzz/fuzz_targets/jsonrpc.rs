//! The gateway's JSON-RPC reader and MCP classification.
//!
//! Besides "no panic": any body is either read or refused with a parse (-32700) or invalid
//! request (-32600) error; a batch never holds more than `MAX_BATCH` items; any request is either
//! classified or refused with invalid params (-32602); and a list filter never adds an item.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_gateway::jsonrpc::{self, Body, Message, MAX_BATCH};
use mandate_gateway::mcp::{self, Call};

fuzz_target!(|data: &[u8]| {
    let messages = match jsonrpc::parse(data) {
        Ok(Body::Single(m)) => vec![Ok(m)],
        Ok(Body::Batch(items)) => {
            assert!(!items.is_empty() && items.len() <= MAX_BATCH);
            items
        }
        Err(e) => {
            assert!(e.code == -32700 || e.code == -32600, "{e}");
            return;
        }
    };
    for m in messages.into_iter().flatten() {
        if let Message::Request(r) = m {
            match mcp::classify(&r) {
                Ok(Call::List(kind)) => {
                    if let Some(mut p) = r.params.clone() {
                        let before = p.to_string().len();
                        mcp::filter_list(kind, &mut p, |n| n.len() % 2 == 0);
                        assert!(p.to_string().len() <= before);
                    }
                }
                Ok(_) => {}
                Err(e) => assert_eq!(e.code, -32602, "{e}"),
            }
        }
    }
});
