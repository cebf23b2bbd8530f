//! The conformance suite: every backend must pass every case here.
//!
//! A backend's test file implements [`Harness`] and expands
//! `conformance_suite!(make_harness())`, which turns every case below into a
//! `#[tokio::test]`. Cases take the harness by value so each runs on a fresh,
//! empty store.
#![allow(dead_code)]

pub mod cases;
pub mod props;

use async_trait::async_trait;
use lockwal::LockStore;
use std::sync::Arc;

/// Opens and restarts one store of a backend.
#[async_trait]
pub trait Harness: Send + 'static {
    /// Opens the store; the first call gives an empty store.
    async fn open(&mut self) -> Arc<dyn LockStore>;

    /// Restarts: `store` is the only handle left; the harness drops it (as a
    /// crash would, unless the case called `close` first) and opens the same
    /// store again.
    async fn reopen(&mut self, store: Arc<dyn LockStore>) -> Arc<dyn LockStore>;

    /// Restarts so that the next incarnation loads the state from a
    /// snapshot: a backend with snapshots (WAL) reopens, compacts and
    /// reopens again; the others just reopen.
    async fn reopen_from_snapshot(&mut self, store: Arc<dyn LockStore>) -> Arc<dyn LockStore> {
        self.reopen(store).await
    }
}

/// Expands every conformance case into a test for one backend.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            round_trip_every_kind,
            port_fidelity,
            update_keeps_the_epoch_and_grace_runs_per_share,
            client_namespaces_and_bulk_client_deletes,
            lease_lookup_and_kind_exclusion,
            u64_max_ranges_round_trip,
            upsert_moves_every_index,
            bulk_deletes_remove_exactly_the_right_locks,
            query_filters_and_ordering,
            for_each_lock_hands_over_every_lock,
            not_found_errors,
            invalid_input_changes_nothing,
            epoch_and_clean_shutdown,
            closed_store_refuses_calls,
            a_cancelled_close_refuses_later_writes,
            reclaim_anti_steal,
            end_grace_purges_unreclaimed,
            transaction_is_all_or_nothing,
            posix_split_in_one_transaction,
            client_records_crud,
            state_survives_reopen,
            released_lock_stays_released,
            reads_return_copies,
            concurrent_writers_match_sequential_model,
            random_operations_match_model,
            handles_round_trip_every_field,
            handle_lists_follow_every_index,
            handle_unique_keys_are_enforced,
            consume_returns_and_removes_the_handle,
            racing_consumers_get_each_handle_once,
            expire_is_exact_at_the_boundary,
            handle_ops_are_atomic_with_lock_ops,
            invalid_handles_change_nothing,
            records_put_get_delete_and_scan,
            swap_record_applies_only_on_the_expected_value,
            record_limits_and_bad_input,
            records_survive_restart_and_snapshot,
            records_and_locks_commit_together,
            posix_ranges_conflict_on_overlap_exclusive_other_owner,
            smb_ranges_follow_ms_fsa,
            posix_against_smb_conflicts_with_one_exclusive,
            share_reservations_conflict_on_access_and_deny,
            leases_and_delegations_are_reported_to_break,
            test_lock_validates_the_candidate,
            checked_grant_is_a_put_when_clear,
            checked_grant_sees_the_transaction_so_far,
            racing_checked_grants_grant_exactly_one,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                conformance::cases::$case($make).await;
            }
        )*
    };
}
