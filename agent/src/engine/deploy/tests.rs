//! The lifecycle's rules, one test each.
use super::*;
use alloc::vec::Vec;

fn offer(force: bool) -> Offered<'static> {
    Offered { id: 7, priority: 5, force, pack_loc: "h/download" }
}

/// Drive `d` with the answers `f` gives, collecting actions until it is over.
fn run(d: &mut Deployment, mut f: impl FnMut(&mut Deployment, &Action)) -> Vec<Action> {
    let mut seen = Vec::new();
    for _ in 0..100 {
        let _ = d.poll_record();
        let Some(a) = d.poll_action() else { break };
        f(d, &a);
        seen.push(a);
    }
    seen
}

#[test]
fn a_package_goes_from_offer_to_its_final_status_and_installing_is_saved_before_the_run() {
    let mut d = Deployment::offered(None, &offer(false), false, false, 100, Retry::Backoff(3)).unwrap();
    let mut installing_saved = false;
    let seen = run(&mut d, |d, a| match a {
        Action::FetchMetadata { fresh } => {
            assert!(fresh);
            d.handle_metadata(Ok(()));
            assert_eq!(d.poll_record().map(|r| r.phase), Some(Phase::Fetching));
        }
        Action::CheckSpace => d.handle_space(None),
        Action::Fetch => d.handle_fetch(Fetched::Complete, 100, 0),
        Action::Unpack => d.handle_unpacked(None, 100),
        Action::Ask => {
            d.handle_answer(Answer::Proceed);
            installing_saved = d.poll_record().is_some_and(|r| r.phase == Phase::Installing);
        }
        Action::Run => d.handle_outcome(StatusCode::Success),
        _ => {}
    });
    assert!(installing_saved);
    assert_eq!(seen.last(), Some(&Action::Finish(StatusCode::Success)));
    assert!(d.is_over());
}

#[test]
fn already_installed_queued_or_under_way_is_not_deployed_again() {
    let mut d = Deployment::offered(None, &offer(false), true, false, 1, Retry::Schedule).unwrap();
    assert_eq!(d.poll_action(), Some(Action::Finish(StatusCode::SuccessAlreadySetup)));
    let forced = Deployment::offered(None, &offer(true), true, false, 1, Retry::Schedule);
    assert!(forced.is_some_and(|mut d| d.poll_action() == Some(Action::FetchMetadata { fresh: true })));
    let mut rec = Deployment::offered(None, &offer(false), false, false, 1, Retry::Schedule).unwrap().rec;
    rec.phase = Phase::Finished;
    assert!(Deployment::offered(Some(rec.clone()), &offer(false), false, true, 1, Retry::Schedule).is_none());
    rec.phase = Phase::Fetching;
    assert!(Deployment::offered(Some(rec), &offer(false), false, false, 1, Retry::Schedule).is_none());
}

#[test]
fn the_crash_rule_an_interrupted_action_is_reported_not_run_again() {
    let mut rec = Deployment::offered(None, &offer(false), false, false, 1, Retry::Schedule).unwrap().rec;
    rec.phase = Phase::Installing;
    let mut d = Deployment::recovered(rec.clone(), Retry::Backoff(5)).unwrap();
    assert_eq!(d.poll_action(), Some(Action::Finish(StatusCode::ErrDoneFailed)));
    rec.phase = Phase::Fetching;
    let mut d = Deployment::recovered(rec.clone(), Retry::Backoff(5)).unwrap();
    assert_eq!(d.poll_action(), Some(Action::FetchMetadata { fresh: false }));
    rec.phase = Phase::Finished;
    assert!(Deployment::recovered(rec, Retry::Backoff(5)).is_none());
}

#[test]
fn out_of_space_is_reported_once_per_download() {
    let mut d = Deployment::offered(None, &offer(false), false, false, 1, Retry::Backoff(3)).unwrap();
    let _ = d.poll_action();
    d.handle_metadata(Ok(()));
    let _ = d.poll_action();
    d.handle_space(Some("needs 9 bytes".into()));
    assert_eq!(d.poll_action(), Some(Action::ReportOnce(StatusCode::ErrOutOfSpace)));
    assert!(matches!(d.poll_action(), Some(Action::Later(_))));
    let rec = d.poll_record().unwrap();
    assert!(rec.space_reported);
    // The next run: still full, nothing reported again.
    let mut d = Deployment::recovered(rec, Retry::Backoff(3)).unwrap();
    let _ = d.poll_action();
    d.handle_metadata(Ok(()));
    let _ = d.poll_action();
    d.handle_fetch(Fetched::OutOfSpace("full".into()), 1, 0); // ignored: not fetching yet
    d.handle_space(Some("still".into()));
    assert!(matches!(d.poll_action(), Some(Action::Later(_))));
    assert_eq!(d.poll_action(), None);
}

#[test]
fn failed_tries_back_off_within_the_run_or_go_to_the_schedule() {
    let fetching = |retry| {
        let mut d = Deployment::offered(None, &offer(false), false, false, 1, retry).unwrap();
        let _ = d.poll_action();
        d.handle_metadata(Ok(()));
        let _ = d.poll_action();
        d.handle_space(None);
        assert_eq!(d.poll_action(), Some(Action::Fetch));
        assert!(d.poll_record().is_some(), "saved before fetching");
        d
    };
    let mut d = fetching(Retry::Backoff(3));
    let mut waits = 0;
    for _ in 0..3 {
        d.handle_fetch(Fetched::Failed("503".into()), 1, 0);
        match d.poll_action() {
            Some(Action::Wait { .. }) => {
                waits += 1;
                assert_eq!(d.poll_action(), Some(Action::Fetch));
            }
            Some(Action::Later(why)) => assert_eq!(why, "503"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(waits, 2, "three tries: two waits, then a later run");
    // Progress resets the count.
    let mut d = fetching(Retry::Backoff(2));
    d.handle_fetch(Fetched::Failed("x".into()), 1, 0);
    assert!(matches!(d.poll_action(), Some(Action::Wait { .. })));
    let _ = d.poll_action();
    d.handle_fetch(Fetched::Progress(Some(1)), 1, 0);
    assert_eq!(d.record().fragments_verified, 1);
    assert_eq!(d.poll_record(), None, "not a record write per fragment");
    assert_eq!(d.poll_action(), Some(Action::Fetch));
    d.handle_fetch(Fetched::Failed("x".into()), 1, 0);
    assert!(matches!(d.poll_action(), Some(Action::Wait { .. })));
    // OCS: the scheduler counts.
    let mut d = fetching(Retry::Schedule);
    d.handle_fetch(Fetched::Failed("404".into()), 1, 0);
    assert_eq!(d.poll_action(), Some(Action::Failed("404".into())));
}

#[test]
fn an_unsigned_archive_that_does_not_match_is_fetched_again_until_the_deadline() {
    let at_unpack = |rec: Option<PackageRecord>, retry| {
        let mut d = match rec {
            Some(r) => Deployment::recovered(r, retry).unwrap(),
            None => Deployment::offered(None, &offer(false), false, false, 1, retry).unwrap(),
        };
        let _ = d.poll_action();
        d.handle_metadata(Ok(()));
        let _ = d.poll_action();
        d.handle_space(None);
        let _ = d.poll_action();
        d.handle_fetch(Fetched::Complete, 1, 0);
        let _ = d.poll_action();
        d.handle_space(None);
        assert_eq!(d.poll_action(), Some(Action::Unpack));
        d
    };
    // Signed fragments: the archive not matching is final.
    let mut d = at_unpack(None, Retry::Backoff(3));
    d.handle_unpacked(Some(StatusCode::ErrBadDigest), 1);
    assert_eq!(d.poll_action(), Some(Action::Finish(StatusCode::ErrBadDigest)));
    // OCS: again at later runs, until a day of mismatches.
    let mut d = at_unpack(None, Retry::Schedule);
    let mut now = 1_000;
    let mut runs = 0;
    loop {
        d.handle_unpacked(Some(StatusCode::ErrBadDigest), now);
        match d.poll_action() {
            Some(Action::Later(_)) => {
                let rec = d.poll_record().unwrap();
                assert_eq!(rec.fragments_verified, 0);
                d = at_unpack(Some(rec), Retry::Schedule);
            }
            Some(Action::Finish(StatusCode::ErrBadDigest)) => break,
            other => panic!("{other:?}"),
        }
        runs += 1;
        assert!(runs < 100, "never gave up");
        now += 3 * 3600;
    }
    assert!(runs >= 9 && now >= 1_000 + super::super::limits::DIGEST_GIVE_UP_SECS, "{runs} runs");
}
