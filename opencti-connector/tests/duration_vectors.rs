//! Every duration pydantic parsed (tools/vectors/generate_durations.py → tests/data/pydantic_duration_vectors.json)
//! must come out of `parse_duration` the same, every period pycti computed out of `pycti_period`, and
//! `CONNECTOR_DURATION_PERIOD` must accept what pycti accepts with the same meaning (refusing only booleans and
//! negative periods, which pycti takes as a one-second period and back-to-back runs).

use opencti_connector::settings::{DurationError, Period, SettingValue, parse_duration, pycti_period};
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pydantic_duration_vectors.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).expect("vectors are a JSON list")
}

/// The exact integer of a JSON number: beyond 64 bits only with serde_json's `arbitrary_precision`, else `None`.
fn exact_integer(number: &serde_json::Number) -> Option<i128> {
    number
        .as_i64()
        .map(i128::from)
        .or_else(|| number.as_u64().map(i128::from))
        .or_else(|| number.to_string().parse().ok())
}

#[test]
fn pydantic_duration_vectors() {
    let vectors = vectors();
    assert!(vectors.len() >= 100, "only {} duration vectors", vectors.len());
    let (mut accepted, mut negative, mut refused) = (0, 0, 0);
    for v in &vectors {
        let text = v["input"].as_str().unwrap_or_else(|| panic!("vector lacks `input`: {v}"));
        let got = parse_duration(text);
        match (&v["microseconds"], v["error"].as_str()) {
            (Value::Number(expected), None) => {
                let expected_f64 = expected.as_f64().expect("a number");
                let seconds = v["seconds"].as_f64().unwrap_or_else(|| panic!("vector lacks `seconds`: {v}"));
                assert!(
                    (seconds - expected_f64 / 1e6).abs() <= 1e-6 * seconds.abs().max(1.0),
                    "{text:?}: seconds {seconds} and microseconds {expected} disagree"
                );
                if expected_f64 < 0.0 {
                    assert_eq!(got, Err(DurationError::Negative), "{text:?}: pydantic gives {seconds} s");
                    negative += 1;
                    continue;
                }
                let micros = got.unwrap_or_else(|e| panic!("{text:?}: pydantic gives {seconds} s, we refuse: {e:?}"));
                let micros = micros.as_micros();
                match exact_integer(expected) {
                    Some(exact) => assert_eq!(i128::try_from(micros).ok(), Some(exact), "{text:?}"),
                    // Beyond 64 bits without arbitrary_precision: as close as the parsed float.
                    None => assert!(
                        (micros as f64 - expected_f64).abs() <= expected_f64 * 1e-15,
                        "{text:?}: {micros} µs, pydantic {expected_f64}"
                    ),
                }
                accepted += 1;
            }
            (Value::Null, Some(error)) => {
                let message = v["message"].as_str().unwrap_or(error);
                match got {
                    Ok(duration) => panic!("{text:?}: pydantic refuses it ({message}), we give {duration:?}"),
                    Err(DurationError::Negative) => panic!("{text:?}: pydantic refuses it ({message}), not negative"),
                    Err(_) => {}
                }
                refused += 1;
            }
            _ => panic!("vector has neither a value nor an error: {v}"),
        }
        match &v["pycti_seconds"] {
            Value::Number(seconds) => {
                let seconds = seconds.as_i64().expect("whole seconds");
                if seconds < 0 {
                    assert_eq!(pycti_period(text), Err(DurationError::Negative), "{text:?}: pycti gives {seconds} s");
                } else {
                    let period =
                        pycti_period(text).unwrap_or_else(|e| panic!("{text:?}: pycti gives {seconds} s: {e:?}"));
                    assert_eq!(
                        period,
                        std::time::Duration::from_secs(seconds.unsigned_abs()),
                        "{text:?}: pycti period"
                    );
                }
            }
            Value::Null => {
                assert!(pycti_period(text).is_err(), "{text:?}: pycti refuses it, we give {:?}", pycti_period(text))
            }
            other => panic!("{text:?}: pycti_seconds is {other}"),
        }
        // The setting itself: pycti's meaning, except for booleans and negative periods, which it refuses.
        let setting = Period::parse(text, "").map(Period::as_duration);
        let boolean = ["yes", "true", "True", "no", "false", "False"].contains(&text);
        match (pycti_period(text), boolean) {
            (_, true) => assert!(setting.is_err(), "{text:?}: a boolean is refused"),
            (Ok(period), false) => assert_eq!(setting, Ok(period), "{text:?}: CONNECTOR_DURATION_PERIOD"),
            (Err(_), false) => assert!(setting.is_err(), "{text:?}: refused as pycti refuses it"),
        }
    }
    assert!(
        accepted >= 50 && negative >= 5 && refused >= 50,
        "{accepted} accepted, {negative} negative, {refused} refused"
    );
}
