//! Property tests of the pattern builder: any string survives escaping, inside every pattern shape.

use proptest::prelude::*;
use proto_stix::pattern::{regex_escape, string_literal, string_literals};
use proto_stix::{Destination, Observation};

/// Strings rich in what escaping must handle: quotes, backslashes, control and non-ASCII characters.
fn tricky() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(
            prop_oneof![Just('\''), Just('\\'), Just(']'), Just(' '), Just('é'), any::<char>()],
            0..40
        )
        .prop_map(|chars| chars.into_iter().collect()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn literal_round_trips(text in tricky()) {
        let literal = string_literal(&text);
        prop_assert_eq!(string_literals(&literal).unwrap(), vec![text]);
    }

    #[test]
    fn every_shape_carries_its_value_back(text in tricky(), port in any::<u16>()) {
        let simple = [
            Observation::Ipv4Addr(&text),
            Observation::Ipv6Addr(&text),
            Observation::DomainName(&text),
            Observation::Url(&text),
            Observation::UrlMatches(&text),
            Observation::DomainMatches(&text),
        ];
        for observation in simple {
            let pattern = observation.pattern();
            prop_assert!(pattern.starts_with('[') && pattern.ends_with(']'));
            prop_assert_eq!(string_literals(&pattern).unwrap(), vec![text.clone()]);
        }
        for destination in [Destination::Ipv4(&text), Destination::Ipv6(&text), Destination::Domain(&text)] {
            let pattern = Observation::NetworkTraffic { destination, port }.pattern();
            let suffix = format!(" AND network-traffic:dst_port = {port}]");
            prop_assert!(pattern.ends_with(&suffix));
            let expected = vec![destination.object_type().to_owned(), text.clone()];
            prop_assert_eq!(string_literals(&pattern).unwrap(), expected);
        }
    }

    #[test]
    fn escaped_regex_has_no_bare_metacharacter(text in tricky()) {
        let escaped = regex_escape(&text);
        let mut chars = escaped.chars();
        let mut unescaped = String::new();
        while let Some(c) = chars.next() {
            if c == '\\' {
                let next = chars.next();
                prop_assert!(next.is_some_and(|n| "\\^$.|?*+()[]{}".contains(n)), "dangling escape in {}", escaped);
                unescaped.extend(next);
            } else {
                prop_assert!(!"\\^$.|?*+()[]{}".contains(c), "bare {} in {}", c, escaped);
                unescaped.push(c);
            }
        }
        prop_assert_eq!(unescaped, text);
    }
}
