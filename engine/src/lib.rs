//! Pure rules and decisions: healing rules, interop mappings, flag policies and
//! flag evaluation. No IO, no async, no clock: callers pass `now`.
