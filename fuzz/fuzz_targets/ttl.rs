//! TTL parsing: never panics; a TTL that parses prints back to an equal TTL, also as JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xs::Ttl;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = s.parse::<Ttl>() {
        let printed = t.to_string();
        assert_eq!(printed.parse::<Ttl>().expect("a printed TTL parses"), t);
        let json = serde_json::to_string(&t).expect("a TTL serializes");
        assert_eq!(
            serde_json::from_str::<Ttl>(&json).expect("and deserializes"),
            t
        );
        // Expiry arithmetic saturates instead of overflowing.
        let _ = t.expires_at(u64::MAX);
    }
});
