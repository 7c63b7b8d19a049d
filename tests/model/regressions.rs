//! Shrunk counterexamples the model test found, kept as named tests. Each one failed before
//! the fix named in its doc comment.

use super::*;

fn append(topic: usize, ttl: TtlSpec) -> AppendSpec {
    AppendSpec {
        topic,
        ttl,
        len: 10,
        seed: 0,
        meta: None,
        expect: None,
        key: None,
    }
}

/// `last:n` depended on group commit: a batch applied the n of its newest `last:n` append
/// to every frame of the topic in the batch, so `[ab last:3, ab forever]` after two stored
/// frames kept 3 instead of 4. Fixed: the writer trims as if the batch's appends were made
/// one by one (`plan_trims`).
#[test]
fn last_n_in_one_batch_is_applied_in_order() {
    Harness::run(
        super::local,
        &[
            Op::Append(append(5, TtlSpec::Forever)),
            Op::Append(append(5, TtlSpec::Forever)),
            Op::AppendBatch(vec![
                append(5, TtlSpec::Last(3)),
                append(5, TtlSpec::Forever),
                append(0, TtlSpec::Last(1)),
                append(0, TtlSpec::Last(2)),
            ]),
            Op::AppendBatch(vec![
                append(5, TtlSpec::Last(1)),
                append(5, TtlSpec::Forever),
                append(5, TtlSpec::Last(3)),
            ]),
        ],
    );
}

/// An imported frame with an id at Unix time 0 and `time:0` got expiry time 0, which the
/// on-disk format reads as "never expires": it was served forever. Fixed: `Ttl::expires_at`
/// is never 0.
#[test]
fn expired_import_at_epoch_zero_stays_expired() {
    Harness::run(
        super::local,
        &[
            Op::Import(ImportSpec {
                id: IdPick::Old(0),
                topic: 0,
                ttl: Some(TtlSpec::Expired),
                hash: HashPick::None,
                meta: None,
            }),
            Op::Sweep,
            Op::Restart { clean: true },
        ],
    );
}

/// Importing the largest id (`f5lxx1zz5pnorynqglhzmsp33`) made the next append overflow the
/// id counter: the writer thread panicked and the store took no more writes. Fixed: imports
/// of ids within 2^64 of the largest are refused as invalid.
#[test]
fn import_of_the_largest_id_is_refused_and_appends_go_on() {
    Harness::run(
        super::local,
        &[
            Op::Import(ImportSpec {
                id: IdPick::Max(0),
                topic: 0,
                ttl: None,
                hash: HashPick::None,
                meta: None,
            }),
            Op::Append(append(0, TtlSpec::Forever)),
            Op::Append(append(0, TtlSpec::Forever)),
        ],
    );
}

/// A `time:0` frame swept in the millisecond it was appended was hidden from reads (expired:
/// `now >= expires_at`) but not removed by the sweep (which took `expires_at < now`).
/// Fixed: the sweep includes `now`.
#[test]
fn sweep_removes_what_reads_hide() {
    Harness::run(
        super::local,
        &[
            Op::Append(append(1, TtlSpec::Expired)),
            Op::Sweep,
            Op::Append(append(1, TtlSpec::Expired)),
            Op::Append(append(2, TtlSpec::Expired)),
            Op::Sweep,
        ],
    );
}

/// A purge of an expired frame left its content in the JetStream backend (the frame is
/// invisible to reads, so the purge did not see its content): an import naming the content
/// was taken. Fixed: a purge looks the frame up expired or not (`Local::lookup_any`).
#[cfg(feature = "nats")]
#[test]
fn jetstream_purge_of_an_expired_frame_drops_its_content() {
    if nats::urls().is_none() {
        return;
    }
    let mut a = append(0, TtlSpec::Expired);
    a.len = 1;
    Harness::run(
        super::jetstream,
        &[
            Op::Append(a),
            Op::Purge(Some(0)),
            Op::Import(ImportSpec {
                id: IdPick::Existing(6941666403302558),
                topic: 1,
                ttl: None,
                hash: HashPick::Known(15853230896127190590),
                meta: None,
            }),
        ],
    );
}

/// A purged object stays in the object store as an entry marked deleted, and the JetStream
/// backend took that entry for the object: an import naming purged large content was taken
/// (found by the model under load), and appending the same content again did not upload it,
/// leaving a frame whose content no other daemon could fetch. Fixed: a deleted entry is no
/// object (`Inner::object`).
#[cfg(feature = "nats")]
#[test]
fn jetstream_purged_large_content_is_gone_and_comes_back_when_appended_again() {
    if nats::urls().is_none() {
        return;
    }
    let mut big = append(0, TtlSpec::Forever);
    big.len = 20_000;
    let import = ImportSpec {
        id: IdPick::Fresh,
        topic: 1,
        ttl: None,
        hash: HashPick::Known(0),
        meta: None,
    };
    Harness::run(
        super::jetstream,
        &[
            Op::Append(big.clone()),
            Op::Purge(Some(0)),
            Op::Import(import.clone()),
            Op::Append(big),
            Op::Restart { clean: true },
            Op::Import(import),
            Op::Get(0),
        ],
    );
}
