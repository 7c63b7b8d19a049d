//! Read-option query strings (`GET /?...`): never panic; options that parse survive a
//! round trip through `to_query`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xs::ReadOptions;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(o) = ReadOptions::from_query(Some(s)) {
        let q = o.to_query();
        let again = ReadOptions::from_query(Some(&q)).expect("a printed query parses");
        assert_eq!(again, o, "{s:?} printed as {q:?}");
    }
    let _ = xs::read::parse_query(s);
});
