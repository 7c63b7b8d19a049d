//! The `xs-meta` header (base64 of JSON): any bytes decode or give a 400, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = xs_server::api::decode_meta(data) {
        assert_eq!(e.status.as_u16(), 400);
        assert!(!e.message.contains('\n'));
    }
});
