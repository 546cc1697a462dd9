//! The WIT `alarms` import: the alarm is a row of the object's own database.

use crate::bindings::WitError;
use crate::bindings::wdo::object::alarms;
use crate::object::HostState;

type Call<T> = wasmtime::Result<Result<T, WitError>>;

impl HostState {
    fn alarm_call<T>(&mut self, op: impl FnOnce(&crate::storage::ObjectDb) -> rusqlite::Result<T>) -> Call<T> {
        let result = op(self.db()?);
        Ok(result.map_err(|e| WitError::Storage(e.to_string())))
    }
}

impl alarms::Host for HostState {
    fn get(&mut self) -> Call<Option<i64>> {
        self.alarm_call(|db| db.alarm())
    }

    fn set(&mut self, at_ms: i64) -> Call<()> {
        self.alarm_touched = true;
        self.alarm_call(|db| db.set_alarm(Some(at_ms)))
    }

    fn delete(&mut self) -> Call<()> {
        self.alarm_touched = true;
        self.alarm_call(|db| db.set_alarm(None))
    }
}
