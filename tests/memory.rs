//! The conformance suite against the memory backend, and the state machine
//! against the naive model with shrinking property tests.

#[macro_use]
mod conformance;

use async_trait::async_trait;
use conformance::Harness;
use lockwal::{LockStore, MemoryLockStore};
use std::sync::Arc;

/// Restarts keep the memory (as a server that restarts its lock manager
/// but not its process would).
#[derive(Default)]
struct Memory {
    current: Option<Arc<MemoryLockStore>>,
}

#[async_trait]
impl Harness for Memory {
    async fn open(&mut self) -> Arc<dyn LockStore> {
        let store = Arc::new(MemoryLockStore::new());
        self.current = Some(Arc::clone(&store));
        store
    }

    async fn reopen(&mut self, store: Arc<dyn LockStore>) -> Arc<dyn LockStore> {
        drop(store);
        let next = Arc::new(self.current.take().expect("opened").restart());
        self.current = Some(Arc::clone(&next));
        next
    }
}

conformance_suite!(Memory::default());

#[test]
fn stores_are_usable_as_trait_objects_from_configuration() {
    fn pick(kind: &str) -> Arc<dyn LockStore> {
        match kind {
            "memory" => Arc::new(MemoryLockStore::new()),
            other => panic!("unknown backend {other}"),
        }
    }
    let stores: Vec<Arc<dyn LockStore>> = vec![pick("memory"), pick("memory")];
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for store in stores {
        assert_eq!(rt.block_on(store.epoch()).unwrap(), 1);
    }
}

mod state_machine {
    use super::conformance::props::{Action, action};
    use lockwal::LockQuery;
    use lockwal::state::{Command, State};
    use lockwal::testing::model::{Model, error_kind};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The indexed state machine agrees with the naive model on every
        /// outcome, every error kind and the final state, and its indexes
        /// stay consistent after every step (including rolled-back
        /// transactions).
        #[test]
        fn state_machine_matches_naive_model(actions in proptest::collection::vec(action(), 1..80)) {
            let mut state = State::new();
            state.apply(&Command::Open { epoch: 1 }).unwrap();
            let mut model = Model::new(1);
            for action in actions {
                match action {
                    Action::Txn(ops) => {
                        let want = model.apply(&ops);
                        let got = state.apply(&Command::Txn(ops));
                        match (&got, &want) {
                            (Ok(g), Ok(w)) => prop_assert_eq!(g, w),
                            (Err(g), Err(w)) => prop_assert_eq!(error_kind(g), error_kind(w)),
                            _ => prop_assert!(false, "state {:?} vs model {:?}", got, want),
                        }
                    }
                    Action::Restart { clean } => {
                        if clean {
                            state.apply(&Command::CleanShutdown).unwrap();
                        }
                        state.apply(&Command::Open { epoch: state.epoch() + 1 }).unwrap();
                        model.restart();
                    }
                }
                state.check_invariants();
                prop_assert_eq!(state.list(&LockQuery::all()), model.list(&LockQuery::all()));
                prop_assert_eq!(state.handle_count(), model.handles.len());
                prop_assert_eq!(state.record_count(), model.records.len());
            }
            let clients: Vec<_> = state.clients().cloned().collect();
            prop_assert_eq!(clients, model.clients.values().cloned().collect::<Vec<_>>());
            let handles: Vec<_> = state.handles().cloned().collect();
            prop_assert_eq!(handles, model.handles.values().cloned().collect::<Vec<_>>());
            let records: Vec<_> = state.records().map(|(s, k, v)| ((s.to_owned(), k.to_vec()), v.to_vec())).collect();
            prop_assert_eq!(records, model.records.clone().into_iter().collect::<Vec<_>>());
        }
    }
}
