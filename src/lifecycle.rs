//! An indicator's life on the platform after it is sent: the edits (pycti's patch operation) that revoke a trail
//! Maltrail removed, un-revoke one it lists again, and keep a listed trail's `valid_until` ahead of now.
//!
//! The platform ignores an upsert's lifecycle fields (`revoked`, `valid_until`, the score) once the same source sent
//! the same score (protocol §8), so these go through its edit path instead: a patch object in the push queue, which
//! the platform's worker applies with pycti's `apply_patch`.
//!
//! **The refresh.** Every indicator is sent with `valid_until` = then + `MALTRAIL_VALIDITY`. Each listed trail
//! owns one slot of a cycle a third of the validity long, at an offset derived from its id (the first eight bytes of
//! its UUIDv5, uniform); a run patches `valid_until` of the trails whose slot passed since the last refresh
//! (`refreshed_through` in the state), at most `MALTRAIL_REFRESH_MAX_PATCHES` of them, earliest slot first. So each
//! listed trail is renewed once a cycle, and a trail keeps at least a cycle of validity after its slot: a refresh
//! falling behind by less than a cycle loses nothing. Nothing is stored per trail: what is due follows from the
//! trail's id and the clock. A run refreshes only once the window reaches a 24th of the cycle (10 hours for the 30
//! days default), since reading the whole trail set costs one archive download on GitHub.
//!
//! **Un-revocation.** A trail an update adds may be one the connector revoked before; its `revoked: false` patch
//! goes out in the next run, so that it never reaches the platform before the indicator it edits (a patch of an
//! unknown id fails). The state holds the ids of the trails the last update added (up to [`REINSTATE_MAX`]); past
//! that, the refresh un-revokes them within a cycle (a future `valid_until` un-revokes, protocol §8).

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use proto_stix::{FieldPatch, Patch, StixId, StixObject, Timestamp};

use crate::convert::{Converter, observation};
use crate::source::{Revision, Source, SourceError};
use crate::trails::parse_file;

/// Trails an update added whose un-revocation the next run sends, at most: their ids live in the state the
/// connector pings every 40 s, so the list stays small (about 40 KB).
pub(crate) const REINSTATE_MAX: usize = 1_000;

/// The patch revoking `indicator` (`revoked` alone: patched with other fields, the platform skips the revocation's
/// side effects, protocol §8).
pub(crate) fn revoke(indicator: StixId) -> StixObject<'static> {
    StixObject::Patch(Patch::of(indicator, vec![FieldPatch::replace("revoked", serde_json::Value::Bool(true))]))
}

/// The patch revoking the relationship `id` from `source` to `target`.
pub(crate) fn revoke_relationship(id: StixId, source: StixId, target: StixId) -> StixObject<'static> {
    StixObject::Patch(Patch::of_relationship(
        id,
        source,
        target,
        vec![FieldPatch::replace("revoked", serde_json::Value::Bool(true))],
    ))
}

/// The patch un-revoking `indicator` (a trail Maltrail lists again).
pub(crate) fn reinstate(indicator: StixId) -> StixObject<'static> {
    StixObject::Patch(Patch::of(indicator, vec![FieldPatch::replace("revoked", serde_json::Value::Bool(false))]))
}

/// The patch moving `indicator`'s `valid_until` to `until`.
pub(crate) fn extend(indicator: StixId, until: Timestamp) -> StixObject<'static> {
    StixObject::Patch(Patch::of(indicator, vec![FieldPatch::replace("valid_until", until.to_string().into())]))
}

/// The refresh cycle of a validity: a third of it, so that a trail refreshed in its slot holds two more cycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cycle {
    millis: i64,
}

impl Cycle {
    pub fn of(validity: Duration) -> Self {
        let validity = i64::try_from(validity.as_millis()).unwrap_or(i64::MAX);
        Self { millis: (validity / 3).max(1) }
    }

    /// The trail's offset in the cycle.
    fn phase(&self, id: StixId) -> i64 {
        let bytes = id.uuid().into_bytes();
        let head = u64::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]]);
        // `millis` is positive, so the remainder fits.
        (head % self.millis as u64) as i64
    }

    /// The first slot of `id` in `(from, to]`, in Unix milliseconds.
    pub fn due(&self, id: StixId, from: i64, to: i64) -> Option<i64> {
        let first = from + 1 + (self.phase(id) - (from + 1)).rem_euclid(self.millis);
        (first <= to).then_some(first)
    }

    /// Whether a window is long enough to refresh: a 24th of the cycle.
    pub fn worth_refreshing(&self, from: i64, to: i64) -> bool {
        to - from >= self.millis / 24
    }

    /// Where the refresh starts after a full import at `now`: a tenth of a cycle later (a day, by default), so that
    /// the platform ingests the import before any of it is patched. Every trail then still holds two cycles.
    pub fn after_full_import(&self, now: Timestamp) -> Timestamp {
        Timestamp::from_unix_millis(now.unix_millis().saturating_add(self.millis / 10))
    }

    /// Where the refresh starts for a state that never recorded one (a connector upgraded to this version): one
    /// refresh's worth before now.
    pub fn first_window(&self, now: Timestamp) -> Timestamp {
        Timestamp::from_unix_millis(now.unix_millis() - self.millis / 24)
    }
}

/// What a run refreshes: the trails due in `(from, through]`, earliest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refresh {
    pub ids: Vec<StixId>,
    /// Where the next refresh starts: the end of the window, or the last slot sent when the bound cut it short.
    pub through: Timestamp,
    /// Trails due in the whole window (more than `ids` when the bound cut it short).
    pub due: u64,
}

/// Picks the trails due in `(from, to]`, at most `max` of them, earliest slot first, from `slots` (a trail's id,
/// any number of times). Cut short, the window ends at the last slot taken whole: trails sharing the first slot
/// left out wait with it.
pub(crate) fn pick_due(
    cycle: Cycle,
    from: Timestamp,
    to: Timestamp,
    max: usize,
    ids: impl IntoIterator<Item = StixId>,
) -> Refresh {
    let (from_ms, to_ms) = (from.unix_millis(), to.unix_millis());
    // (slot, id), the earliest `max + 1` kept: memory follows the bound, not the trail set.
    let mut kept: BTreeSet<(i64, StixId)> = BTreeSet::new();
    let mut counted: HashSet<StixId> = HashSet::new();
    let mut due = 0u64;
    for id in ids {
        let Some(slot) = cycle.due(id, from_ms, to_ms) else { continue };
        if !counted.insert(id) {
            continue;
        }
        due += 1;
        kept.insert((slot, id));
        if kept.len() > max + 1 {
            kept.pop_last();
        }
    }
    if kept.len() <= max {
        return Refresh { ids: kept.into_iter().map(|(_, id)| id).collect(), through: to, due };
    }
    // Over the bound: the first slot left out (and whatever shares it) waits for the next run.
    let (cut, _) = kept.pop_last().unwrap_or((to_ms, StixId::random(proto_stix::ObjectType::Indicator)));
    kept.retain(|(slot, _)| *slot < cut);
    Refresh { ids: kept.into_iter().map(|(_, id)| id).collect(), through: Timestamp::from_unix_millis(cut - 1), due }
}

/// The trails due for a refresh in `(from, to]` at `head`: one pass over the trail set, keeping only the due ones.
pub(crate) async fn plan_refresh(
    source: &Source,
    head: &Revision,
    converter: &Converter,
    cycle: Cycle,
    (from, to): (Timestamp, Timestamp),
    max: usize,
) -> Result<Refresh, SourceError> {
    let mut stream = source.files(head);
    let mut scratch = String::new();
    let (from_ms, to_ms) = (from.unix_millis(), to.unix_millis());
    let mut due_ids: Vec<StixId> = Vec::new();
    let mut files = 0u64;
    while let Some(item) = stream.recv().await {
        let content = item?;
        let Some(file) = parse_file(&content.path, &content.content) else { continue };
        files += 1;
        if !converter.wants(file.category) {
            continue;
        }
        for entry in &file.entries {
            let id = proto_stix::id::indicator_id(&observation(entry, &mut scratch).pattern());
            if cycle.due(id, from_ms, to_ms).is_some() {
                due_ids.push(id);
            }
        }
    }
    if files == 0 {
        return Err(SourceError::Other(format!(
            "{} holds no trail file at {}: nothing to refresh (check MALTRAIL_PATH)",
            source.describe(),
            head.id
        )));
    }
    let refresh = pick_due(cycle, from, to, max, due_ids);
    if refresh.due > refresh.ids.len() as u64 {
        tracing::warn!(
            due = refresh.due,
            sent = refresh.ids.len(),
            "more trails are due for a refresh than MALTRAIL_REFRESH_MAX_PATCHES lets one run send: the rest wait \
             for the next runs (raise it, or shorten CONNECTOR_DURATION_PERIOD, if this lasts)"
        );
    }
    tracing::info!(from = %from, through = %refresh.through, trails = refresh.ids.len(), "trails due for a refresh");
    Ok(refresh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto_stix::ObjectType;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    fn ids(n: usize) -> Vec<StixId> {
        (0..n).map(|i| proto_stix::id::indicator_id(&format!("[domain-name:value = 'trail-{i}.example']"))).collect()
    }

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_unix_millis(millis)
    }

    #[test]
    fn a_trail_is_due_once_per_cycle_at_its_own_offset() {
        let cycle = Cycle::of(Duration::from_secs(30 * 86_400));
        assert_eq!(cycle.millis, 10 * DAY);
        let id = ids(1)[0];
        let start = 1_800_000_000_000;
        let slot = cycle.due(id, start, start + cycle.millis).unwrap();
        assert!(slot > start && slot <= start + cycle.millis);
        assert_eq!(cycle.due(id, slot, slot + cycle.millis), Some(slot + cycle.millis));
        assert_eq!(cycle.due(id, slot - 1, slot), Some(slot), "windows are open at the start, closed at the end");
        assert_eq!(cycle.due(id, slot, slot + cycle.millis - 1), None);
        // Slots spread over the cycle: a tenth of it holds about a tenth of the trails.
        let all = ids(20_000);
        let tenth = all.iter().filter(|id| cycle.due(**id, start, start + cycle.millis / 10).is_some()).count();
        assert!((1_700..2_300).contains(&tenth), "{tenth} of 20000 in a tenth of the cycle");
    }

    #[test]
    fn a_bounded_refresh_takes_the_earliest_slots_and_moves_the_window_to_the_first_left_out() {
        let cycle = Cycle::of(Duration::from_secs(30 * 86_400));
        let all = ids(5_000);
        let (from, to) = (at(1_800_000_000_000), at(1_800_000_000_000 + 10 * DAY));
        let whole = pick_due(cycle, from, to, 10_000, all.iter().copied().chain(all.iter().copied()));
        assert_eq!(whole.ids.len(), 5_000, "each trail once, even listed twice");
        assert_eq!((whole.due, whole.through), (5_000, to));

        let cut = pick_due(cycle, from, to, 1_000, all.iter().copied());
        assert_eq!(cut.ids.len(), 1_000);
        assert_eq!(cut.due, 5_000);
        let slot = |id: &StixId| cycle.due(*id, from.unix_millis(), to.unix_millis()).unwrap();
        assert!(cut.ids.iter().all(|id| slot(id) <= cut.through.unix_millis()));
        let rest: Vec<StixId> = all.iter().copied().filter(|id| !cut.ids.contains(id)).collect();
        assert!(rest.iter().all(|id| slot(id) > cut.through.unix_millis()), "nothing left out behind the window");
        let next = pick_due(cycle, cut.through, to, 10_000, all.iter().copied());
        assert_eq!(next.ids.len(), 4_000, "the next run takes exactly the rest");
    }

    #[test]
    fn a_short_window_waits_for_a_24th_of_the_cycle() {
        let cycle = Cycle::of(Duration::from_secs(30 * 86_400));
        assert!(!cycle.worth_refreshing(0, 9 * HOUR));
        assert!(cycle.worth_refreshing(0, 10 * HOUR));
        let now = at(1_800_000_000_000);
        assert_eq!(cycle.after_full_import(now).unix_millis() - now.unix_millis(), DAY);
        assert!(cycle.worth_refreshing(cycle.first_window(now).unix_millis(), now.unix_millis()));
    }

    /// A year of hourly runs, the connector's rule applied to a trail set that changes: every listed trail always
    /// holds (its `valid_until` ahead of every run), and no run patches more than the bound. Scaled down from the
    /// real set (1.6 million trails, 50,000 patches) by 100, the ratio kept.
    #[test]
    fn over_a_year_of_hourly_runs_every_listed_trail_stays_valid_within_the_bound() {
        let validity = 30 * DAY;
        let cycle = Cycle::of(Duration::from_millis(validity as u64));
        let max = 500;
        let mut listed: std::collections::HashMap<StixId, i64> = std::collections::HashMap::new();
        let start = 1_800_000_000_000;
        // The full import: every trail sent, valid for the validity.
        for id in ids(16_000) {
            listed.insert(id, start + validity);
        }
        let mut refreshed_through = cycle.after_full_import(at(start)).unix_millis();
        let mut added = 0usize;
        let (mut refresh_runs, mut most) = (0, 0);
        for hour in 1..=365 * 24 {
            // A run a few minutes late or early, as a scheduler is.
            let now = start + hour * HOUR + (hour * 7_919 % 600) * 1_000;
            for (id, until) in &listed {
                assert!(*until > now, "{id} lapsed at hour {hour}");
            }
            // Maltrail's churn: a few trails added (sent, valid for the validity), a few removed, every day.
            if hour % 24 == 0 {
                let removed: Vec<StixId> = listed.keys().take(20).copied().collect();
                removed.iter().for_each(|id| {
                    listed.remove(id);
                });
                for _ in 0..40 {
                    let id = StixId::random(ObjectType::Indicator);
                    listed.insert(id, now + validity);
                    added += 1;
                }
            }
            if !cycle.worth_refreshing(refreshed_through, now) {
                continue;
            }
            let refresh = pick_due(cycle, at(refreshed_through), at(now), max, listed.keys().copied());
            assert!(refresh.ids.len() <= max);
            most = most.max(refresh.ids.len());
            refresh_runs += 1;
            for id in &refresh.ids {
                listed.insert(*id, now + validity);
            }
            refreshed_through = refresh.through.unix_millis();
        }
        assert!(added > 10_000 && refresh_runs > 700, "{added} added, {refresh_runs} refresh runs");
        assert!(most > 0);
    }

    /// The patch messages a run publishes (client mode: one patch each; platform mode: a batch), as pycti's importer
    /// will read them.
    fn patch_messages() -> Vec<(&'static str, serde_json::Value)> {
        use opencti_connector::send::Splitter;
        let indicator = proto_stix::id::indicator_id("[domain-name:value = 'evil.example']");
        let family = proto_stix::id::malware_id("Emotet");
        let relationship = proto_stix::id::relationship_id("indicates", &indicator, &family);
        let until = Timestamp::parse_rfc3339("2027-01-01T00:00:00.000Z").unwrap();
        let pieces = |splitter: &mut Splitter, patches: Vec<StixObject<'static>>| {
            let mut out = Vec::new();
            patches.into_iter().for_each(|patch| splitter.group(vec![patch], &mut out));
            splitter.finish(&mut out);
            out.into_iter().map(|piece| serde_json::from_slice(&piece.bundle).unwrap()).collect::<Vec<_>>()
        };
        let client = |patch| pieces(&mut Splitter::client(), vec![patch]).remove(0);
        let others: Vec<StixId> =
            (1..=2).map(|n| proto_stix::id::indicator_id(&format!("[ipv4-addr:value = '192.0.2.{n}']"))).collect();
        let batch = pieces(
            &mut Splitter::platform(50_000, 1 << 20),
            vec![revoke(others[0]), reinstate(others[1]), extend(indicator, until)],
        );
        assert_eq!(batch.len(), 1);
        vec![
            ("revoke", client(revoke(indicator))),
            ("revoke relationship", client(revoke_relationship(relationship, indicator, family))),
            ("reinstate", client(reinstate(indicator))),
            ("extend", client(extend(indicator, until))),
            ("platform batch", batch.into_iter().next().unwrap()),
        ]
    }

    /// pycti's importer (the platform's worker) applies each patch message as the platform's edit of the object:
    /// `tools/vectors/check_patches.py` ran it over these very messages (`tests/data/pycti_patch_vectors.json`).
    #[test]
    fn pycti_applies_the_patches_as_edits() {
        let messages = patch_messages();
        if let Ok(path) = std::env::var("WRITE_PATCH_MESSAGES") {
            let out: Vec<_> =
                messages.iter().map(|(name, bundle)| serde_json::json!({"name": name, "bundle": bundle})).collect();
            std::fs::write(path, serde_json::to_vec_pretty(&out).unwrap()).unwrap();
            return;
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pycti_patch_vectors.json");
        let vectors: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let vectors = vectors["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), messages.len());
        let without_id = |bundle: &serde_json::Value| {
            let mut bundle = bundle.clone();
            bundle.as_object_mut().unwrap().remove("id");
            bundle
        };
        let edit = |method: &str, id: StixId, key: &str, value: serde_json::Value| {
            serde_json::json!({"method": method, "id": id.to_string(),
                "input": [{"key": key, "value": [value], "operation": "replace"}]})
        };
        let indicator = proto_stix::id::indicator_id("[domain-name:value = 'evil.example']");
        let family = proto_stix::id::malware_id("Emotet");
        let relationship = proto_stix::id::relationship_id("indicates", &indicator, &family);
        let ip = |n: u8| proto_stix::id::indicator_id(&format!("[ipv4-addr:value = '192.0.2.{n}']"));
        let until = serde_json::json!("2027-01-01T00:00:00.000Z");
        let expected = [
            vec![edit("indicator.update_field", indicator, "revoked", true.into())],
            vec![edit("stix_core_relationship.update_field", relationship, "revoked", true.into())],
            vec![edit("indicator.update_field", indicator, "revoked", false.into())],
            vec![edit("indicator.update_field", indicator, "valid_until", until.clone())],
            vec![
                edit("indicator.update_field", ip(1), "revoked", true.into()),
                edit("indicator.update_field", ip(2), "revoked", false.into()),
                edit("indicator.update_field", indicator, "valid_until", until),
            ],
        ];
        for (((name, bundle), vector), calls) in messages.iter().zip(vectors).zip(expected) {
            assert_eq!(vector["name"], *name);
            assert_eq!(
                without_id(&vector["bundle"]),
                without_id(bundle),
                "{name}: the message changed since pycti ran"
            );
            assert_eq!(vector["calls"], serde_json::Value::Array(calls), "{name}: pycti's edits");
            assert_eq!(vector["other_calls"], serde_json::json!([]), "{name}: nothing but the edit");
            assert_eq!(vector["errors"], serde_json::json!([]), "{name}");
        }
    }
}
