//! The WIT `alarms` import: the alarm is a row of the object's own database.

use crate::bindings::WitError;
use crate::bindings::wdo::object::alarms;
use crate::object::HostState;

type Call<T> = wasmtime::Result<Result<T, WitError>>;

impl alarms::Host for HostState {
    fn get(&mut self) -> Call<Option<i64>> {
        self.storage(|db, _| Ok(db.alarm()?))
    }

    fn set(&mut self, at_ms: i64) -> Call<()> {
        self.alarm_touched = true;
        self.storage(|db, _| Ok(db.set_alarm(Some(at_ms))?))
    }

    fn delete(&mut self) -> Call<()> {
        self.alarm_touched = true;
        self.storage(|db, _| Ok(db.set_alarm(None)?))
    }
}
