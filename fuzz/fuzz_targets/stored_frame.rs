//! Frame values as stored on disk (`store::codec`): any bytes decode to a frame or a
//! `Corrupt` error, never a panic; an encoded frame decodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xs::local::codec;
use xs::{Frame, Id};

fuzz_target!(|data: &[u8]| {
    let id = Id::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    if let Ok(v) = codec::decode_frame_value(&id, data) {
        let _ = v.is_expired(xs::frame::now_ms());
    }
    if let Ok(f) = codec::decode_frame(&id, data) {
        let json = f.to_json();
        let value = codec::encode_frame(&f, &json);
        let again: Frame = codec::decode_frame(&f.id, &value).expect("an encoded frame decodes");
        assert_eq!(again, f);
    }
    let _ = codec::id_from_key(data);
    let _ = codec::id_from_topic_key(data);
});
