use super::*;
use crate::ids::ClassSecret;

fn key() -> ObjectKey {
    ObjectKey { class: "c".into(), id: ClassSecret::random().new_unique_id() }
}

/// A holder that gives its permit back when asked, as an actor drops its instance.
fn hold(residency: &Arc<Residency>, permit: Permit, control: Arc<ActorControl>) {
    let residency = residency.clone();
    tokio::spawn(async move {
        control.shed.notified().await;
        drop(permit);
        drop(residency);
    });
}

async fn admit_holder(residency: &Arc<Residency>) -> Arc<ActorControl> {
    let control = Arc::new(ActorControl::default());
    let permit = residency.admit(&key(), &control, false, 1).await.expect("a permit");
    hold(residency, permit, control.clone());
    control
}

#[tokio::test]
async fn lowering_the_bound_takes_free_permits_then_those_the_least_recent_holders_give_back() {
    let residency = Arc::new(Residency::new(64, |c| &c.shed));
    for _ in 0..40 {
        admit_holder(&residency).await;
    }
    assert_eq!((residency.limit(), residency.held()), (64, 40));
    // 24 free permits go at once, then 8 of the 40 holders are asked to give theirs back.
    residency.lower_to(32, Duration::from_secs(5)).await;
    assert_eq!((residency.limit(), residency.held()), (32, 32));
    // Full at the lowered bound: a newcomer takes the place of the least recently used.
    admit_holder(&residency).await;
    assert_eq!((residency.limit(), residency.held()), (32, 32));
    // Never under the minimum.
    residency.lower_to(0, Duration::from_secs(5)).await;
    assert_eq!((residency.limit(), residency.held()), (MIN_INSTANCES, MIN_INSTANCES));
    // Raised back, newcomers add to the holders again, up to the configured bound.
    residency.raise_to(1000);
    assert_eq!(residency.limit(), 64);
    for _ in 0..10 {
        admit_holder(&residency).await;
    }
    assert_eq!(residency.held(), MIN_INSTANCES + 10);
}

#[tokio::test]
async fn holders_that_do_not_give_their_permits_back_leave_the_bound_lowered_only_as_far_as_it_could() {
    let residency = Arc::new(Residency::new(32, |c| &c.shed));
    let mut kept = Vec::new();
    for _ in 0..32 {
        let control = Arc::new(ActorControl::default());
        kept.push(residency.admit(&key(), &control, false, 1).await.unwrap());
    }
    residency.lower_to(16, Duration::from_millis(50)).await;
    // Nobody gave a permit back within the patience: the bound is what it was.
    assert_eq!((residency.limit(), residency.held()), (32, 32));
    kept.truncate(20);
    residency.lower_to(16, Duration::from_millis(50)).await;
    assert_eq!((residency.limit(), residency.held()), (20, 20));
}

#[tokio::test]
async fn a_holder_of_several_memories_takes_a_permit_for_each_and_the_least_recent_make_room_for_it() {
    let residency = Arc::new(Residency::new(16, |c| &c.shed));
    let mut first = Vec::new();
    for _ in 0..16 {
        first.push(admit_holder(&residency).await);
    }
    assert_eq!((residency.held(), residency.holders()), (16, 16));
    // A holder of two memories needs two permits: the two least recently used give theirs up.
    let control = Arc::new(ActorControl::default());
    let permit = residency.admit(&key(), &control, false, 2).await.expect("permits");
    hold(&residency, permit, control);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!((residency.held(), residency.holders()), (16, 15));
    // The others kept theirs: the bound counts memories, not holders.
    for _ in 0..3 {
        let control = Arc::new(ActorControl::default());
        let permit = residency.admit(&key(), &control, false, 8).await.expect("permits");
        hold(&residency, permit, control);
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!((residency.held(), residency.holders()), (16, 2), "two of eight memories fit in 16");
    // A weight past what the bound may fall to is held to it, so it can always be met.
    let control = Arc::new(ActorControl::default());
    let permit = residency.admit(&key(), &control, false, 1000).await.expect("permits");
    assert_eq!((residency.held(), residency.holders()), (16, 1));
    drop(permit);
    assert_eq!((residency.held(), residency.holders()), (0, 0));
    drop(first);
}
