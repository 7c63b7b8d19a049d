//! Frame JSON as `POST /import` receives it: never panics; a frame that parses serializes to
//! JSON that parses back to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xs::Frame;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = Frame::from_json(data) {
        let json = f.to_json();
        let again = Frame::from_json(&json).expect("a serialized frame parses");
        assert_eq!(again, f);
        let mut out = Vec::new();
        xs::frame::write_json(&mut out, &json, &f.id, true);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("with timestamp is JSON");
        assert!(v["timestamp"].is_string());
    }
});
