//! Topic names and topic filters: never panic; a filter that parses prints back to itself,
//! and what it matches is consistent with its patterns.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xs::TopicFilter;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if xs::validate_topic(s).is_ok() {
        assert!(!s.is_empty() && s.len() <= 255 && !s.ends_with('.') && !s.contains(".."));
        let exact = TopicFilter::parse(s).expect("a valid topic is a valid filter");
        assert!(exact.matches(s));
        let below = TopicFilter::parse(&format!("{s}.*")).expect("topic.* is a valid filter");
        assert!(!below.matches(s));
        assert!(below.matches(&format!("{s}.x")));
    }
    if let Ok(f) = TopicFilter::parse(s) {
        let printed = f.to_string();
        let again = TopicFilter::parse(&printed).expect("a printed filter parses");
        assert_eq!(again, f, "{s:?} printed as {printed:?}");
    }
});
